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
mod tests;
