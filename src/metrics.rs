//! `ocusers metrics`: every tenant's state as systemd and the gateway report
//! it ([`crate::status::collect_all`]), and the host's committed memory
//! against its RAM, in the Prometheus text exposition format (for
//! node_exporter's textfile collector or any scraper of a file).
use std::fmt::Write as _;

use crate::status::TenantStatus;

/// The host-wide figures.
#[derive(Debug, Clone, Copy)]
pub struct Host {
    pub ram: u64,
    pub overcommit: f64,
}

struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    value: fn(&TenantStatus) -> Option<f64>,
}

const FAMILIES: &[Family] = &[
    Family {
        name: "ocusers_tenant_active",
        kind: "gauge",
        help: "1 when systemd reports the tenant's unit active.",
        value: |s| Some(f64::from(u8::from(s.state == "active"))),
    },
    Family {
        name: "ocusers_tenant_sleeping",
        kind: "gauge",
        help: "1 when the tenant sleeps (idle_stop): gateway stopped, its socket listening to wake it.",
        value: |s| Some(f64::from(u8::from(s.state == crate::sleep::SLEEPING))),
    },
    Family {
        name: "ocusers_tenant_ready",
        kind: "gauge",
        help: "1 when the tenant's gateway answers /readyz with 200.",
        value: |s| s.ready.map(|r| f64::from(u8::from(r))),
    },
    Family {
        name: "ocusers_tenant_memory_current_bytes",
        kind: "gauge",
        help: "Memory used by the tenant's unit (systemd MemoryCurrent).",
        value: |s| s.memory.current.map(|n| n as f64),
    },
    Family {
        name: "ocusers_tenant_memory_high_bytes",
        kind: "gauge",
        help: "Memory above which the tenant is throttled (systemd MemoryHigh).",
        value: |s| s.memory.high.map(|n| n as f64),
    },
    Family {
        name: "ocusers_tenant_memory_max_bytes",
        kind: "gauge",
        help: "Hard memory limit of the tenant (systemd MemoryMax).",
        value: |s| s.memory.max.map(|n| n as f64),
    },
    Family {
        name: "ocusers_tenant_cpu_seconds_total",
        kind: "counter",
        help: "CPU time used by the tenant's unit since it started (systemd CPUUsageNSec).",
        value: |s| s.cpu_usage_nsec.map(|n| n as f64 / 1e9),
    },
    Family {
        name: "ocusers_tenant_cpu_quota_ratio",
        kind: "gauge",
        help: "CPU quota of the tenant in CPUs (systemd CPUQuotaPerSecUSec / 1e6).",
        value: |s| s.cpu_quota_per_sec_usec.map(|n| n as f64 / 1e6),
    },
    Family {
        name: "ocusers_tenant_tasks",
        kind: "gauge",
        help: "Tasks (threads) in the tenant's unit (systemd TasksCurrent).",
        value: |s| s.tasks.current.map(|n| n as f64),
    },
    Family {
        name: "ocusers_tenant_tasks_max",
        kind: "gauge",
        help: "Task limit of the tenant (systemd TasksMax).",
        value: |s| s.tasks.max.map(|n| n as f64),
    },
    Family {
        name: "ocusers_tenant_restarts_total",
        kind: "counter",
        help: "Automatic restarts of the tenant's unit (systemd NRestarts).",
        value: |s| Some(f64::from(s.restarts)),
    },
];

/// Label values: backslash, double quote and newline escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    writeln!(out, "# HELP {name} {help}").unwrap();
    writeln!(out, "# TYPE {name} {kind}").unwrap();
}

/// The metrics page. A value systemd reports as not set (or infinity) has
/// no sample, as Prometheus expects of an unknown value.
/// Write the metrics atomically to `path` (node_exporter's textfile
/// collector reads it as its own user: 0644).
pub fn write_textfile(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::fsutil::ensure_dir(dir, 0o755)?;
    }
    crate::fsutil::write_atomic(path, text.as_bytes(), 0o644)
}

pub fn render(tenants: &[TenantStatus], host: Host) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "ocusers_tenant_info",
        "gauge",
        "One per tenant, always 1; labels carry the tier, runtime and gateway port.",
    );
    for s in tenants {
        writeln!(
            out,
            "ocusers_tenant_info{{tenant=\"{}\",tier=\"{}\",runtime=\"{}\",port=\"{}\"}} 1",
            label(&s.name),
            label(&s.tier),
            label(&s.runtime),
            s.port
        )
        .unwrap();
    }
    for f in FAMILIES {
        family(&mut out, f.name, f.kind, f.help);
        for s in tenants {
            if let Some(v) = (f.value)(s) {
                writeln!(out, "{}{{tenant=\"{}\"}} {v}", f.name, label(&s.name)).unwrap();
            }
        }
    }
    let committed: u64 = tenants.iter().filter_map(|s| s.memory.max).sum();
    let host_figures: [(&str, &str, f64); 5] = [
        (
            "ocusers_tenants",
            "Tenants registered on this host.",
            tenants.len() as f64,
        ),
        (
            "ocusers_host_memory_bytes",
            "RAM of the host (MemTotal).",
            host.ram as f64,
        ),
        (
            "ocusers_host_memory_committed_bytes",
            "Sum of the tenants' MemoryMax as systemd reports it.",
            committed as f64,
        ),
        (
            "ocusers_host_memory_commit_limit_bytes",
            "What the capacity guard allows: overcommit ratio x RAM.",
            (host.ram as f64 * host.overcommit).floor(),
        ),
        (
            "ocusers_host_overcommit_ratio",
            "Configured overcommit ratio ([capacity] overcommit).",
            host.overcommit,
        ),
    ];
    for (name, help, v) in host_figures {
        family(&mut out, name, "gauge", help);
        writeln!(out, "{name} {v}").unwrap();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Readiness;
    use crate::status::{Memory, Tasks};

    fn status(name: &str, max: Option<u64>) -> TenantStatus {
        TenantStatus {
            name: name.into(),
            unit: format!("openclaw@{name}.service"),
            user: format!("oc-{name}"),
            port: 20000,
            ports: [20000, 20127],
            tier: "standard".into(),
            runtime: "2026.9.6".into(),
            created: String::new(),
            url: String::new(),
            state: "active".into(),
            sub_state: "running".into(),
            enabled: "enabled".into(),
            ready: Some(true),
            readiness: Readiness::Ready,
            main_pid: Some(1),
            restarts: 2,
            uptime_sec: Some(5),
            memory: Memory {
                current: None,
                high: Some(1536 << 20),
                max,
            },
            cpu_usage_nsec: Some(1_500_000_000),
            cpu_quota_per_sec_usec: Some(1_000_000),
            tasks: Tasks {
                current: Some(30),
                max: Some(512),
            },
        }
    }

    #[test]
    fn renders_samples_and_skips_unknown_values() {
        let text = render(
            &[status("alice", Some(2 << 30)), status("bob", Some(1 << 30))],
            Host {
                ram: 4 << 30,
                overcommit: 1.5,
            },
        );
        assert!(text.contains("ocusers_tenant_cpu_seconds_total{tenant=\"alice\"} 1.5\n"));
        assert!(text.contains("ocusers_tenant_restarts_total{tenant=\"bob\"} 2\n"));
        assert!(text.contains("# TYPE ocusers_tenant_restarts_total counter\n"));
        assert!(!text.contains("ocusers_tenant_memory_current_bytes{"));
        assert!(text.contains(&format!(
            "ocusers_host_memory_committed_bytes {}\n",
            3u64 << 30
        )));
        assert!(text.contains(&format!(
            "ocusers_host_memory_commit_limit_bytes {}\n",
            6u64 << 30
        )));
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
