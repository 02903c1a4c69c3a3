//! [`DbusSystemd`], the real [`Systemd`]: zbus_systemd's async proxies
//! called through `zbus::block_on`, and the property values as they go
//! over the bus.
use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use zbus::names::InterfaceName;
use zbus::{Connection, OwnedObjectPath, OwnedVariant};
use zbus_systemd::systemd1::ManagerProxy;

use super::Limits;
use super::{PortRange, SocketBind, Systemd, UnitInfo};
use crate::cgroup;

pub(super) fn bind_items(map: &HashMap<String, OwnedVariant>, key: &str) -> Vec<PortRange> {
    use zbus::Variant as Value;
    let mut out = Vec::new();
    if let Some(Value::Array(items)) = map.get(key).map(|v| &**v) {
        for item in items.iter() {
            if let Value::Structure(s) = item
                && let [_, _, Value::U16(n), Value::U16(min)] = s.fields()
                && *n > 0
            {
                out.push(PortRange {
                    first: *min,
                    last: min.saturating_add(n - 1),
                });
            }
        }
    }
    out
}

fn bind_variant(ranges: &[PortRange]) -> OwnedVariant {
    let items: Vec<(i32, i32, u16, u16)> = ranges
        .iter()
        .map(|r| (0, 0, r.last - r.first + 1, r.first))
        .collect();
    OwnedVariant::try_from(zbus::Variant::from(items))
        .expect("an array of (iiqq) has no file descriptors")
}

/// Property reads [`Systemd::units`] keeps in flight at once: dbus-daemon
/// allows a connection 128 pending replies on the system bus (more fail
/// with `LimitsExceeded`); leave room.
pub const MAX_PENDING_READS: usize = 96;
/// The unit's states, which `ListUnitsByNames` also gives.
const STATE_PROPS: &[&str] = &["LoadState", "ActiveState", "SubState"];
/// Read from the Unit interface besides the states.
pub const UNIT_PROPS: &[&str] = &["UnitFileState", "ActiveEnterTimestamp"];
/// What a running unit's cgroup does not tell (see [`crate::cgroup`]).
pub const RUNNING_SERVICE_PROPS: &[&str] = &["MainPID", "NRestarts"];
/// Read from the Service interface of a unit not read from its cgroup.
pub const SERVICE_PROPS: &[&str] = &[
    "MainPID",
    "NRestarts",
    "Result",
    "MemoryCurrent",
    "MemoryHigh",
    "MemoryMax",
    "CPUUsageNSec",
    "CPUQuotaPerSecUSec",
    "TasksCurrent",
    "TasksMax",
    "ControlGroup",
];

pub struct DbusSystemd {
    conn: Connection,
    /// Set by [`DbusSystemd::defer_reloads`]: a daemon-reload that enabling
    /// or disabling asks for waits for [`DbusSystemd::finish_reloads`].
    defer_reloads: std::cell::Cell<bool>,
    reload_pending: std::cell::Cell<bool>,
}

impl DbusSystemd {
    pub fn connect() -> Result<DbusSystemd> {
        let conn = zbus::block_on(Connection::system()).context(
            "cannot reach systemd over the system D-Bus (ocusers needs systemd as PID 1 and dbus running)",
        )?;
        Ok(DbusSystemd {
            conn,
            defer_reloads: Default::default(),
            reload_pending: Default::default(),
        })
    }

    /// systemd's version string, like `252.39-1~deb12u1`.
    pub fn version(&self) -> Result<String> {
        zbus::block_on(async { anyhow::Ok(self.manager().await?.version().await?) })
            .context("reading systemd's version")
    }

    /// Persistent (`runtime=false`) `SetUnitProperties`: systemd writes the
    /// values as drop-ins in /etc/systemd/system.control/UNIT.d/.
    fn set_properties(&self, unit: &str, props: Vec<(String, OwnedVariant)>) -> Result<()> {
        zbus::block_on(async {
            self.manager()
                .await?
                .set_unit_properties(unit.into(), false, props)
                .await?;
            anyhow::Ok(())
        })
    }

    /// After enabling or disabling: a daemon-reload if systemd now asks for
    /// one. From 255 on (Debian 13's 257), any unit-file change over D-Bus
    /// marks every unit on the host `NeedDaemonReload=yes` until the next
    /// reload (its `unit_file_state_outdated`), so `systemctl status` of any
    /// unit would say "changed on disk, run daemon-reload"; `systemctl
    /// enable` and `disable` reload right after for that reason. 252 has no
    /// such mark, and `add` leaves its units unflagged there (see
    /// [`limits_and_bind_props`]), so the reload costs nothing there.
    fn reload_if_asked(&self, unit: &str) -> Result<()> {
        let asked = zbus::block_on(self.props_of(
            unit,
            "org.freedesktop.systemd1.Unit",
            &["NeedDaemonReload"],
        ))
        .with_context(|| format!("reading NeedDaemonReload of {unit}"))?
        .get("NeedDaemonReload")
        .and_then(|v| bool::try_from(v).ok())
        .unwrap_or(false);
        if asked && self.defer_reloads.get() {
            self.reload_pending.set(true);
        } else if asked {
            tracing::debug!("{unit}: systemd asks for a daemon-reload; reloading");
            self.daemon_reload()?;
        }
        Ok(())
    }

    /// For a command that enables or disables many units (`apply`): one
    /// daemon-reload at the end, from [`DbusSystemd::finish_reloads`],
    /// instead of one a unit. A reload re-reads every unit on the host.
    pub fn defer_reloads(&self) {
        self.defer_reloads.set(true);
    }

    /// The daemon-reload deferred since [`DbusSystemd::defer_reloads`], if
    /// systemd asked for one.
    pub fn finish_reloads(&self) -> Result<()> {
        self.defer_reloads.set(false);
        if self.reload_pending.replace(false) {
            tracing::debug!("systemd asked for a daemon-reload; reloading once");
            self.daemon_reload()?;
        }
        Ok(())
    }

    /// The manager proxy without a property cache: a cached proxy fetches
    /// all of the manager's properties and subscribes to their changes
    /// first, a round trip ocusers never needs.
    async fn manager(&self) -> Result<ManagerProxy<'_>> {
        Ok(ManagerProxy::builder(&self.conn)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await?)
    }

    async fn read_unit(&self, mgr: &ManagerProxy<'_>, unit: &str) -> Result<UnitInfo> {
        let path = mgr.load_unit(unit.into()).await?;
        self.read_at(&path, None, None).await
    }

    /// The unit at `path`. Its states are read too unless given (from
    /// `ListUnitsByNames`). Given the figures of its cgroup (a running unit,
    /// see [`crate::cgroup`]), only what they do not tell is read: 4
    /// properties instead of 13. `result` then stays empty: systemd resets
    /// it when a service starts, so a running unit's says nothing, and
    /// `status` does not show it.
    async fn read_at(
        &self,
        path: &OwnedObjectPath,
        states: Option<[String; 3]>,
        running: Option<(&str, cgroup::Figures)>,
    ) -> Result<UnitInfo> {
        // Only the properties ocusers reads: GetAll makes systemd compute and
        // send some 300 (IP and IO accounting, exec arrays, ...) per unit.
        let unit_props: Vec<&str> = match states {
            Some(_) => UNIT_PROPS.to_vec(),
            None => STATE_PROPS.iter().chain(UNIT_PROPS).copied().collect(),
        };
        let service_props = match running {
            Some(_) => RUNNING_SERVICE_PROPS,
            None => SERVICE_PROPS,
        };
        let (u, s) = futures_util::future::try_join(
            self.get_some(path, "org.freedesktop.systemd1.Unit", &unit_props),
            self.get_some(path, "org.freedesktop.systemd1.Service", service_props),
        )
        .await?;
        let [load_state, active_state, sub_state] = states.unwrap_or_else(|| {
            [
                string(&u, "LoadState"),
                string(&u, "ActiveState"),
                string(&u, "SubState"),
            ]
        });
        let mut info = UnitInfo {
            load_state,
            active_state,
            sub_state,
            unit_file_state: string(&u, "UnitFileState"),
            active_enter_usec: u64_of(&u, "ActiveEnterTimestamp").unwrap_or(0),
            main_pid: u32_of(&s, "MainPID"),
            n_restarts: u32_of(&s, "NRestarts"),
            result: string(&s, "Result"),
            memory_current: u64_of(&s, "MemoryCurrent"),
            memory_high: u64_of(&s, "MemoryHigh"),
            memory_max: u64_of(&s, "MemoryMax"),
            cpu_usage_nsec: u64_of(&s, "CPUUsageNSec"),
            cpu_quota_per_sec_usec: u64_of(&s, "CPUQuotaPerSecUSec"),
            tasks_current: u64_of(&s, "TasksCurrent"),
            tasks_max: u64_of(&s, "TasksMax"),
            control_group: string(&s, "ControlGroup"),
        };
        if let Some((unit, f)) = running {
            info.memory_current = Some(f.memory_current);
            info.memory_high = f.memory_high;
            info.memory_max = f.memory_max;
            info.cpu_usage_nsec = Some(f.cpu_usage_nsec);
            info.cpu_quota_per_sec_usec = f.cpu_quota_per_sec_usec;
            info.tasks_current = Some(f.tasks_current);
            info.tasks_max = f.tasks_max;
            info.control_group = cgroup::unit_path(unit);
        }
        Ok(info)
    }

    /// The named properties of `unit` (loaded if it is not), by name.
    async fn props_of(
        &self,
        unit: &str,
        interface: &'static str,
        names: &[&str],
    ) -> Result<HashMap<String, OwnedVariant>> {
        let path = self.manager().await?.load_unit(unit.into()).await?;
        self.get_some(&path, interface, names).await
    }

    async fn get_some(
        &self,
        path: &OwnedObjectPath,
        interface: &'static str,
        names: &[&str],
    ) -> Result<HashMap<String, OwnedVariant>> {
        let props = zbus::fdo::PropertiesProxy::builder(&self.conn)
            .destination("org.freedesktop.systemd1")
            .path(path.clone())
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await?;
        let iface = InterfaceName::try_from(interface)?;
        let values =
            futures_util::future::try_join_all(names.iter().map(|n| props.get(iface.clone(), n)))
                .await?;
        Ok(names.iter().map(|n| n.to_string()).zip(values).collect())
    }

    async fn run_job(&self, unit: &str, verb: Verb) -> Result<()> {
        let mgr = self.manager().await?;
        // Listen before the job exists so its JobRemoved cannot be missed.
        // One connection subscribes once; a second job on it is fine.
        match mgr.subscribe().await {
            Err(zbus::Error::MethodError(name, _, _))
                if name.as_str() == "org.freedesktop.systemd1.AlreadySubscribed" => {}
            other => other?,
        }
        let mut removed = mgr.receive_job_removed().await?;
        let mode = "replace".to_string();
        let job = match verb {
            Verb::Start => mgr.start_unit(unit.into(), mode).await,
            Verb::Stop => mgr.stop_unit(unit.into(), mode).await,
            Verb::Restart => mgr.restart_unit(unit.into(), mode).await,
            Verb::Reload => mgr.reload_unit(unit.into(), mode).await,
        }?;
        while let Some(signal) = removed.next().await {
            let args = signal.args()?;
            if *args.job() == job {
                let result = args.result();
                if result == "done" {
                    return Ok(());
                }
                bail!(
                    "{} job for {unit} ended with result {result:?}; see `systemctl status {unit}` and `journalctl -u {unit}`",
                    verb.name()
                );
            }
        }
        bail!("lost the D-Bus connection while waiting for {unit}")
    }
}

#[derive(Clone, Copy)]
enum Verb {
    Start,
    Stop,
    Restart,
    Reload,
}

impl Verb {
    fn name(self) -> &'static str {
        match self {
            Verb::Start => "start",
            Verb::Stop => "stop",
            Verb::Restart => "restart",
            Verb::Reload => "reload",
        }
    }
}

fn string(map: &HashMap<String, OwnedVariant>, key: &str) -> String {
    map.get(key)
        .and_then(|v| <&str>::try_from(v).ok())
        .unwrap_or_default()
        .to_string()
}

fn u64_of(map: &HashMap<String, OwnedVariant>, key: &str) -> Option<u64> {
    map.get(key)
        .and_then(|v| u64::try_from(v).ok())
        .filter(|n| *n != u64::MAX)
}

fn u32_of(map: &HashMap<String, OwnedVariant>, key: &str) -> u32 {
    map.get(key)
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or(0)
}

impl Systemd for DbusSystemd {
    fn unit(&self, unit: &str) -> Result<UnitInfo> {
        zbus::block_on(async {
            let mgr = self.manager().await?;
            self.read_unit(&mgr, unit).await
        })
        .with_context(|| format!("reading {unit} from systemd"))
    }

    /// One `ListUnitsByNames` for the units' states and paths; a running
    /// unit's resource figures from its cgroup v2 files where the host has
    /// them; the other properties with many calls in flight at once on one
    /// connection (pipelined). 200 running units on a cgroup v2 host cost
    /// 800 property reads, not 2,600, and a few round trips' time.
    fn units(&self, units: &[String]) -> Vec<Result<UnitInfo>> {
        let all = zbus::block_on(async {
            let mgr = self.manager().await?;
            let mut listed: HashMap<String, ([String; 3], OwnedObjectPath)> = mgr
                .list_units_by_names(units.to_vec())
                .await?
                .into_iter()
                .map(|(name, _, load, active, sub, _, path, ..)| {
                    (name, ([load, active, sub], path))
                })
                .collect();
            let plans: Vec<_> = units
                .iter()
                .map(|unit| {
                    let known = listed.remove(unit.as_str());
                    let figures = known
                        .as_ref()
                        .and_then(|_| cgroup::read(&cgroup::unit_dir(unit)));
                    (unit, known, figures)
                })
                .collect();
            let from_cgroup = plans.iter().filter(|(_, _, f)| f.is_some()).count();
            tracing::debug!(
                "{from_cgroup} of {} units read from their cgroup, the rest from systemd",
                units.len()
            );
            let reads_per_unit = if from_cgroup == plans.len() {
                UNIT_PROPS.len() + RUNNING_SERVICE_PROPS.len()
            } else {
                STATE_PROPS.len() + UNIT_PROPS.len() + SERVICE_PROPS.len()
            };
            let reads = plans.into_iter().map(|(unit, known, figures)| {
                let mgr = &mgr;
                async move {
                    match known {
                        Some((states, path)) => {
                            let running = figures.map(|f| (unit.as_str(), f));
                            self.read_at(&path, Some(states), running).await
                        }
                        None => self.read_unit(mgr, unit).await,
                    }
                    .with_context(|| format!("reading {unit} from systemd"))
                }
            });
            anyhow::Ok(
                futures_util::stream::iter(reads)
                    .buffered(MAX_PENDING_READS / reads_per_unit)
                    .collect::<Vec<_>>()
                    .await,
            )
        });
        match all {
            Ok(v) => v,
            Err(e) => units
                .iter()
                .map(|u| Err(anyhow::anyhow!("reading {u} from systemd: {e:#}")))
                .collect(),
        }
    }

    fn unit_file_state(&self, unit: &str) -> Result<String> {
        zbus::block_on(async {
            anyhow::Ok(
                self.manager()
                    .await?
                    .get_unit_file_state(unit.into())
                    .await?,
            )
        })
        .with_context(|| format!("reading the unit file state of {unit}"))
    }

    fn enable(&self, unit: &str) -> Result<()> {
        zbus::block_on(async {
            self.manager()
                .await?
                .enable_unit_files(vec![unit.into()], false, false)
                .await?;
            anyhow::Ok(())
        })
        .with_context(|| format!("enabling {unit}"))?;
        self.reload_if_asked(unit)
    }

    fn disable(&self, unit: &str) -> Result<()> {
        zbus::block_on(async {
            self.manager()
                .await?
                .disable_unit_files(vec![unit.into()], false)
                .await?;
            anyhow::Ok(())
        })
        .with_context(|| format!("disabling {unit}"))?;
        self.reload_if_asked(unit)
    }

    fn start(&self, unit: &str) -> Result<()> {
        zbus::block_on(self.run_job(unit, Verb::Start)).with_context(|| format!("starting {unit}"))
    }

    fn stop(&self, unit: &str) -> Result<()> {
        zbus::block_on(self.run_job(unit, Verb::Stop)).with_context(|| format!("stopping {unit}"))
    }

    fn restart(&self, unit: &str) -> Result<()> {
        zbus::block_on(self.run_job(unit, Verb::Restart))
            .with_context(|| format!("restarting {unit}"))
    }

    fn set_limits_and_bind(&self, unit: &str, limits: &Limits, bind: &SocketBind) -> Result<()> {
        self.set_properties(unit, limits_and_bind_props(limits, bind))
            .with_context(|| {
                format!("setting resource limits and SocketBindAllow=/SocketBindDeny= on {unit}")
            })
    }

    fn reset_failed(&self, unit: &str) -> Result<()> {
        zbus::block_on(async {
            match self.manager().await?.reset_failed_unit(unit.into()).await {
                // Not loaded: nothing to reset.
                Err(zbus::Error::MethodError(name, _, _))
                    if name.as_str() == "org.freedesktop.systemd1.NoSuchUnit" =>
                {
                    Ok(())
                }
                other => other.map_err(anyhow::Error::from),
            }
        })
        .with_context(|| format!("resetting the failed state of {unit}"))
    }

    fn active_state(&self, unit: &str) -> Result<String> {
        zbus::block_on(self.props_of(unit, "org.freedesktop.systemd1.Unit", &["ActiveState"]))
            .map(|u| string(&u, "ActiveState"))
            .with_context(|| format!("reading the state of {unit} from systemd"))
    }

    fn reload(&self, unit: &str) -> Result<()> {
        zbus::block_on(self.run_job(unit, Verb::Reload))
            .with_context(|| format!("reloading {unit}"))
    }

    fn daemon_reload(&self) -> Result<()> {
        zbus::block_on(async { anyhow::Ok(self.manager().await?.reload().await?) })
            .context("reloading systemd's unit files (daemon-reload)")
    }

    fn socket_bind(&self, unit: &str) -> Result<SocketBind> {
        zbus::block_on(self.props_of(
            unit,
            "org.freedesktop.systemd1.Service",
            &["SocketBindAllow", "SocketBindDeny"],
        ))
        .map(|s| SocketBind {
            allow: bind_items(&s, "SocketBindAllow"),
            deny: bind_items(&s, "SocketBindDeny"),
        })
        .with_context(|| format!("reading SocketBindAllow= of {unit} from systemd"))
    }
}

/// The properties [`Systemd::set_limits_and_bind`] sets, in the order of
/// the drop-ins systemd writes for them in
/// /etc/systemd/system.control/UNIT.d/ (`50-CPUQuota.conf`, ...,
/// `50-TasksMax.conf`). systemd 252 (Debian 12) adds each new drop-in to
/// the unit's list in the order it writes them, and `NeedDaemonReload`
/// compares that list with the sorted one it finds on disk (systemd#35710,
/// fixed upstream in 2026 by #40355). Written in any other order, every
/// `systemctl status openclaw@NAME` after `add` told the operator to run
/// `systemctl daemon-reload`; so both sets go in one call, sorted.
pub(super) fn limits_and_bind_props(
    limits: &Limits,
    bind: &SocketBind,
) -> Vec<(String, OwnedVariant)> {
    vec![
        (
            "CPUQuotaPerSecUSec".into(),
            OwnedVariant::from(limits.cpu_quota_per_sec_usec),
        ),
        ("MemoryHigh".into(), OwnedVariant::from(limits.memory_high)),
        ("MemoryMax".into(), OwnedVariant::from(limits.memory_max)),
        // An empty list resets; the next one is then the whole list.
        ("SocketBindAllow".into(), bind_variant(&[])),
        ("SocketBindAllow".into(), bind_variant(&bind.allow)),
        ("SocketBindDeny".into(), bind_variant(&[])),
        ("SocketBindDeny".into(), bind_variant(&bind.deny)),
        ("TasksMax".into(), OwnedVariant::from(limits.tasks_max)),
    ]
}
