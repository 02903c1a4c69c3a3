//! systemd, over D-Bus. A small trait in front of `zbus_systemd` so the rest
//! of the library reads as operations on units; the real implementation
//! calls the async proxies through `zbus::block_on` at this edge.
//!
//! A new D-Bus call: a method on [`Systemd`] (so the plan goldens' fakes see
//! it) and its implementation in `systemd/dbus.rs`. Only `crate::cli`
//! connects ([`DbusSystemd::connect`]); everything else takes `&dyn Systemd`
//! (`provision::converge` takes `&DbusSystemd`: it defers daemon-reloads).

use anyhow::Result;
use serde::Serialize;

/// The resource properties ocusers sets on a tenant's unit, in systemd's
/// D-Bus units (bytes, microseconds of CPU per second, tasks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limits {
    pub memory_high: u64,
    pub memory_max: u64,
    pub cpu_quota_per_sec_usec: u64,
    pub tasks_max: u64,
}

/// What ocusers reads about a unit. `None` where systemd reports "not set"
/// or infinity (u64::MAX on the bus).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UnitInfo {
    pub load_state: String,
    pub active_state: String,
    pub sub_state: String,
    pub unit_file_state: String,
    /// Microseconds since the epoch when the unit last became active; 0 if never.
    pub active_enter_usec: u64,
    pub main_pid: u32,
    pub n_restarts: u32,
    /// systemd's `Result` of the last run; empty from [`Systemd::units`]
    /// for a unit it read from its cgroup (a running one).
    pub result: String,
    pub memory_current: Option<u64>,
    pub memory_high: Option<u64>,
    pub memory_max: Option<u64>,
    pub cpu_usage_nsec: Option<u64>,
    pub cpu_quota_per_sec_usec: Option<u64>,
    pub tasks_current: Option<u64>,
    pub tasks_max: Option<u64>,
    pub control_group: String,
}

pub trait Systemd {
    fn unit(&self, unit: &str) -> Result<UnitInfo>;
    /// Many units; an implementation may ask for them all at once.
    fn units(&self, units: &[String]) -> Vec<Result<UnitInfo>> {
        units.iter().map(|u| self.unit(u)).collect()
    }
    /// `enabled`, `disabled`, ... as `systemctl is-enabled` says it.
    fn unit_file_state(&self, unit: &str) -> Result<String>;
    fn enable(&self, unit: &str) -> Result<()>;
    fn disable(&self, unit: &str) -> Result<()>;
    /// Start and wait for the job; an error if the job did not succeed.
    fn start(&self, unit: &str) -> Result<()>;
    fn stop(&self, unit: &str) -> Result<()>;
    fn restart(&self, unit: &str) -> Result<()>;
    /// Persistent (`runtime=false`) resource limits and `SocketBindAllow=`/
    /// `SocketBindDeny=` lists (replacing earlier ones), in one call.
    fn set_limits_and_bind(&self, unit: &str, limits: &Limits, bind: &SocketBind) -> Result<()>;
    fn reset_failed(&self, unit: &str) -> Result<()>;
    /// `ActiveState` of any kind of unit (a socket, a proxy's service).
    fn active_state(&self, unit: &str) -> Result<String>;
    /// Reload (not restart) a running unit and wait for the job.
    fn reload(&self, unit: &str) -> Result<()>;
    /// `systemctl daemon-reload`: re-read unit files and drop-ins.
    fn daemon_reload(&self) -> Result<()>;
    /// The unit's `SocketBindAllow=` and `SocketBindDeny=` lists.
    fn socket_bind(&self, unit: &str) -> Result<SocketBind> {
        anyhow::bail!("reading SocketBindAllow= of {unit} is not supported here")
    }
}

/// A port range of a `SocketBindAllow=`/`SocketBindDeny=` rule, for TCP
/// and UDP over IPv4 and IPv6 (systemd: family AF_UNSPEC, protocol 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// The ports a unit's processes may `bind()`: systemd checks the allow
/// list first, then the deny list; ports in neither stay allowed (so
/// binding port 0, an ephemeral port, still works). Enforced only where
/// systemd has its BPF framework (`systemctl --version`: +BPF_FRAMEWORK).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SocketBind {
    pub allow: Vec<PortRange>,
    pub deny: Vec<PortRange>,
}

impl UnitInfo {
    pub fn is_active(&self) -> bool {
        self.active_state == "active" || self.active_state == "reloading"
    }
}

mod dbus;
#[cfg(test)]
pub mod fake;

pub use dbus::{DbusSystemd, MAX_PENDING_READS, RUNNING_SERVICE_PROPS, SERVICE_PROPS, UNIT_PROPS};
#[cfg(test)]
use dbus::{bind_items, limits_and_bind_props};

#[cfg(test)]
mod tests;
