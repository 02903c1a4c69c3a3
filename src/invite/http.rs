//! The invite endpoint's HTTP side: one request per process (systemd's
//! `Accept=yes`), read with bounds on size and time, answered, closed.
//! Everything in the request is attacker-controlled: the Host is accepted
//! only when the hosts directory routes it to a tenant, the path only when
//! it has the exact shape of an invite, and nothing of it is logged beyond
//! the invite id.
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::mpsc;
use std::time::Duration;

use super::store::{self, Refusal, Store};
use super::{Bootstrap, PATH_PREFIX};
use crate::paths::{self, Paths};
use crate::tenant::TenantName;

/// Request line and headers together.
const MAX_HEAD: u64 = 8 * 1024;
/// A POST body (the form has no fields; browsers send none).
const MAX_BODY: u64 = 1024;
/// The whole request must arrive within this.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub path: String,
    /// Lowercase, without a port.
    pub host: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        303 => "See Other",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        410 => "Gone",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// Read and parse one request; `Err(status)` for anything malformed.
pub fn parse(input: impl Read) -> Result<Request, u16> {
    let mut r = BufReader::new(input.take(MAX_HEAD));
    let mut line = String::new();
    match r.read_line(&mut line) {
        Ok(_) if line.ends_with('\n') => {}
        Ok(n) if n as u64 >= MAX_HEAD => return Err(431),
        _ => return Err(400),
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(400);
    };
    if !version.starts_with("HTTP/1.") {
        return Err(400);
    }
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        _ => return Err(405),
    };
    let mut host = None;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    loop {
        let mut h = String::new();
        match r.read_line(&mut h) {
            Ok(0) => return Err(if r.get_ref().limit() == 0 { 431 } else { 400 }),
            Ok(_) if !h.ends_with('\n') => return Err(431),
            Ok(_) => {}
            Err(_) => return Err(400),
        }
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        let Some((k, v)) = h.split_once(':') else {
            return Err(400);
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("host") {
            if host.is_some() {
                return Err(400);
            }
            host = Some(v.to_string());
        } else if k.eq_ignore_ascii_case("content-length") {
            if length.is_some() {
                return Err(400);
            }
            length = Some(v.parse().map_err(|_| 400u16)?);
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            chunked = true;
        }
    }
    if chunked {
        return Err(411);
    }
    let length = length.unwrap_or(0);
    if length > MAX_BODY {
        return Err(413);
    }
    // Drain the body so closing the connection does not reset it.
    // Part of it may be in the buffer already; the rest is bounded anew.
    let buffered = r.buffer().len() as u64;
    r.get_mut().set_limit(length.saturating_sub(buffered));
    let mut rest = r.take(length);
    let mut sink = Vec::new();
    if rest.read_to_end(&mut sink).map_err(|_| 400u16)? as u64 != length {
        return Err(400);
    }
    let host = host.ok_or(400u16)?;
    let host = host
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host.as_str(), |(h, _)| h)
        .to_ascii_lowercase();
    Ok(Request {
        method,
        path: target.to_string(),
        host,
    })
}

/// The tenant whose address `host` is: the hosts directory's link for it
/// must point at that tenant's socket directory.
pub fn tenant_of_host(paths: &Paths, host: &str) -> Option<TenantName> {
    crate::proxy::check_host(host).ok()?;
    let link = crate::proxy::link_of(paths, host);
    let meta = std::fs::symlink_metadata(&link).ok()?;
    if !meta.file_type().is_symlink() {
        return None;
    }
    let target = std::fs::read_link(&link).ok()?;
    let name = TenantName::parse(target.file_name()?.to_str()?).ok()?;
    (target.to_str()? == paths::proxy_socket_dir(&name)).then_some(name)
}

/// `/ocusers-invite/ID/SECRET` → (ID, SECRET); nothing else (no query, no
/// extra segments).
pub fn invite_of_path(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix(PATH_PREFIX)?;
    let (id, secret) = rest.split_once('/')?;
    (store::valid_id(id) && store::valid_secret(secret)).then_some((id, secret))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\"><title>{t}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:32em;margin:3em auto;padding:0 1em}}\
         button{{font-size:1.2em;padding:.6em 1.4em}}</style></head>\
         <body><h1>{t}</h1>{body}</body></html>\n",
        t = html_escape(title)
    )
}

fn refusal(r: Refusal) -> Response {
    let (status, text) = r.page();
    Response {
        status,
        location: None,
        body: page(
            "Invite not usable",
            &format!("<p>{}</p>", html_escape(text)),
        ),
    }
}

fn plain(status: u16, text: &str) -> Response {
    Response {
        status,
        location: None,
        body: page(reason(status), &format!("<p>{}</p>", html_escape(text))),
    }
}

/// What happens on a redemption, for the caller to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Nothing,
    Redeemed { tenant: String, id: String },
    MintFailed { tenant: String, id: String },
}

/// Decide on one parsed request. `mint` runs only for a POST whose invite
/// was just claimed.
pub fn respond(
    paths: &Paths,
    store: &Store,
    req: &Request,
    now: u64,
    mint: &dyn Fn(&TenantName) -> anyhow::Result<Bootstrap>,
) -> (Response, Outcome) {
    let Some(tenant) = tenant_of_host(paths, &req.host) else {
        return (
            plain(404, "No OpenClaw tenant at this address."),
            Outcome::Nothing,
        );
    };
    let Some((id, secret)) = invite_of_path(&req.path) else {
        return (refusal(Refusal::Unknown), Outcome::Nothing);
    };
    match req.method {
        Method::Get | Method::Head => match store.check(tenant.as_str(), id, secret, now) {
            Err(r) => (refusal(r), Outcome::Nothing),
            Ok(_) => (
                Response {
                    status: 200,
                    location: None,
                    body: page(
                        &format!("Open {tenant}'s OpenClaw"),
                        "<p>This link signs this browser in to the OpenClaw Control UI. \
                         It works once.</p>\
                         <form method=\"post\"><button type=\"submit\">Sign in</button></form>",
                    ),
                },
                Outcome::Nothing,
            ),
        },
        Method::Post => {
            let inv = match store.redeem(tenant.as_str(), id, secret, now) {
                Err(r) => return (refusal(r), Outcome::Nothing),
                Ok(inv) => inv,
            };
            match mint(&tenant) {
                Ok(b) => {
                    let location = format!(
                        "/#bootstrapToken={}&bootstrapProfile={}",
                        b.token, b.profile
                    );
                    (
                        Response {
                            status: 303,
                            body: page(
                                "Signing in",
                                &format!(
                                    "<p><a href=\"{}\">Continue to the Control UI</a></p>",
                                    html_escape(&location)
                                ),
                            ),
                            location: Some(location),
                        },
                        Outcome::Redeemed {
                            tenant: tenant.to_string(),
                            id: id.to_string(),
                        },
                    )
                }
                Err(_) => {
                    // The invite stays usable: nothing was handed out.
                    let _ = store.unclaim(&inv);
                    (
                        plain(
                            503,
                            "The gateway could not start the sign-in just now. Try again in a minute.",
                        ),
                        Outcome::MintFailed {
                            tenant: tenant.to_string(),
                            id: id.to_string(),
                        },
                    )
                }
            }
        }
    }
}

/// The response as bytes: HEAD gets the headers only.
pub fn render(resp: &Response, head: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nReferrer-Policy: no-referrer\r\nX-Content-Type-Options: nosniff\r\n\
         X-Frame-Options: DENY\r\n\
         Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'\r\n",
        resp.status,
        reason(resp.status),
        resp.body.len()
    );
    if let Some(l) = &resp.location {
        out.push_str(&format!("Location: {l}\r\n"));
    }
    out.push_str("Connection: close\r\n\r\n");
    let mut bytes = out.into_bytes();
    if !head {
        bytes.extend_from_slice(resp.body.as_bytes());
    }
    bytes
}

/// Read the request from `input` within [`READ_TIMEOUT`].
pub fn read_request<R: Read + Send + 'static>(input: R) -> Result<Request, u16> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(parse(input));
    });
    rx.recv_timeout(READ_TIMEOUT).unwrap_or(Err(408))
}

/// Write the response and flush.
pub fn write_response(mut out: impl Write, resp: &Response, head: bool) -> std::io::Result<()> {
    out.write_all(&render(resp, head))?;
    out.flush()
}

/// After the answer: end our side and read (and drop) what the client
/// still sends, a little and briefly, so that closing the connection with
/// unread input does not reset it before the client has read the answer.
pub fn linger(conn: std::os::fd::OwnedFd) {
    use std::os::fd::AsRawFd;
    // SAFETY: shutdown(2) on a descriptor we own; no memory is involved.
    unsafe { libc::shutdown(conn.as_raw_fd(), libc::SHUT_WR) };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let f = std::fs::File::from(conn);
        let _ = std::io::copy(&mut f.take(64 * 1024), &mut std::io::sink());
        let _ = tx.send(());
    });
    let _ = rx.recv_timeout(Duration::from_secs(2));
}

/// The status-only answer to a request that could not be parsed.
pub fn error_response(status: u16) -> Response {
    plain(status, reason(status))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Paths, Store) {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        let hosts = paths.proxy_hosts_dir();
        std::fs::create_dir_all(&hosts).unwrap();
        for n in ["alice", "bob"] {
            std::os::unix::fs::symlink(
                format!("/run/ocusers/proxy/{n}"),
                hosts.join(format!("{n}.example.com")),
            )
            .unwrap();
        }
        // A link elsewhere is not a tenant's route.
        std::os::unix::fs::symlink("/etc", hosts.join("etc.example.com")).unwrap();
        let store = Store::new(dir.path().join("invites"));
        (dir, paths, store)
    }

    fn req(s: &str) -> Result<Request, u16> {
        parse(s.as_bytes())
    }

    #[test]
    fn parses_only_well_formed_requests() {
        let r = req("GET /ocusers-invite/a/b HTTP/1.1\r\nHost: Alice.Example.com:19443\r\n\r\n")
            .unwrap();
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.host, "alice.example.com");
        let r = req("POST /x HTTP/1.1\r\nHost: a.b\r\nContent-Length: 3\r\n\r\nabc").unwrap();
        assert_eq!(r.method, Method::Post);
        assert_eq!(req(""), Err(400));
        assert_eq!(req("garbage\r\n\r\n"), Err(400));
        assert_eq!(req("\0\u{1}\u{2}\n\n"), Err(400));
        assert_eq!(req("GET / HTTP/1.1\r\n\r\n"), Err(400), "no Host");
        assert_eq!(
            req("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            Err(400)
        );
        assert_eq!(req("DELETE / HTTP/1.1\r\nHost: a\r\n\r\n"), Err(405));
        assert_eq!(req("GET / SPDY/3\r\nHost: a\r\n\r\n"), Err(400));
        assert_eq!(
            req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999\r\n\r\n"),
            Err(413)
        );
        assert_eq!(
            req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n"),
            Err(400)
        );
        assert_eq!(
            req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(411)
        );
        // A body shorter than announced: the client went away.
        assert_eq!(
            req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nab"),
            Err(400)
        );
        // Headers without an end within the bound.
        let big = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
            "a".repeat(20_000)
        );
        assert_eq!(req(&big), Err(431));
        let many = format!(
            "GET / HTTP/1.1\r\nHost: a\r\n{}\r\n",
            "X: y\r\n".repeat(5000)
        );
        assert_eq!(req(&many), Err(431));
        let line = format!("GET /{} HTTP/1.1\r\n", "a".repeat(20_000));
        assert_eq!(req(&line), Err(431));
        // Headers cut off.
        assert_eq!(req("GET / HTTP/1.1\r\nHost: a\r\n"), Err(400));
    }

    /// A reader that never delivers: the time bound answers 408.
    struct Slow;
    impl Read for Slow {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            std::thread::sleep(Duration::from_secs(3600));
            Ok(0)
        }
    }

    #[test]
    fn slow_clients_time_out() {
        let t = std::time::Instant::now();
        assert_eq!(read_request(Slow), Err(408));
        assert!(t.elapsed() < READ_TIMEOUT + Duration::from_secs(2));
    }

    #[test]
    fn hosts_are_the_hosts_directorys() {
        let (_d, p, _s) = setup();
        assert_eq!(
            tenant_of_host(&p, "alice.example.com").unwrap().as_str(),
            "alice"
        );
        assert!(tenant_of_host(&p, "etc.example.com").is_none());
        assert!(tenant_of_host(&p, "carol.example.com").is_none());
        assert!(tenant_of_host(&p, "..").is_none());
        assert!(tenant_of_host(&p, "../../etc").is_none());
    }

    fn ok_mint(_: &TenantName) -> anyhow::Result<Bootstrap> {
        Ok(Bootstrap {
            token: "boot-strap_Token1234567890".into(),
            profile: "owner".into(),
        })
    }

    #[test]
    fn get_changes_nothing_post_redeems_once() {
        let (_d, p, s) = setup();
        let (inv, secret) = s.create("alice", 60).unwrap();
        let path = format!("{PATH_PREFIX}{}/{secret}", inv.id);
        let r = |m: Method, host: &str, path: &str| Request {
            method: m,
            path: path.to_string(),
            host: host.into(),
        };
        let now = inv.created;
        for _ in 0..3 {
            let (resp, out) = respond(
                &p,
                &s,
                &r(Method::Get, "alice.example.com", &path),
                now,
                &ok_mint,
            );
            assert_eq!((resp.status, out), (200, Outcome::Nothing));
            assert!(
                resp.body.contains("<form method=\"post\">"),
                "{}",
                resp.body
            );
        }
        let (resp, _) = respond(
            &p,
            &s,
            &r(Method::Head, "alice.example.com", &path),
            now,
            &ok_mint,
        );
        assert_eq!(resp.status, 200);
        assert!(
            !String::from_utf8(render(&resp, true))
                .unwrap()
                .contains("<form")
        );
        // Alice's invite on bob's address.
        let (resp, out) = respond(
            &p,
            &s,
            &r(Method::Post, "bob.example.com", &path),
            now,
            &ok_mint,
        );
        assert_eq!((resp.status, out), (403, Outcome::Nothing));
        // Unknown host, bad paths.
        assert_eq!(
            respond(
                &p,
                &s,
                &r(Method::Post, "carol.example.com", &path),
                now,
                &ok_mint
            )
            .0
            .status,
            404
        );
        for bad in [
            format!("{path}?x=1"),
            format!("{path}/"),
            format!("{PATH_PREFIX}{}/{}", inv.id, "0".repeat(64)),
            format!("{PATH_PREFIX}../../{secret}"),
        ] {
            assert_eq!(
                respond(
                    &p,
                    &s,
                    &r(Method::Post, "alice.example.com", &bad),
                    now,
                    &ok_mint
                )
                .0
                .status,
                404,
                "{bad}"
            );
        }
        // A failed mint gives the invite back.
        let fail = |_: &TenantName| -> anyhow::Result<Bootstrap> { anyhow::bail!("down") };
        let (resp, _) = respond(
            &p,
            &s,
            &r(Method::Post, "alice.example.com", &path),
            now,
            &fail,
        );
        assert_eq!(resp.status, 503);
        let (resp, out) = respond(
            &p,
            &s,
            &r(Method::Post, "alice.example.com", &path),
            now,
            &ok_mint,
        );
        assert_eq!(resp.status, 303);
        assert_eq!(
            resp.location.as_deref(),
            Some("/#bootstrapToken=boot-strap_Token1234567890&bootstrapProfile=owner")
        );
        assert_eq!(
            out,
            Outcome::Redeemed {
                tenant: "alice".into(),
                id: inv.id.clone()
            }
        );
        let (resp, _) = respond(
            &p,
            &s,
            &r(Method::Post, "alice.example.com", &path),
            now,
            &ok_mint,
        );
        assert_eq!(resp.status, 410);
        assert!(resp.body.contains("already been used"), "{}", resp.body);
        let (resp, _) = respond(
            &p,
            &s,
            &r(Method::Get, "alice.example.com", &path),
            now,
            &ok_mint,
        );
        assert_eq!(resp.status, 410);
    }
}
