//! The OS layers that keep tenants apart on loopback, and which of them this
//! host actually enforces. Two independent layers close a tenant's port
//! block to the others:
//!
//! * **bind**: `SocketBindAllow=` the tenant's own block, `SocketBindDeny=`
//!   the whole pool, set on each tenant's unit by `add` (cgroup BPF, so it
//!   covers every process in the unit, the agent's shell tools included).
//!   systemd enforces it only when built with its BPF framework
//!   (`+BPF_FRAMEWORK`, Debian 13's systemd 257) on cgroup v2; Debian 12's
//!   systemd 252 accepts and stores it but does not enforce it.
//! * **firewall**: nftables rules by socket owner (src/firewall.rs), which
//!   work on Debian 12's kernel and nft: no connect from another tenant, and
//!   no answer from a squatter that bound a stopped tenant's port.
use std::process::Command;
use std::sync::OnceLock;

use serde::Serialize;

use crate::config::HostConfig;
use crate::firewall;
use crate::systemd::{PortRange, SocketBind};
use crate::tenant::Record;

/// The bind rules of a tenant: its own block allowed, the pool denied.
pub fn socket_bind_for(cfg: &HostConfig, record: &Record) -> SocketBind {
    SocketBind {
        allow: vec![PortRange {
            first: record.port,
            last: record.last_port(),
        }],
        deny: vec![PortRange {
            first: cfg.ports.start,
            last: cfg.ports.end,
        }],
    }
}

/// One layer: is it enforced here, and why (not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Layer {
    pub name: &'static str,
    pub active: bool,
    pub detail: String,
}

/// `systemctl --version` lists `+BPF_FRAMEWORK`.
pub fn systemd_bpf_framework() -> Result<bool, String> {
    static CACHE: OnceLock<Result<bool, String>> = OnceLock::new();
    CACHE
        .get_or_init(|| {
            let out = Command::new("systemctl")
                .arg("--version")
                .output()
                .map_err(|e| format!("cannot run systemctl --version: {e}"))?;
            let text = String::from_utf8_lossy(&out.stdout);
            Ok(text.split_whitespace().any(|w| w == "+BPF_FRAMEWORK"))
        })
        .clone()
}

/// The first line of `systemctl --version` ("systemd 252 (252.39-1~deb12u2)").
pub fn systemd_version() -> String {
    Command::new("systemctl")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Is /sys/fs/cgroup a cgroup v2 (unified) hierarchy?
pub fn cgroup_v2() -> bool {
    std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// Which layers this host enforces right now.
pub fn layers(cfg: &HostConfig) -> Vec<Layer> {
    let bind = match systemd_bpf_framework() {
        Ok(true) if cgroup_v2() => Layer {
            name: "bind",
            active: true,
            detail: format!(
                "{}: +BPF_FRAMEWORK on cgroup v2, SocketBindAllow= is enforced",
                systemd_version()
            ),
        },
        Ok(true) => Layer {
            name: "bind",
            active: false,
            detail: "systemd has its BPF framework, but /sys/fs/cgroup is not cgroup v2: SocketBindAllow= is not enforced".into(),
        },
        Ok(false) => Layer {
            name: "bind",
            active: false,
            detail: format!(
                "{} is built without its BPF framework (-BPF_FRAMEWORK): SocketBindAllow= is stored but not enforced (Debian 13's systemd enforces it); the firewall's answer rule still keeps a squatter from receiving traffic",
                systemd_version()
            ),
        },
        Err(e) => Layer {
            name: "bind",
            active: false,
            detail: e,
        },
    };
    let fw = {
        match firewall::usable(cfg) {
            Err(why) => Layer {
                name: "firewall",
                active: false,
                detail: why,
            },
            Ok(()) => match firewall::loaded_table() {
                Some(_) => Layer {
                    name: "firewall",
                    active: true,
                    detail: format!(
                        "table inet {} loaded (from /var/lib/ocusers/firewall.nft)",
                        firewall::TABLE
                    ),
                },
                None => Layer {
                    name: "firewall",
                    active: false,
                    detail: format!(
                        "table inet {} is not loaded: run `systemctl restart {}`",
                        firewall::TABLE,
                        firewall::UNIT
                    ),
                },
            },
        }
    };
    vec![bind, fw]
}
