//! Row (p): the floor. A bare Pingora proxy (the `--bare-pingora` mode of this binary): the
//! same Pingora version and features as fluxgate, the same allocator (mimalloc, set in
//! `main.rs` for this whole binary) and runtime settings (one thread, no work stealing, as
//! the other rows' fluxgate), and nothing else: no routes, no auth, no header edits.
//! What fluxgate adds over it is fluxgate's own cost.

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::{Opt, ServerConf};
use std::net::SocketAddr;

struct Bare {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _: &mut Session, _: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

/// Serves on `127.0.0.1:port`, forwarding everything to `upstream`; never returns.
pub fn serve(port: u16, upstream: SocketAddr) {
    let conf = ServerConf {
        threads: 1,
        work_stealing: false,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    let mut svc = http_proxy_service(&server.configuration, Bare { upstream });
    svc.add_tcp(&format!("127.0.0.1:{port}"));
    server.add_service(svc);
    server.run_forever();
}
