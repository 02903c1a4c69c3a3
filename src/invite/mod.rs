//! `ocusers invite`: a single-use, expiring link that signs one browser in
//! to a tenant's Control UI, without the shared gateway token ever leaving
//! the host.
//!
//! - `ocusers invite NAME` stores the SHA-256 of a random secret
//!   ([`store`]) and prints `https://NAME.DOMAIN[:PORT]/ocusers-invite/ID/SECRET`.
//! - The proxy routes `/ocusers-invite/` of every tenant host to
//!   `ocusers-invite.socket` (loopback, `Accept=yes`): one sandboxed
//!   `ocusers-invite@.service` per connection answers it ([`http`]). GET and
//!   HEAD show a page with one button and change nothing (link previews
//!   fetch links); POST claims the invite (atomically, once), then runs
//!   `openclaw dashboard --json` AS THE TENANT in its sandbox ([`mint`]),
//!   which issues the gateway's own single-use, ten-minute owner bootstrap
//!   token, and sends the browser to `/#bootstrapToken=...&bootstrapProfile=owner`.
//!   Of that command's output only the bootstrap token is taken; its `url`
//!   (which carries the shared token) is never read further.
//! - The redemption is recorded in the change journal (`ocusers history`).
//!
//! Where things go: the stored invites in `store.rs`, the web endpoint in
//! `http.rs` (and `http/`), the bootstrap token in `mint.rs`.
pub mod http;
pub mod mint;
pub mod store;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::paths::Paths;
use crate::tenant::TenantName;

/// The path every invite link starts with, and where
/// `ocusers-invite.socket` listens: defined where the proxy that routes
/// them is, so `proxy` needs nothing of this module.
pub use crate::proxy::{INVITE_ADDR as ADDR, INVITE_PATH_PREFIX as PATH_PREFIX};
/// The socket unit of the endpoint.
pub const SOCKET_UNIT: &str = "ocusers-invite.socket";
/// Default and longest lifetime of an invite.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);
pub const MAX_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// What the browser is handed: the gateway's bootstrap token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bootstrap {
    pub token: String,
    pub profile: String,
}

/// The invite store of this host.
pub fn store(paths: &Paths) -> store::Store {
    store::Store::new(paths.invites_dir())
}

/// `https://HOST[:PORT]`
pub fn origin(host: &str, port: u16) -> String {
    if port == 443 {
        format!("https://{host}")
    } else {
        format!("https://{host}:{port}")
    }
}

/// The link for invite `id` with `secret` on `host`.
pub fn link(host: &str, port: u16, id: &str, secret: &str) -> String {
    format!("{}{PATH_PREFIX}{id}/{secret}", origin(host, port))
}

/// One invite as `invite --json` and `invite list --json` print it.
#[derive(Debug, Clone, Serialize)]
pub struct Shown {
    pub id: String,
    pub tenant: String,
    /// Only when just created (the secret is not stored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// RFC 3339, UTC.
    pub created: String,
    pub expires: String,
    pub expired: bool,
}

pub fn shown(inv: &store::Invite, url: Option<String>, now: u64) -> Shown {
    Shown {
        id: inv.id.clone(),
        tenant: inv.tenant.clone(),
        url,
        created: crate::display::rfc3339(inv.created),
        expires: crate::display::rfc3339(inv.expires),
        expired: now >= inv.expires,
    }
}

/// The tenant's public host name: `NAME.DOMAIN` with public access on.
pub fn public_host(paths: &Paths, name: &TenantName) -> Result<String> {
    let cfg = crate::config::HostConfig::load(paths)?;
    if !cfg.proxy.enabled() {
        bail!(
            "public access is off (no [proxy] domain in {}): an invite link needs https://{name}.DOMAIN; set [proxy] and run `ocusers proxy sync` (README, \"Public access\")",
            paths.host_config().display()
        );
    }
    Ok(cfg.proxy.host_of(name))
}

/// Create an invite for `name`, valid for `ttl`.
pub fn create(
    paths: &Paths,
    name: &TenantName,
    ttl: Duration,
    port: u16,
) -> Result<(Shown, store::Invite)> {
    if ttl.is_zero() || ttl > MAX_TTL {
        bail!(
            "--expires {}: give a lifetime between 1s and 30d, like `--expires 24h`",
            humantime::format_duration(ttl)
        );
    }
    let host = public_host(paths, name)?;
    ensure_socket()?;
    let (inv, secret) = store(paths)
        .create(name.as_str(), ttl.as_secs())
        .context("storing the invite")?;
    crate::logging::record(
        name.as_str(),
        "invite",
        &format!(
            "invite {} created, expires {}",
            inv.id,
            crate::display::rfc3339(inv.expires)
        ),
    );
    let url = link(&host, port, &inv.id, &secret);
    Ok((shown(&inv, Some(url), inv.created), inv))
}

/// The endpoint the proxy routes invite links to: enabled on first use.
fn ensure_socket() -> Result<()> {
    let active = std::process::Command::new("systemctl")
        .args(["is-active", "--quiet", SOCKET_UNIT])
        .status()
        .is_ok_and(|s| s.success());
    if active {
        return Ok(());
    }
    let out = std::process::Command::new("systemctl")
        .args(["enable", "--now", SOCKET_UNIT])
        .output()
        .context("running systemctl")?;
    if !out.status.success() {
        bail!(
            "could not start {SOCKET_UNIT}, which answers invite links: {} (is the ocusers package installed completely?)",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    crate::logging::record("-", "invite", &format!("{SOCKET_UNIT} enabled and started"));
    Ok(())
}

/// Serve one connection on stdin/stdout (`ocusers-invite@.service`).
pub fn serve(paths: &Paths) -> Result<()> {
    use std::os::fd::AsFd;
    let input = std::fs::File::from(std::io::stdin().as_fd().try_clone_to_owned()?);
    let rest = std::io::stdin().as_fd().try_clone_to_owned()?;
    let out = std::io::stdout();
    let req = match http::read_request(input) {
        Ok(r) => r,
        Err(status) => {
            http::write_response(out.lock(), &http::error_response(status), false)?;
            http::linger(rest);
            return Ok(());
        }
    };
    let store = store(paths);
    let (resp, outcome) = http::respond(paths, &store, &req, store::now(), &|name| {
        mint::bootstrap(paths, name)
    });
    http::write_response(out.lock(), &resp, req.method == http::Method::Head)?;
    http::linger(rest);
    match outcome {
        http::Outcome::Nothing => {}
        http::Outcome::Redeemed { tenant, id } => crate::logging::record(
            &tenant,
            "invite-redeem",
            &format!("invite {id} redeemed: a bootstrap token for one browser handed out"),
        ),
        http::Outcome::MintFailed { tenant, id } => tracing::warn!(
            tenant = %tenant,
            "invite {id}: the tenant's gateway issued no bootstrap token; the invite stays open"
        ),
    }
    Ok(())
}

/// `data` as a QR code drawn with Unicode half blocks (for a terminal,
/// dark on light with a quiet zone).
pub fn qr_text(data: &str) -> Result<String> {
    use qrcode::render::unicode::Dense1x2;
    let code = qrcode::QrCode::new(data.as_bytes()).context("drawing the QR code")?;
    Ok(code
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .quiet_zone(true)
        .build())
}

/// `remove`'s step: the tenant's open invites go with it, so a tenant made
/// later under the same name is not opened by a link handed out before.
pub fn removal_step<'a>(paths: &'a Paths, name: &'a TenantName) -> crate::plan::Step<'a> {
    crate::plan::Step::new(
        format!("revoke the open invites of {name}"),
        move || Ok(store(paths).list(Some(name.as_str()))?.is_empty()),
        move || revoke_all(paths, name).map(drop),
    )
}

/// Revoke every open invite of `name`; how many there were.
pub fn revoke_all(paths: &Paths, name: &TenantName) -> Result<usize> {
    let s = store(paths);
    let mut n = 0;
    for inv in s.list(Some(name.as_str()))? {
        if s.revoke(name.as_str(), &inv.id)? {
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removal_revokes_only_that_tenants_invites() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        std::fs::create_dir_all(paths.lib_dir()).unwrap();
        let s = store(&paths);
        let (alice, bob) = (
            TenantName::parse("alice").unwrap(),
            TenantName::parse("bob").unwrap(),
        );
        for t in ["alice", "alice", "bob"] {
            s.create(t, 3600).unwrap();
        }
        let step = removal_step(&paths, &alice);
        let mut plan = crate::plan::Plan::default();
        plan.push(step);
        plan.apply().unwrap();
        assert!(s.list(Some("alice")).unwrap().is_empty());
        assert_eq!(s.list(Some("bob")).unwrap().len(), 1);
        assert_eq!(revoke_all(&paths, &bob).unwrap(), 1);
    }

    #[test]
    fn links_and_qr() {
        assert_eq!(
            link("alice.example.org", 443, "0123456789ab", "ff"),
            "https://alice.example.org/ocusers-invite/0123456789ab/ff"
        );
        assert_eq!(origin("a.b", 19443), "https://a.b:19443");
        let q = qr_text(&link(
            "alice.example.org",
            443,
            "0123456789ab",
            &"f".repeat(64),
        ))
        .unwrap();
        assert!(q.lines().count() > 10 && q.contains('█'), "{q}");
    }
}
