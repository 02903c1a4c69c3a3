//! Public access: every tenant at `https://NAME.DOMAIN` (and its extra
//! domains) through the host's reverse proxy, Caddy or nginx.
//!
//! The proxy's configuration does not list tenants. ocusers writes one file
//! of its own that the proxy includes ([`caddy`], [`nginx`]): a site for
//! `*.DOMAIN` (plus the extra domains) that routes a request for HOST to the
//! Unix socket `/var/lib/ocusers/proxy/hosts/HOST/gateway.sock`, where HOST is
//! a link to the tenant's socket directory `/run/ocusers/proxy/NAME`; in it
//! is the socket `gateway.sock` on which systemd
//! listens for the tenant (`openclaw-proxy@NAME.socket`, owned by the proxy's
//! user) and which `systemd-socket-proxyd`, running as the tenant, relays to
//! the tenant's gateway on loopback. Adding or removing a tenant changes the
//! links and the socket units, not the proxy's configuration, so the proxy
//! is not reloaded and no other tenant's open WebSocket is dropped (Caddy
//! 2.6, Debian's, closes every proxied WebSocket on a reload). The include
//! changes, and the proxy is validated and reloaded, only when the domain,
//! TLS or listen settings or the set of extra domains change.
//!
//! Where things go: one file per proxy's syntax (`caddy.rs`, `nginx.rs`),
//! the plan steps in `steps.rs`, the on-demand TLS ask endpoint in
//! `ask.rs`, the per-tenant origin files in `origins.rs`.
pub mod admin;
pub mod ask;
pub mod caddy;
pub mod nginx;
pub mod origins;
mod steps;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::paths::{self, Paths};
use crate::process;
use crate::tenant::{Record, TenantName};

/// The path every invite link starts with: the proxy routes it, on every
/// tenant host, to the invite endpoint (`crate::invite`, which re-exports
/// it as `invite::PATH_PREFIX`).
pub const INVITE_PATH_PREFIX: &str = "/ocusers-invite/";
/// Where `ocusers-invite.socket` listens (loopback; the proxy is the
/// client); `invite::ADDR`.
pub const INVITE_ADDR: &str = "127.0.0.1:9124";

pub use origins::{origins_step, public_origins};
pub use steps::{global_steps, route_removal_step, route_step, stale_links_step};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Caddy,
    Nginx,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tls {
    /// Caddy obtains a certificate per host name on first use (ACME).
    Acme,
    /// Caddy's own local CA.
    Internal,
    /// `cert_file` and `key_file`.
    Files,
}

/// `[proxy]` in ocusers.toml.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    pub domain: String,
    pub kind: Kind,
    pub tls: Tls,
    pub cert_file: String,
    pub key_file: String,
    pub listen: Vec<String>,
    /// The port browsers reach the proxy's HTTPS on (443 unless the proxy
    /// listens elsewhere or sits behind a port forward): part of every
    /// public origin (see [`origins`]).
    pub public_port: u16,
    pub caddy_config: PathBuf,
    pub caddy_include: PathBuf,
    pub nginx_include: PathBuf,
}

impl ProxyConfig {
    /// Public access is on when a domain is set and a proxy chosen.
    pub fn enabled(&self) -> bool {
        self.kind != Kind::None && !self.domain.is_empty()
    }

    /// What is wrong with the settings, for the config loader.
    pub fn problem(&self) -> Option<String> {
        if !self.domain.is_empty()
            && let Err(reason) = check_host(&self.domain)
        {
            return Some(format!("[proxy] domain {:?}: {reason}", self.domain));
        }
        if let Some(a) = self.listen.iter().find(|a| a.parse::<IpAddr>().is_err()) {
            return Some(format!(
                "[proxy] listen: {a:?} is not an IP address (write addresses like \"127.0.0.1\" or \"::1\")"
            ));
        }
        if self.public_port == 0 {
            return Some(
                "[proxy] public_port must be the port browsers reach the proxy's HTTPS on, 1-65535 (443 by default)"
                    .into(),
            );
        }
        let files = self.tls == Tls::Files;
        if files && (self.cert_file.is_empty() || self.key_file.is_empty()) {
            return Some("[proxy] tls = \"files\" needs cert_file and key_file".into());
        }
        if self.kind == Kind::Nginx && self.enabled() && !files {
            return Some(
                "[proxy] kind = \"nginx\" needs tls = \"files\" with cert_file and key_file (nginx obtains no certificates itself)"
                    .into(),
            );
        }
        for p in [&self.caddy_config, &self.caddy_include, &self.nginx_include] {
            if !p.is_absolute() {
                return Some(format!("[proxy] {} must be an absolute path", p.display()));
            }
        }
        None
    }

    /// The proxy program, its package, unit and the user it runs as.
    pub fn program(&self) -> &'static str {
        match self.kind {
            Kind::Nginx => "nginx",
            _ => "caddy",
        }
    }

    pub fn unit(&self) -> String {
        format!("{}.service", self.program())
    }

    /// The user that connects to the tenants' sockets (Debian's packages).
    pub fn user(&self) -> &'static str {
        match self.kind {
            Kind::Nginx => "www-data",
            _ => "caddy",
        }
    }

    /// The file ocusers writes, as the proxy sees it.
    pub fn include(&self) -> &Path {
        match self.kind {
            Kind::Nginx => &self.nginx_include,
            _ => &self.caddy_include,
        }
    }

    /// `NAME.DOMAIN`
    pub fn host_of(&self, name: &TenantName) -> String {
        format!("{name}.{}", self.domain)
    }

    /// Every public host name of a tenant: `NAME.DOMAIN` first.
    pub fn hosts_of(&self, record: &Record) -> Vec<String> {
        std::iter::once(self.host_of(&record.name))
            .chain(record.domains.iter().cloned())
            .collect()
    }

    /// Whether the include's `*.DOMAIN` site already answers for `host`
    /// (one label under the domain, as Caddy's wildcard matches): such an
    /// extra domain needs only its link, not a line in the include.
    pub fn covers(&self, host: &str) -> bool {
        !self.domain.is_empty()
            && host
                .strip_suffix(&self.domain)
                .and_then(|h| h.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty() && !label.contains('.'))
    }

    /// The include as it should be, for the given extra domains. Those
    /// under `*.DOMAIN` are left out: adding or removing one changes only
    /// its link, so the proxy is not reloaded (and keeps every open
    /// WebSocket, which Caddy 2.6 closes on a reload).
    pub fn render(&self, extra: &[String]) -> String {
        let mut extra: Vec<String> = extra.iter().filter(|d| !self.covers(d)).cloned().collect();
        extra.sort();
        extra.dedup();
        match self.kind {
            Kind::Nginx => nginx::render(self, &extra),
            _ => caddy::render(self, &extra),
        }
    }

    /// The proxy is installed (its program is on PATH).
    pub fn check_installed(&self) -> Result<(), Error> {
        if process::which(self.program()).is_none() {
            return Err(Error::ProxyMissing {
                kind: self.program().into(),
            });
        }
        Ok(())
    }

    /// The proxy's own checker on its whole configuration.
    pub fn validate(&self) -> Result<(), Error> {
        let out = match self.kind {
            Kind::Nginx => Command::new("nginx").arg("-t").output(),
            _ => self.caddy_command("validate").output(),
        };
        let out = out.map_err(|e| Error::ProxyInvalid {
            proxy: self.program().into(),
            message: format!("cannot run {}: {e}", self.program()),
        })?;
        if out.status.success() {
            return Ok(());
        }
        Err(Error::ProxyInvalid {
            proxy: self.program().into(),
            message: proxy_error(&out.stderr, &out.stdout),
        })
    }

    /// Whether the proxy's effective configuration includes ours: its full
    /// dump (`caddy adapt`, `nginx -T`) names the host links' directory,
    /// which only ocusers' include does.
    pub fn includes_ours(&self) -> Result<bool> {
        let out = match self.kind {
            Kind::Nginx => process::run(Command::new("nginx").arg("-T"))?,
            _ => process::run(&mut self.caddy_command("adapt"))?,
        };
        Ok(String::from_utf8_lossy(&out.stdout).contains(paths::PROXY_HOSTS_DIR))
    }

    /// Where Caddy's admin API listens, from `caddy adapt` of the
    /// operator's configuration.
    pub fn caddy_admin(&self) -> Result<admin::Admin> {
        let out = process::run(&mut self.caddy_command("adapt"))?;
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| anyhow::anyhow!("`caddy adapt` printed no JSON: {e}"))?;
        Ok(admin::from_adapted(&json))
    }

    /// The line that includes ours, for the error that asks for it.
    pub fn include_line(&self) -> String {
        match self.kind {
            Kind::Nginx => format!("include {};", self.nginx_include.display()),
            _ => format!("import {}", self.caddy_include.display()),
        }
    }

    /// The main configuration file that must include ours.
    pub fn main_config(&self) -> PathBuf {
        match self.kind {
            Kind::Nginx => PathBuf::from("/etc/nginx/nginx.conf"),
            _ => self.caddy_config.clone(),
        }
    }

    /// `caddy VERB --config MAIN --adapter caddyfile`, run as the caddy user
    /// with its own HOME where it exists, so checking never writes root's.
    fn caddy_command(&self, verb: &str) -> Command {
        let mut cmd = match crate::identity::lookup(self.user()) {
            Some(a) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={}", a.uid))
                    .arg(format!("--regid={}", a.gid))
                    .arg("--init-groups")
                    .arg("--")
                    .arg("caddy")
                    .env("HOME", &a.home);
                c
            }
            None => Command::new("caddy"),
        };
        cmd.arg(verb)
            .arg("--config")
            .arg(&self.caddy_config)
            .args(["--adapter", "caddyfile"]);
        cmd
    }
}

/// The comment that opens every include: whose it is, how the proxy includes
/// it, and how a host name finds its tenant.
fn header(cfg: &ProxyConfig, included: &str) -> String {
    format!(
        "# Written by ocusers from its tenant registry (`ocusers proxy sync`); do not\n\
         # edit, changes are overwritten. {included}\n\
         #\n\
         # Tenant TENANT answers at TENANT.{domain} and its extra domains: each host\n\
         # name HOST is a link {hosts}/HOST to the directory of\n\
         # the tenant's socket /run/ocusers/proxy/TENANT/gateway.sock (systemd's\n\
         # openclaw-proxy@TENANT.socket), which relays to the tenant's gateway on\n\
         # loopback. Adding or removing a tenant changes the links, not this file,\n\
         # so {program} is not reloaded for it.\n",
        domain = cfg.domain,
        hosts = paths::PROXY_HOSTS_DIR,
        program = cfg.program(),
    )
}

/// The proxy's own complaint, on one line: the lines that say "error" (or
/// the last few), without Caddy's JSON log wrapping.
fn proxy_error(stderr: &[u8], stdout: &[u8]) -> String {
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(stderr),
        String::from_utf8_lossy(stdout)
    );
    let lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| match serde_json::from_str::<serde_json::Value>(l) {
            Ok(v) if v.is_object() => {
                let msg = v["msg"].as_str().unwrap_or_default();
                let err = v["error"].as_str().unwrap_or_default();
                format!("{msg} {err}").trim().to_string()
            }
            _ => l.to_string(),
        })
        .filter(|l| !l.is_empty())
        .collect();
    let errors: Vec<&String> = lines
        .iter()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("error") || l.contains("emerg") || l.contains("failed")
        })
        .collect();
    let chosen: Vec<&String> = if errors.is_empty() {
        lines.iter().rev().take(3).rev().collect()
    } else {
        errors
    };
    chosen
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// A public host name: lower-case DNS labels, at least two.
pub fn check_host(host: &str) -> Result<(), String> {
    if host.len() > 253 {
        return Err("longer than 253 characters".into());
    }
    let labels: Vec<&str> = host.split('.').collect();
    if labels.len() < 2 {
        return Err("needs at least two labels, like example.org".into());
    }
    for label in labels {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!(
                "label {label:?} must be 1-63 lower-case letters, digits or '-', not starting or ending with '-'"
            ));
        }
    }
    Ok(())
}

/// Check `--domain` values for tenant `name`: well-formed, not the domain
/// itself or another tenant's `NAME.DOMAIN`, not another tenant's extra
/// domain.
pub fn check_extra_domains(
    cfg: &ProxyConfig,
    name: &TenantName,
    domains: &[String],
    others: &[Record],
) -> Result<(), Error> {
    for d in domains {
        check_host(d).map_err(|reason| Error::BadDomain {
            domain: d.clone(),
            reason,
        })?;
        if !cfg.domain.is_empty() {
            if *d == cfg.domain {
                return Err(Error::BadDomain {
                    domain: d.clone(),
                    reason: "that is the [proxy] domain itself; extra domains are names besides it"
                        .into(),
                });
            }
            if *d == cfg.host_of(name) {
                return Err(Error::BadDomain {
                    domain: d.clone(),
                    reason: format!("{name} gets that name anyway"),
                });
            }
        }
        for other in others.iter().filter(|r| r.name != *name) {
            let taken = other.domains.contains(d)
                || (!cfg.domain.is_empty() && *d == cfg.host_of(&other.name));
            if taken {
                return Err(Error::DomainTaken {
                    domain: d.clone(),
                    tenant: other.name.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// Every tenant's extra domains, for the include.
pub fn extra_domains(records: &[Record]) -> Vec<String> {
    records.iter().flat_map(|r| r.domains.clone()).collect()
}

/// The link for a host name: `/var/lib/ocusers/proxy/hosts/HOST`.
pub fn link_of(paths: &Paths, host: &str) -> PathBuf {
    paths.proxy_hosts_dir().join(host)
}

/// The routes the host links make: (host, tenant) for every link that
/// points at a tenant socket.
pub fn links(paths: &Paths) -> Result<Vec<(String, String)>> {
    let dir = paths.proxy_hosts_dir();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(anyhow::Error::from(e).context(format!("reading {}", dir.display()))),
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let host = entry.file_name().to_string_lossy().into_owned();
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let tenant = target
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        out.push((host, tenant));
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ProxyConfig {
        ProxyConfig {
            domain: "test.internal".into(),
            kind: Kind::Caddy,
            tls: Tls::Internal,
            cert_file: String::new(),
            key_file: String::new(),
            listen: vec![],
            public_port: 443,
            caddy_config: "/etc/caddy/Caddyfile".into(),
            caddy_include: "/etc/caddy/ocusers.caddy".into(),
            nginx_include: "/etc/nginx/conf.d/ocusers.conf".into(),
        }
    }

    fn rec(name: &str, domains: &[&str]) -> Record {
        Record::sample(name, domains)
    }

    #[test]
    fn hosts_are_checked() {
        for good in ["example.org", "a-b.c9.example", "x.y"] {
            assert!(check_host(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "org",
            "Example.org",
            "a..b",
            "-a.b",
            "a-.b",
            "a_b.c",
            "*.a.b",
            "a b.c",
            "ä.de",
            "a/b.c",
        ] {
            assert!(check_host(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn extra_domains_cannot_take_another_tenants_name() {
        let c = cfg();
        let alice = TenantName::parse("alice").unwrap();
        let others = [rec("bob", &["bob.example.org"])];
        let ok = ["alice.example.org".to_string()];
        assert!(check_extra_domains(&c, &alice, &ok, &others).is_ok());
        for (d, want) in [
            ("bob.test.internal", "already routes to tenant \"bob\""),
            ("bob.example.org", "already routes to tenant \"bob\""),
            ("test.internal", "the [proxy] domain itself"),
            ("alice.test.internal", "gets that name anyway"),
            ("Alice.org", "lower-case"),
        ] {
            let err = check_extra_domains(&c, &alice, &[d.to_string()], &others).unwrap_err();
            assert!(err.to_string().contains(want), "{d}: {err}");
        }
    }

    #[test]
    fn extra_domains_under_the_wildcard_leave_the_include_alone() {
        let c = cfg();
        assert!(c.covers("alice-extra.test.internal"));
        for other in [
            "test.internal",
            "a.b.test.internal",
            "alice.example.org",
            "xtest.internal",
            ".test.internal",
        ] {
            assert!(!c.covers(other), "{other}");
        }
        let plain = c.render(&[]);
        assert_eq!(c.render(&["alice-extra.test.internal".into()]), plain);
        let listed = c.render(&["alice.example.org".into()]);
        assert_ne!(listed, plain);
        assert!(
            listed.contains("*.test.internal, alice.example.org {"),
            "{listed}"
        );
        let mut n = cfg();
        n.kind = Kind::Nginx;
        assert_eq!(
            n.render(&["alice-extra.test.internal".into()]),
            n.render(&[])
        );
    }

    #[test]
    fn settings_are_checked() {
        assert_eq!(cfg().problem(), None);
        let mut c = cfg();
        c.kind = Kind::Nginx;
        assert!(c.problem().unwrap().contains("tls = \"files\""));
        c.tls = Tls::Files;
        assert!(c.problem().unwrap().contains("cert_file"));
        c.cert_file = "/c".into();
        c.key_file = "/k".into();
        assert_eq!(c.problem(), None);
        c.listen = vec!["localhost".into()];
        assert!(c.problem().unwrap().contains("not an IP address"));
        let mut c = cfg();
        c.domain = "Bad_Domain".into();
        assert!(c.problem().unwrap().contains("[proxy] domain"));
        // No domain: off, whatever the kind.
        c.domain.clear();
        assert!(!c.enabled());
    }

    #[test]
    fn proxy_errors_come_out_on_one_line() {
        let caddy = br#"{"level":"info","ts":1,"msg":"using provided configuration"}
Error: adapting config using caddyfile: /etc/caddy/broken.caddy:1: unrecognized directive: bogus"#;
        assert_eq!(
            proxy_error(caddy, b""),
            "Error: adapting config using caddyfile: /etc/caddy/broken.caddy:1: unrecognized directive: bogus"
        );
        let nginx = b"nginx: [emerg] unknown directive \"bogus\" in /etc/nginx/conf.d/x.conf:1\nnginx: configuration file /etc/nginx/nginx.conf test failed\n";
        assert_eq!(
            proxy_error(nginx, b""),
            "nginx: [emerg] unknown directive \"bogus\" in /etc/nginx/conf.d/x.conf:1 | nginx: configuration file /etc/nginx/nginx.conf test failed"
        );
    }
}
