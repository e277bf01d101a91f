//! The `fluxgate` binary: parse the command line and hand over to `cli`.

use clap::Parser;

// mimalloc: malloc and free were about a sixth of fluxgate's CPU time under load with the
// system allocator (measured with perf); see docs/performance.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = fluxgate::cli::Cli::parse();
    std::process::exit(fluxgate::cli::dispatch(cli));
}
