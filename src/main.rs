//! The `fluxgate` binary: parse the command line and hand over to `cli`.

use clap::Parser;

fn main() {
    let cli = fluxgate::cli::Cli::parse();
    std::process::exit(fluxgate::cli::dispatch(cli));
}
