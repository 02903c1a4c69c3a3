//! A stand-in for the OpenClaw gateway, for tests and benchmarks that need
//! many tenants or a machine too slow for the real one (a TCG VM): it takes
//! the place of `node` in a runtime prefix, so the unit runs it as
//! `node openclaw.mjs gateway run --port P --bind loopback`, listens on
//! 127.0.0.1:P and [::1]:P and answers every HTTP request with the real
//! gateway's liveness body (`/healthz`, `/readyz`: 200). `node --version`
//! prints a Node-like version. It uses a few MB, not the real gateway's 800.
//!
//! `STUB_GATEWAY_EXIT=N` in the environment makes it exit with status N at
//! start (a broken runtime).
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};

const BODY: &str = "{\"ok\":true,\"status\":\"live\",\"stub\":true}";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--version" || a == "-v") {
        println!("v24.99.0");
        return;
    }
    if let Some(code) = std::env::var("STUB_GATEWAY_EXIT")
        .ok()
        .and_then(|c| c.parse::<i32>().ok())
    {
        eprintln!("stub gateway: exiting with {code} (STUB_GATEWAY_EXIT)");
        std::process::exit(code);
    }
    let port: u16 = args
        .windows(2)
        .find(|w| w[0] == "--port")
        .and_then(|w| w[1].parse().ok())
        .unwrap_or_else(|| {
            eprintln!("stub gateway: usage: node openclaw.mjs gateway run --port P");
            std::process::exit(64)
        });
    let mut listeners = Vec::new();
    for addr in [format!("127.0.0.1:{port}"), format!("[::1]:{port}")] {
        match TcpListener::bind(&addr) {
            Ok(l) => listeners.push(l),
            Err(e) if addr.starts_with('[') => eprintln!("stub gateway: {addr}: {e} (ignored)"),
            Err(e) => {
                eprintln!("stub gateway: cannot listen on {addr}: {e}");
                std::process::exit(1)
            }
        }
    }
    eprintln!("stub gateway: listening on port {port}");
    let threads: Vec<_> = listeners
        .into_iter()
        .map(|l| {
            std::thread::spawn(move || {
                for stream in l.incoming().flatten() {
                    std::thread::spawn(move || serve(stream));
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

fn serve(stream: TcpStream) {
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    // Request line and headers; the body (if any) is ignored.
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line == "\r\n" || line == "\n" => break,
            Ok(_) => {}
        }
    }
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = (&stream).write_all(response.as_bytes());
}
