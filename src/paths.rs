//! Where ocusers keeps things on the host. Every path hangs off a root
//! directory (`/` in production) so tests can run file code in a temporary
//! tree.
use std::path::{Path, PathBuf};

use crate::name::TenantName;

pub use crate::name::{MAX_USER_NAME, USER_PREFIX};

#[derive(Debug, Clone)]
pub struct Paths {
    root: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Paths::new("/")
    }
}

impl Paths {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Paths { root: root.into() }
    }

    /// `OCUSERS_ROOT` moves every file ocusers touches under another root; it
    /// exists for tests and has no effect on users or units.
    pub fn from_env() -> Self {
        match std::env::var_os("OCUSERS_ROOT") {
            Some(root) if !root.is_empty() => Paths::new(root),
            _ => Paths::default(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn at(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    /// `/etc/ocusers`: host config, tier overrides, secrets.
    pub fn etc_dir(&self) -> PathBuf {
        self.at("/etc/ocusers")
    }
    pub fn host_config(&self) -> PathBuf {
        self.at("/etc/ocusers/ocusers.toml")
    }
    /// Shipped defaults, overridden key by key by [`Paths::host_config`].
    pub fn shipped_config(&self) -> PathBuf {
        self.at("/usr/share/ocusers/ocusers.toml")
    }
    pub fn shipped_tiers_dir(&self) -> PathBuf {
        self.at("/usr/share/ocusers/policy/tiers")
    }
    pub fn local_tiers_dir(&self) -> PathBuf {
        self.at("/etc/ocusers/tiers")
    }
    /// `/etc/ocusers/tenants`: one root-only environment file per tenant.
    pub fn secrets_dir(&self) -> PathBuf {
        self.at("/etc/ocusers/tenants")
    }
    pub fn secrets_file(&self, name: &TenantName) -> PathBuf {
        self.secrets_dir().join(format!("{name}.env"))
    }

    /// `/var/lib/ocusers`: the registry, runtimes and archives.
    pub fn lib_dir(&self) -> PathBuf {
        self.at("/var/lib/ocusers")
    }
    pub fn registry_dir(&self) -> PathBuf {
        self.at("/var/lib/ocusers/tenants")
    }
    pub fn registry_file(&self, name: &TenantName) -> PathBuf {
        self.registry_dir().join(format!("{name}.toml"))
    }
    pub fn archive_dir(&self) -> PathBuf {
        self.at("/var/lib/ocusers/archive")
    }
    /// `backup`'s default output (`--out` moves it).
    pub fn backups_dir(&self) -> PathBuf {
        self.lib_dir().join("backups")
    }
    /// The snapshots `upgrade` takes before it moves tenants.
    pub fn pre_upgrade_dir(&self) -> PathBuf {
        self.backups_dir().join("pre-upgrade")
    }
    /// Where a failed upgrade's reset keeps the state it replaced.
    pub fn replaced_state_dir(&self) -> PathBuf {
        self.backups_dir().join("replaced-state")
    }
    /// What the last `upgrade` did, for `rollback`.
    pub fn last_upgrade_file(&self) -> PathBuf {
        self.lib_dir().join("last-upgrade.toml")
    }
    /// The invite store (hashes only; root-only).
    pub fn invites_dir(&self) -> PathBuf {
        self.lib_dir().join("invites")
    }
    pub fn runtimes_dir(&self) -> PathBuf {
        self.at("/var/lib/ocusers/runtimes")
    }
    pub fn runtime_dir(&self, version: &str) -> PathBuf {
        self.runtimes_dir().join(version)
    }
    /// `runtimes/default`: the version new tenants get.
    pub fn default_runtime_link(&self) -> PathBuf {
        self.runtimes_dir().join("default")
    }
    /// `runtimes/by-tenant/NAME`: the runtime a tenant's unit runs.
    pub fn tenant_runtime_link(&self, name: &TenantName) -> PathBuf {
        self.runtimes_dir().join("by-tenant").join(name.as_str())
    }

    /// `/var/lib/openclaw/NAME`: the tenant's state and home (0700, its own).
    pub fn state_parent(&self) -> PathBuf {
        self.at("/var/lib/openclaw")
    }
    pub fn state_dir(&self, name: &TenantName) -> PathBuf {
        self.state_parent().join(name.as_str())
    }

    /// `/var/cache/openclaw/NAME`: the tenant's Node compile cache (0700,
    /// its own; the unit's `CacheDirectory=`). Written by the tenant, read
    /// only by its own gateway; never in a backup, deleted by `remove`.
    pub fn cache_parent(&self) -> PathBuf {
        self.at("/var/cache/openclaw")
    }
    pub fn cache_dir(&self, name: &TenantName) -> PathBuf {
        self.cache_parent().join(name.as_str())
    }

    /// The nftables ruleset ocusers generates from the registry.
    pub fn firewall_file(&self) -> PathBuf {
        self.at("/var/lib/ocusers/firewall.nft")
    }

    /// Persistent unit properties set over D-Bus land here.
    pub fn unit_control_dir(&self, unit: &str) -> PathBuf {
        self.at("/etc/systemd/system.control")
            .join(format!("{unit}.d"))
    }

    /// An absolute host path (from configuration) under this root.
    pub fn host_path(&self, abs: &Path) -> PathBuf {
        self.root.join(abs.strip_prefix("/").unwrap_or(abs))
    }

    /// `/var/lib/ocusers/public`: one directory of origin files per tenant
    /// (see [`public_dir`]).
    pub fn public_parent(&self) -> PathBuf {
        self.at(PUBLIC_DIR)
    }
    /// `/var/lib/ocusers/public/NAME`, on this host (under the test root).
    pub fn public_dir(&self, name: &TenantName) -> PathBuf {
        self.public_parent().join(name.as_str())
    }

    /// `/var/lib/ocusers/proxy/hosts`: one link `HOST` per public host name,
    /// to the socket directory of the tenant it routes to.
    pub fn proxy_hosts_dir(&self) -> PathBuf {
        self.at(PROXY_HOSTS_DIR)
    }
    /// Hash of the proxy include the running proxy last loaded.
    pub fn proxy_loaded_stamp(&self) -> PathBuf {
        self.at("/var/lib/ocusers/proxy/loaded")
    }
    /// Drop-in giving every tenant's proxy socket to the proxy's user.
    pub fn proxy_socket_dropin(&self) -> PathBuf {
        self.at("/etc/systemd/system/openclaw-proxy@.socket.d/ocusers-proxy.conf")
    }
    /// The tenant's proxy socket (`openclaw-proxy@NAME.socket`).
    pub fn proxy_socket(&self, name: &TenantName) -> PathBuf {
        self.at(&proxy_socket_path(name))
    }

    /// Serialises changes to the host.
    pub fn lock_file(&self) -> PathBuf {
        self.at("/run/ocusers.lock")
    }
    /// The start gate's board: who waits to start and who starts
    /// (see `crate::startgate`).
    /// Beside the host lock, not in `/run/ocusers`: the gate runs with the
    /// unit's `UMask=0077`, and a `/run/ocusers` it made would be 0700, which
    /// the proxy (caddy, www-data) must traverse to the tenants' sockets.
    pub fn start_gate_board(&self) -> PathBuf {
        self.at("/run/ocusers-start-gate.json")
    }
    /// Held while a gate reads and changes the board.
    pub fn start_gate_lock(&self) -> PathBuf {
        self.at("/run/ocusers-start-gate.lock")
    }
}

/// Where the proxy finds the host links, as the proxy sees it.
pub const PROXY_HOSTS_DIR: &str = "/var/lib/ocusers/proxy/hosts";
const PUBLIC_DIR: &str = "/var/lib/ocusers/public";

/// `/run/ocusers/proxy/alice`, as the system sees it: the directory of the
/// tenant's proxy socket, which every host link of the tenant points at.
pub fn proxy_socket_dir(name: &TenantName) -> String {
    format!("/run/ocusers/proxy/{name}")
}

/// `/run/ocusers/proxy/alice/gateway.sock` (the socket unit template says
/// `ListenStream=/run/ocusers/proxy/%i/gateway.sock`).
pub fn proxy_socket_path(name: &TenantName) -> String {
    format!("{}/gateway.sock", proxy_socket_dir(name))
}

/// `openclaw-proxy@alice.socket`
pub fn proxy_socket_unit(name: &TenantName) -> String {
    format!("openclaw-proxy@{name}.socket")
}

/// `oc-alice`
pub fn user_name(name: &TenantName) -> String {
    format!("{USER_PREFIX}{name}")
}

/// The tenant's home and state directory as the system sees it (passwd,
/// the unit, the gateway's config): always under the real `/`, even when
/// ocusers' own files are under a test root.
pub fn home_dir(name: &TenantName) -> PathBuf {
    Paths::default().state_dir(name)
}

/// `/var/lib/ocusers/public/NAME` as the tenant's unit and its gateway's
/// config see it (`OPENCLAW_INCLUDE_ROOTS`, `$include`): always under the
/// real `/`.
pub fn public_dir(name: &TenantName) -> PathBuf {
    Paths::default().public_dir(name)
}

/// `openclaw@alice.service`
pub fn unit_name(name: &TenantName) -> String {
    format!("openclaw@{name}.service")
}
