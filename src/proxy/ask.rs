//! `ocusers proxy ask`: Caddy's on-demand TLS `ask` endpoint, without a
//! daemon. `ocusers-ask.socket` listens on [`ADDR`] with `Accept=yes`;
//! systemd starts one sandboxed `ocusers-ask@.service` per connection with
//! the connection on stdin and stdout. Caddy asks
//! `GET /check?domain=HOST` before it obtains a certificate for HOST; the
//! answer is 200 when ocusers routes HOST (its link in the hosts directory
//! exists), 404 otherwise, so nobody can make Caddy request certificates
//! (and spend the ACME CA's rate limits) for names that are not tenants'.
//! The request is read with a bound on size (and the unit on time); nothing
//! of it is trusted beyond the one host name, checked like `add` checks.
use std::io::{BufRead, BufReader, Read, Write};

use crate::paths::Paths;

/// Where the socket unit listens (loopback; Caddy is the only client).
pub const ADDR: &str = "127.0.0.1:9123";
/// The URL for Caddy's global options: `on_demand_tls { ask URL }`.
pub const URL: &str = "http://127.0.0.1:9123/check";
/// The request line and headers together may not exceed this.
const MAX_REQUEST: u64 = 8 * 1024;

/// The answer to one request: HTTP status and a short reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub reason: &'static str,
    /// The host name asked about, when there was a valid one.
    pub host: Option<String>,
}

fn answer(status: u16, reason: &'static str, host: Option<String>) -> Answer {
    Answer {
        status,
        reason,
        host,
    }
}

/// Decide on one HTTP request read from `input` (at most [`MAX_REQUEST`]
/// bytes are read).
pub fn decide(paths: &Paths, input: impl Read) -> Answer {
    let mut r = BufReader::new(input.take(MAX_REQUEST));
    let mut line = String::new();
    if r.read_line(&mut line).is_err() || !line.ends_with('\n') {
        return answer(400, "Bad Request", None);
    }
    // Drain the headers (bounded by the take above); none is needed.
    let mut header = String::new();
    loop {
        header.clear();
        match r.read_line(&mut header) {
            Ok(0) | Err(_) => break,
            Ok(_) if header.trim().is_empty() => break,
            Ok(_) => {}
        }
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return answer(400, "Bad Request", None);
    };
    if method != "GET" {
        return answer(405, "Method Not Allowed", None);
    }
    let Some(host) = domain_param(target) else {
        return answer(400, "Bad Request", None);
    };
    let host = host.to_ascii_lowercase();
    if super::check_host(&host).is_err() {
        return answer(404, "Not Found", None);
    }
    let link = super::link_of(paths, &host);
    match std::fs::symlink_metadata(&link) {
        Ok(m) if m.file_type().is_symlink() => answer(200, "OK", Some(host)),
        _ => answer(404, "Not Found", Some(host)),
    }
}

/// `domain=` of a request target `/PATH?QUERY`, percent-decoded; `None`
/// when absent, repeated or not ASCII.
fn domain_param(target: &str) -> Option<String> {
    let (_, query) = target.split_once('?')?;
    let mut found = None;
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == "domain" {
            if found.is_some() {
                return None;
            }
            found = Some(percent_decode(v)?);
        }
    }
    found.filter(|h| !h.is_empty())
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok().filter(|s| s.is_ascii())
}

/// Answer one request on stdin/stdout (the accepted connection).
pub fn serve(paths: &Paths) -> std::io::Result<Answer> {
    let a = decide(paths, std::io::stdin().lock());
    let body = format!("{}\n", a.reason);
    let mut out = std::io::stdout().lock();
    write!(
        out,
        "HTTP/1.1 {} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        a.status,
        a.reason,
        body.len()
    )?;
    out.flush()?;
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Paths) {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        let hosts = paths.proxy_hosts_dir();
        std::fs::create_dir_all(&hosts).unwrap();
        std::os::unix::fs::symlink("/run/ocusers/proxy/alice", hosts.join("alice.example.com"))
            .unwrap();
        // A plain file or directory is not a route ocusers made.
        std::fs::write(hosts.join("file.example.com"), "").unwrap();
        (dir, paths)
    }

    fn ask(paths: &Paths, req: &str) -> Answer {
        decide(paths, req.as_bytes())
    }

    #[test]
    fn routed_names_only() {
        let (_d, p) = setup();
        let get = |h: &str| {
            ask(
                &p,
                &format!("GET /check?domain={h} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
            )
            .status
        };
        assert_eq!(get("alice.example.com"), 200);
        assert_eq!(get("ALICE.example.com"), 200);
        assert_eq!(get("alice%2Eexample%2Ecom"), 200);
        assert_eq!(get("bob.example.com"), 404);
        assert_eq!(get("file.example.com"), 404);
        // Paths out of the hosts directory are not host names.
        assert_eq!(get(".."), 404);
        assert_eq!(get("..%2F..%2Fetc"), 404);
        assert_eq!(get("a%2Fb"), 404);
        assert_eq!(get("%00"), 404);
    }

    #[test]
    fn malformed_requests() {
        let (_d, p) = setup();
        assert_eq!(ask(&p, "").status, 400);
        assert_eq!(ask(&p, "GET /check HTTP/1.1\r\n\r\n").status, 400);
        assert_eq!(
            ask(&p, "GET /check?domain=a.b&domain=c.d HTTP/1.1\r\n\r\n").status,
            400
        );
        assert_eq!(
            ask(&p, "POST /check?domain=alice.example.com HTTP/1.1\r\n\r\n").status,
            405
        );
        assert_eq!(
            ask(&p, "GET /check?domain=%zz HTTP/1.1\r\n\r\n").status,
            400
        );
        // No end of line within the bound: refused, and reading stops.
        let long = format!("GET /check?domain={} HTTP/1.1", "a".repeat(20_000));
        assert_eq!(ask(&p, &long).status, 400);
    }
}
