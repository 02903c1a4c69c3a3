//! Caddy's admin API. Whoever reaches it replaces Caddy's whole
//! configuration (`POST /load`): routes every tenant's name to a port of
//! its own and collects their tokens, or serves Caddy's private keys. On TCP
//! (Caddy's default, `localhost:2019`) every local process reaches it, a
//! tenant's agent included; on a unix socket in Caddy's own runtime
//! directory only Caddy's user and root do. `systemctl reload caddy` (Debian's
//! `caddy reload`, which ocusers' reloads use) reads the address from the
//! same configuration and keeps working on the socket.
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::{Kind, ProxyConfig};

/// The line README's Caddy setup puts in the Caddyfile's global options.
pub const SOCKET_LINE: &str = "admin unix//run/caddy/admin.sock";
/// Caddy's admin address when its configuration names none.
pub const DEFAULT_TCP: &str = "localhost:2019";

/// Where Caddy's admin API listens, from its adapted configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admin {
    /// `unix//PATH`: only who may open the socket reaches it.
    Unix(String),
    /// `admin off`: no API (and `caddy reload` cannot work either).
    Off,
    /// A TCP address: every local process reaches it.
    Tcp(String),
}

/// The admin endpoint of Caddy's adapted JSON configuration.
pub fn from_adapted(config: &serde_json::Value) -> Admin {
    let admin = &config["admin"];
    if admin["disabled"].as_bool() == Some(true) {
        return Admin::Off;
    }
    match admin["listen"].as_str().map(str::trim) {
        Some(l) if l.starts_with("unix/") => Admin::Unix(l.to_string()),
        Some(l) if !l.is_empty() => Admin::Tcp(l.to_string()),
        _ => Admin::Tcp(DEFAULT_TCP.to_string()),
    }
}

/// Whether something answers HTTP on `addr` (a bounded connect, write and
/// read): the first line of its answer.
pub fn http_answer(addr: SocketAddr) -> Option<String> {
    let timeout = Duration::from_millis(800);
    let mut s = TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    s.write_all(b"GET /config/ HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf[..n]);
    text.starts_with("HTTP/")
        .then(|| text.lines().next().unwrap_or_default().to_string())
}

/// What is wrong with Caddy's admin endpoint, and the fix; `None` when it
/// is on a unix socket (or off) and nothing answers on the default port.
pub fn problem(cfg: &ProxyConfig) -> Option<(String, String)> {
    // Not Caddy, or no Caddy installed (doctor says so on its own).
    if cfg.kind != Kind::Caddy || !cfg.enabled() || cfg.check_installed().is_err() {
        return None;
    }
    let fix = format!(
        "put `{SOCKET_LINE}` in the global options of {} and give Caddy the directory (`RuntimeDirectory=caddy` in a drop-in for caddy.service, see README \"Public access\"), then `systemctl restart caddy`",
        cfg.caddy_config.display()
    );
    let configured = cfg.caddy_admin();
    if let Ok(Admin::Tcp(addr)) = &configured {
        return Some((
            format!(
                "Caddy's admin API listens on TCP {addr}: any local process, a tenant's agent included, can replace Caddy's configuration"
            ),
            fix,
        ));
    }
    // The default port, whatever the file says (another Caddy, an old
    // process, a configuration that did not adapt).
    if let Some(line) = http_answer(SocketAddr::from(([127, 0, 0, 1], 2019))) {
        return Some((
            format!(
                "an admin API answers on TCP 127.0.0.1:2019 ({line}): any local process can replace Caddy's configuration"
            ),
            fix,
        ));
    }
    if let Err(e) = configured {
        return Some((
            format!("cannot read Caddy's admin endpoint from its configuration: {e:#}"),
            fix,
        ));
    }
    None
}

/// A one-line description of a good endpoint, for `doctor`.
pub fn describe(cfg: &ProxyConfig) -> String {
    match cfg.caddy_admin() {
        Ok(Admin::Unix(l)) => format!("Caddy's admin API is on the unix socket {l}"),
        Ok(Admin::Off) => {
            "Caddy's admin API is off (`systemctl reload caddy` cannot work)".to_string()
        }
        Ok(Admin::Tcp(l)) => format!("Caddy's admin API is on TCP {l}"),
        Err(e) => format!("Caddy's admin endpoint unknown: {e:#}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn admin_endpoints_from_the_adapted_config() {
        assert_eq!(
            from_adapted(&json!({"admin": {"listen": "unix//run/caddy/admin.sock"}})),
            Admin::Unix("unix//run/caddy/admin.sock".into())
        );
        assert_eq!(
            from_adapted(&json!({"admin": {"disabled": true}})),
            Admin::Off
        );
        assert_eq!(
            from_adapted(&json!({"admin": {"listen": "127.0.0.1:19019"}})),
            Admin::Tcp("127.0.0.1:19019".into())
        );
        // No admin block: Caddy's default, on TCP.
        assert_eq!(
            from_adapted(&json!({"apps": {}})),
            Admin::Tcp(DEFAULT_TCP.into())
        );
        assert_eq!(
            from_adapted(&json!({"admin": {"listen": ""}})),
            Admin::Tcp(DEFAULT_TCP.into())
        );
    }

    #[test]
    fn nothing_listening_is_no_answer() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        assert_eq!(http_answer(addr), None);
    }

    #[test]
    fn an_http_listener_is_seen() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 128];
            let _ = s.read(&mut buf);
            s.write_all(b"HTTP/1.1 200 OK\r\n\r\n{}").unwrap();
        });
        assert_eq!(http_answer(addr).as_deref(), Some("HTTP/1.1 200 OK"));
        t.join().unwrap();
    }
}
