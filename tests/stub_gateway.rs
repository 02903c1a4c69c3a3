//! The stand-in gateway used by tiers that cannot run the real one answers
//! like the real gateway's health endpoints, and its runtime layout is one
//! that ocusers accepts as installed.
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ocusers::paths::Paths;
use support::stub_runtime;

#[test]
fn stub_answers_readyz_and_is_a_runtime_ocusers_accepts() {
    let stub = stub_runtime::build_stub_gateway().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = std::process::Command::new(&stub)
        .args([
            "openclaw.mjs",
            "gateway",
            "run",
            "--port",
            &port.to_string(),
        ])
        .spawn()
        .unwrap();
    let start = Instant::now();
    let reply = loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            s.write_all(b"GET /readyz HTTP/1.1\r\nhost: x\r\n\r\n")
                .unwrap();
            let mut text = String::new();
            s.read_to_string(&mut text).unwrap();
            break text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "stub did not listen"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(reply.starts_with("HTTP/1.1 200 "), "{reply}");
    assert!(reply.contains("\"status\":\"live\""), "{reply}");

    let root = tempfile::tempdir().unwrap();
    stub_runtime::install_stub_runtime(root.path(), &stub, "9.9.9-stub", true).unwrap();
    let paths = Paths::new(root.path());
    assert_eq!(
        ocusers::runtime::default_version(&paths).as_deref(),
        Some("9.9.9-stub")
    );
    let out =
        std::process::Command::new(ocusers::runtime::node_bin(&paths.runtime_dir("9.9.9-stub")))
            .arg("--version")
            .output()
            .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "v24.99.0");
}
