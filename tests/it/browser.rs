//! CORS in a real browser (headless Chromium, from Debian's `chromium` package): a page on an
//! allowed origin makes a credentialed, non-simple cross-origin request (so Chromium sends its
//! own preflight first) and can read fluxgate's 401 JSON; a page on a foreign origin cannot.
//!
//! The page writes what it saw into the DOM; `--dump-dom` with a virtual time budget prints
//! the DOM once the fetch has settled.

use crate::common::*;
use bytes::Bytes;
use http_body_util::Full;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

const CHROMIUM: &str = "/usr/bin/chromium";

/// Serves one HTML page that fetches `target` and reports the outcome in `#out`.
fn page_server(target: String) -> (tokio::runtime::Runtime, SocketAddr) {
    serve_http(move |_req| {
        let html = format!(
            r#"<!doctype html><html><body><pre id="out">pending</pre><script>
fetch("{target}", {{
  method: "PATCH",
  credentials: "include",
  headers: {{"Authorization": "flx_000000000000000000000000000000000000",
             "Content-Type": "application/json"}},
  body: "{{}}"
}}).then(r => r.text().then(t => {{
  document.getElementById("out").textContent = "status=" + r.status + " body=" + t;
}})).catch(e => {{
  document.getElementById("out").textContent = "blocked: " + e;
}});
</script></body></html>"#
        );
        async move {
            hyper::Response::builder()
                .header("content-type", "text/html")
                .body(Full::new(Bytes::from(html)))
                .unwrap()
        }
    })
}

/// What the page at `url` wrote, after Chromium ran it.
fn run_page(url: &str, profile: &Path) -> String {
    let out = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=10000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {CHROMIUM} ({e}): install Debian's chromium (scripts/prereqs test)")
        });
    let dom = String::from_utf8_lossy(&out.stdout).to_string();
    let start = dom
        .find("<pre id=\"out\">")
        .map(|i| i + "<pre id=\"out\">".len());
    match start.and_then(|s| dom[s..].find("</pre>").map(|e| dom[s..s + e].to_string())) {
        Some(text) => text.replace("&quot;", "\""),
        None => panic!(
            "no result in the page: {dom}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

#[test]
fn a_page_on_an_allowed_origin_reads_a_401_and_a_foreign_page_cannot() {
    let up = Upstream::start();
    // The pages need fluxgate's address, and fluxgate needs the allowed page's origin: start
    // the pages first, pointing at a port reserved for fluxgate.
    let port = free_port();
    let target = format!("http://127.0.0.1:{port}/users/@me");
    let (_a_rt, allowed) = page_server(target.clone());
    let (_f_rt, foreign) = page_server(target);
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let cfg = base_config(
        dir.path(),
        up.addr,
        &format!("[csrf]\nallowed_origins = [\"http://{allowed}\"]\n"),
    )
    .replacen(
        "listen = [\"127.0.0.1:0\"]",
        &format!("listen = [\"127.0.0.1:{port}\"]"),
        1,
    );
    assert!(cfg.contains(&format!("127.0.0.1:{port}")), "{cfg}");
    let fg = Fluxgate::start_with(dir.clone(), &cfg);
    assert_eq!(fg.proxy.port(), port);

    let seen = run_page(&format!("http://{allowed}/"), &dir.path().join("profile-a"));
    assert!(
        seen.starts_with("status=401 body="),
        "allowed page saw: {seen}"
    );
    assert!(seen.contains("\"code\":\"UNAUTHORIZED\""), "{seen}");

    let seen = run_page(&format!("http://{foreign}/"), &dir.path().join("profile-f"));
    assert!(seen.starts_with("blocked"), "foreign page saw: {seen}");
    assert_eq!(up.count(), 0, "neither request reached the upstream");
}
