//! What `ocusers list` and `ocusers status` report: the registry's few facts
//! joined with what systemd says now and what the gateway answers. The JSON
//! shape is documented in README.md ("Output") and kept stable.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use serde::Serialize;

use crate::health::{self, Readiness};
use crate::paths::{self, Paths};
use crate::systemd::{Systemd, UnitInfo};
use crate::tenant::Record;

#[derive(Debug, Clone, Serialize)]
pub struct TenantStatus {
    pub name: String,
    pub unit: String,
    pub user: String,
    pub port: u16,
    pub ports: [u16; 2],
    pub tier: String,
    pub runtime: String,
    pub created: String,
    pub url: String,
    /// systemd's ActiveState / SubState.
    pub state: String,
    pub sub_state: String,
    pub enabled: String,
    /// None (`null`) when readiness is unknown: probed only as root.
    pub ready: Option<bool>,
    pub readiness: Readiness,
    pub main_pid: Option<u32>,
    pub restarts: u32,
    pub uptime_sec: Option<u64>,
    pub memory: Memory,
    pub cpu_usage_nsec: Option<u64>,
    pub cpu_quota_per_sec_usec: Option<u64>,
    pub tasks: Tasks,
}

#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    pub current: Option<u64>,
    pub high: Option<u64>,
    pub max: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Tasks {
    pub current: Option<u64>,
    pub max: Option<u64>,
}

/// Do we probe readiness? Only as root: the firewall refuses a tenant's
/// port to everyone but the tenant and root, so a normal user's probe would
/// call every gateway unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    Gateways,
    /// Readiness of a running unit is reported as unknown.
    NotAsThisUser,
}

impl Probe {
    /// `Gateways` for root, `NotAsThisUser` for anyone else.
    pub fn for_this_user() -> Probe {
        if nix::unistd::geteuid().is_root() {
            Probe::Gateways
        } else {
            Probe::NotAsThisUser
        }
    }
}

pub fn collect(paths: &Paths, sd: &dyn Systemd, record: &Record) -> Result<TenantStatus> {
    collect_as(paths, sd, record, Probe::for_this_user())
}

/// [`collect`], probing or not as `probe` says.
pub fn collect_as(
    paths: &Paths,
    sd: &dyn Systemd,
    record: &Record,
    probe: Probe,
) -> Result<TenantStatus> {
    let unit = paths::unit_name(&record.name);
    let mut info: UnitInfo = sd.unit(&unit)?;
    mark_sleeping(paths, sd, record, &mut info);
    let readiness = readiness(record, &info, probe);
    Ok(assemble(record, info, readiness))
}

/// A sleeper (idle_stop) whose gateway is stopped and whose socket listens
/// is `sleeping`, not stopped: its next connection wakes it. Asked only of
/// stopped units, and of systemd only for sleepers (their drop-in).
fn mark_sleeping(paths: &Paths, sd: &dyn Systemd, record: &Record, info: &mut UnitInfo) {
    if crate::sleep::sleeping(paths, sd, &record.name, &info.active_state) {
        info.active_state = crate::sleep::SLEEPING.into();
    }
}

/// Each step of one readiness probe in `status`, `list` and `metrics`.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Asks the gateway only when systemd says it runs.
fn readiness(record: &Record, info: &UnitInfo, probe: Probe) -> Readiness {
    if !info.is_active() {
        Readiness::Unreachable(format!("unit is {}", info.active_state))
    } else if probe == Probe::NotAsThisUser {
        Readiness::Unknown(health::ONLY_ROOT.into())
    } else {
        health::probe(record.port, PROBE_TIMEOUT)
    }
}

/// Status of many tenants: systemd asked for all units at once while a few
/// threads probe the gateways (every one: a stopped gateway's port refuses
/// at once, and the answer counts only for a unit systemd says runs).
pub fn collect_many(
    paths: &Paths,
    sd: &dyn Systemd,
    records: &[Record],
) -> Result<Vec<TenantStatus>> {
    collect_many_as(paths, sd, records, Probe::for_this_user())
}

/// [`collect_many`], probing or not as `probe` says.
pub fn collect_many_as(
    paths: &Paths,
    sd: &dyn Systemd,
    records: &[Record],
    probe: Probe,
) -> Result<Vec<TenantStatus>> {
    let units: Vec<String> = records.iter().map(|r| paths::unit_name(&r.name)).collect();
    if probe == Probe::NotAsThisUser {
        let infos = sd.units(&units).into_iter().collect::<Result<Vec<_>>>()?;
        return Ok(records
            .iter()
            .zip(infos)
            .map(|(r, mut info)| {
                mark_sleeping(paths, sd, r, &mut info);
                let readiness = readiness(r, &info, probe);
                assemble(r, info, readiness)
            })
            .collect());
    }
    let threads = records.len().clamp(1, 16);
    let chunk = records.len().div_ceil(threads).max(1);
    let (infos, probes) = std::thread::scope(|scope| {
        let handles: Vec<_> = records
            .chunks(chunk)
            .map(|rs| {
                scope.spawn(move || {
                    rs.iter()
                        .map(|r| health::probe(r.port, PROBE_TIMEOUT))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let infos = sd.units(&units);
        let probes: Vec<Readiness> = handles
            .into_iter()
            .flat_map(|h| h.join().expect("readiness probe thread panicked"))
            .collect();
        (infos, probes)
    });
    let infos = infos.into_iter().collect::<Result<Vec<_>>>()?;
    Ok(records
        .iter()
        .zip(infos)
        .zip(probes)
        .map(|((r, mut info), probe)| {
            mark_sleeping(paths, sd, r, &mut info);
            let readiness = if info.is_active() {
                probe
            } else {
                readiness(r, &info, Probe::Gateways)
            };
            assemble(r, info, readiness)
        })
        .collect())
}

fn assemble(record: &Record, info: UnitInfo, readiness: Readiness) -> TenantStatus {
    let unit = paths::unit_name(&record.name);
    let uptime_sec = (info.is_active() && info.active_enter_usec > 0).then(|| {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros() as u64;
        now.saturating_sub(info.active_enter_usec) / 1_000_000
    });
    TenantStatus {
        name: record.name.to_string(),
        user: paths::user_name(&record.name),
        port: record.port,
        ports: [record.port, record.last_port()],
        tier: record.tier.clone(),
        runtime: record.runtime.clone(),
        created: record.created.clone(),
        url: format!("http://127.0.0.1:{}/", record.port),
        state: info.active_state.clone(),
        sub_state: info.sub_state.clone(),
        enabled: info.unit_file_state.clone(),
        ready: readiness.known(),
        readiness,
        main_pid: (info.main_pid != 0).then_some(info.main_pid),
        restarts: info.n_restarts,
        uptime_sec,
        memory: Memory {
            current: info.memory_current,
            high: info.memory_high,
            max: info.memory_max,
        },
        cpu_usage_nsec: info.cpu_usage_nsec,
        cpu_quota_per_sec_usec: info.cpu_quota_per_sec_usec,
        tasks: Tasks {
            current: info.tasks_current,
            max: info.tasks_max,
        },
        unit,
    }
}

/// Status of every record; systemd (opened by the caller only when there
/// is a tenant) is only asked when there is one.
pub fn collect_all(
    paths: &Paths,
    sd: Option<&dyn Systemd>,
    records: &[Record],
) -> Result<Vec<TenantStatus>> {
    match sd {
        _ if records.is_empty() => Ok(Vec::new()),
        Some(sd) => collect_many(paths, sd, records),
        None => anyhow::bail!("reading the tenants' status needs systemd over D-Bus"),
    }
}
