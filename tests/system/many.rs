//! Many tenants (issue #6) on the real systemd of the system tier: the
//! capacity guard and the slice cap, `ocusers metrics` parsed with the
//! official Prometheus text parser and compared with `systemctl show`, and
//! `ocusers apply` / `export` converging five tenants, pruning one and
//! reproducing the set on a second host.
//!
//! Cost: the five tenants `apply` makes on the first host are created and
//! enabled with `--no-start` (five more real gateways would add ~100 s of CPU
//! and ~4 GB); alice's real gateway is running throughout and gets its new
//! limit live. The second host runs the stub gateway
//! (tests/support/stub_runtime.rs), so there `apply` starts every tenant,
//! waits for /readyz and restarts one whose tier changed.
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::support::assert::{R, ensure};
use crate::support::nspawn::Container;
use crate::support::process::{check, describe};
use crate::support::trials::Figures as _;
use crate::support::{rootfs, stub_runtime};
use crate::tenants::Fixture;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(c: &Container, script: &str) -> Result<String, String> {
    check(script, c.sh(script))
}

fn show(c: &Container, unit: &str, prop: &str) -> Result<String, String> {
    Ok(ok(c, &format!("systemctl show -P {prop} {unit}"))?
        .trim()
        .to_string())
}

fn show_u64(c: &Container, unit: &str, prop: &str) -> Result<Option<u64>, String> {
    let v = show(c, unit, prop)?;
    if v == "[not set]" || v == "infinity" || v.is_empty() {
        return Ok(None);
    }
    v.parse()
        .map(Some)
        .map_err(|e| format!("{unit} {prop}={v:?}: {e}"))
}

fn mem_total(c: &Container) -> Result<u64, String> {
    let kb: u64 = ok(c, "awk '/^MemTotal:/ {print $2}' /proc/meminfo")?
        .trim()
        .parse()
        .map_err(|e| format!("MemTotal: {e}"))?;
    Ok(kb * 1024)
}

/// `ocusers status --json` of every tenant: the sum of their MemoryMax.
fn committed(c: &Container) -> Result<u64, String> {
    let v: Value = serde_json::from_str(&ok(c, "ocusers status --json")?)
        .map_err(|e| format!("status JSON: {e}"))?;
    Ok(v["tenants"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["memory"]["max"].as_u64())
        .sum())
}

fn gib(n: u64) -> String {
    format!("{:.1}G", n as f64 / (1u64 << 30) as f64)
}

/// Writes `/etc/ocusers/ocusers.toml` inside with `extra` appended; gives
/// back the old text to restore.
fn with_host_config(c: &Container, extra: &str) -> Result<Option<String>, String> {
    let path = c.root().join("etc/ocusers/ocusers.toml");
    let old = std::fs::read_to_string(&path).ok();
    let new = format!("{}\n{extra}", old.clone().unwrap_or_default());
    std::fs::write(&path, new).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(old)
}

fn restore_host_config(c: &Container, old: Option<String>) -> R {
    let path = c.root().join("etc/ocusers/ocusers.toml");
    match old {
        Some(t) => std::fs::write(&path, t),
        None => std::fs::remove_file(&path),
    }
    .map_err(|e| format!("restoring {}: {e}", path.display()))
}

/// `add` and `apply` refuse with the numbers when the tenants' MemoryMax
/// would pass the overcommit ratio; `--force` lets it through; nothing is
/// made. openclaw.slice carries the host-wide cap.
pub fn capacity_guard_refuses(fx: &Fixture) -> R {
    let c = &fx.c;
    let ram = mem_total(c)?;
    let before = committed(c)?;
    let old = with_host_config(c, "[capacity]\novercommit = 0.05\n")?;
    let result = (|| {
        let out = c.sh("ocusers add carol --tier heavy");
        let err = text(&out.stderr);
        ensure(out.status.code() == Some(1), || describe(&out))?;
        ensure(err.lines().count() == 1, || format!("one line: {err}"))?;
        let total = gib(before + (4u64 << 30));
        let limit = gib((ram as f64 * 0.05) as u64);
        for want in [
            "not enough memory for tenant carol (tier heavy, MemoryMax 4.0G)".to_string(),
            format!(
                "would total {total}, above 0.05 x RAM {} = {limit}",
                gib(ram)
            ),
            "--force".to_string(),
        ] {
            ensure(err.contains(&want), || {
                format!("expected {want:?} in {err}")
            })?;
        }
        ensure(
            c.sh("getent passwd oc-carol").status.code() == Some(2),
            || "oc-carol was created".into(),
        )?;
        ensure(
            !c.root().join("var/lib/ocusers/tenants/carol.toml").exists(),
            || "carol's registry entry was written".into(),
        )?;
        let forced = ok(c, "ocusers add carol --tier heavy --force --dry-run 2>&1")?;
        ensure(
            forced.contains("warning (--force): not enough memory") && forced.contains("dry run"),
            || forced.clone(),
        )?;
        std::fs::write(
            c.root().join("root/over.toml"),
            "[tenants.carol]\ntier = \"heavy\"\n",
        )
        .map_err(|e| e.to_string())?;
        let out = c.sh("ocusers apply /root/over.toml");
        let err = text(&out.stderr);
        ensure(
            out.status.code() == Some(1)
                && err.contains("not enough memory for `ocusers apply /root/over.toml`"),
            || describe(&out),
        )?;
        ensure(
            c.sh("getent passwd oc-carol").status.code() == Some(2),
            || "apply created oc-carol".into(),
        )
    })();
    restore_host_config(c, old)?;
    result?;

    // The host-wide cap: 90% of RAM for all tenants together, as systemd
    // computes it on this host.
    let max =
        show_u64(c, "openclaw.slice", "MemoryMax")?.ok_or("openclaw.slice has no MemoryMax")?;
    let high =
        show_u64(c, "openclaw.slice", "MemoryHigh")?.ok_or("openclaw.slice has no MemoryHigh")?;
    let pct = |n: u64| n as f64 * 100.0 / ram as f64;
    ensure(
        (89.0..=90.5).contains(&pct(max)) && (84.0..=85.5).contains(&pct(high)),
        || format!("openclaw.slice MemoryMax {max} / MemoryHigh {high} of RAM {ram}"),
    )?;
    let slice = show(c, "openclaw@alice.service", "Slice")?;
    ensure(slice == "openclaw.slice", || format!("alice in {slice}"))
}

/// Parse Prometheus text with the official client's parser
/// (`prometheus_client.parser`, Debian's python3-prometheus-client).
/// Returns (sample name, labels) -> value.
fn parse_prometheus(page: &str) -> Result<BTreeMap<(String, String), f64>, String> {
    const SCRIPT: &str = r#"import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        out.append([s.name, s.labels.get('tenant', ''), s.value, fam.type])
print(json.dumps(out))
"#;
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!("cannot run /usr/bin/python3 (install python3-prometheus-client): {e}")
        })?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    ensure(out.status.success(), || {
        format!(
            "the Prometheus parser rejected the page (apt install python3-prometheus-client if missing): {}\n{page}",
            describe(&out)
        )
    })?;
    let rows: Vec<(String, String, f64, String)> =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("parser output: {e}"))?;
    ensure(!rows.is_empty(), || "no samples parsed".into())?;
    Ok(rows
        .into_iter()
        .map(|(name, tenant, v, _)| ((name, tenant), v))
        .collect())
}

/// `ocusers metrics` parses as Prometheus text and its numbers are what
/// `systemctl show` says for the same tenants; the shipped timer's service
/// writes the same page to the textfile collector's directory.
pub fn metrics_match_systemd(fx: &Fixture) -> R {
    let c = &fx.c;
    let names: Vec<String> = {
        let v: Value =
            serde_json::from_str(&ok(c, "ocusers export --json")?).map_err(|e| e.to_string())?;
        v["tenants"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    ensure(names.iter().any(|n| n == "alice"), || {
        format!("alice missing: {names:?}")
    })?;
    let cpu_before = show_u64(c, "openclaw@alice.service", "CPUUsageNSec")?;
    let page = ok(c, "ocusers metrics")?;
    let cpu_after = show_u64(c, "openclaw@alice.service", "CPUUsageNSec")?;
    let m = parse_prometheus(&page)?;
    let get = |name: &str, tenant: &str| m.get(&(name.to_string(), tenant.to_string())).copied();

    let mut sum_max = 0u64;
    for t in &names {
        let unit = format!("openclaw@{t}.service");
        for (metric, prop) in [
            ("ocusers_tenant_memory_max_bytes", "MemoryMax"),
            ("ocusers_tenant_memory_high_bytes", "MemoryHigh"),
            ("ocusers_tenant_tasks_max", "TasksMax"),
            ("ocusers_tenant_restarts_total", "NRestarts"),
            // "[not set]" in the nspawn tier (cgroup v1 host): then no sample.
            ("ocusers_tenant_memory_current_bytes", "MemoryCurrent"),
            ("ocusers_tenant_tasks", "TasksCurrent"),
        ] {
            let want = show_u64(c, &unit, prop)?.map(|n| n as f64);
            let got = get(metric, t);
            ensure(got == want, || {
                format!("{t}: {metric} = {got:?}, systemctl show {prop} = {want:?}")
            })?;
        }
        sum_max += show_u64(c, &unit, "MemoryMax")?.unwrap_or(0);
        let active = show(c, &unit, "ActiveState")? == "active";
        ensure(
            get("ocusers_tenant_active", t) == Some(f64::from(u8::from(active))),
            || {
                format!(
                    "{t}: active {:?} vs {active}",
                    get("ocusers_tenant_active", t)
                )
            },
        )?;
        ensure(get("ocusers_tenant_info", t) == Some(1.0), || {
            format!("{t}: no info")
        })?;
    }
    // CPU time is a moving counter: between the two readings around the call.
    let cpu = get("ocusers_tenant_cpu_seconds_total", "alice");
    match (cpu_before, cpu, cpu_after) {
        (Some(a), Some(v), Some(b)) => ensure(
            a as f64 / 1e9 <= v + 1e-9 && v <= b as f64 / 1e9 + 1e-9,
            || format!("alice cpu {v} s not within [{a}, {b}] ns"),
        )?,
        (None, None, None) => {}
        other => return Err(format!("alice cpu: systemd vs metric {other:?}")),
    }
    ensure(get("ocusers_tenant_ready", "alice") == Some(1.0), || {
        "alice not ready in metrics".into()
    })?;
    ensure(
        get("ocusers_host_memory_committed_bytes", "") == Some(sum_max as f64),
        || {
            format!(
                "committed {:?} vs {sum_max}",
                get("ocusers_host_memory_committed_bytes", "")
            )
        },
    )?;
    let ram = mem_total(c)?;
    ensure(
        get("ocusers_host_memory_bytes", "") == Some(ram as f64),
        || format!("RAM {:?} vs {ram}", get("ocusers_host_memory_bytes", "")),
    )?;
    ensure(
        get("ocusers_tenants", "") == Some(names.len() as f64),
        || "tenant count".into(),
    )?;

    // The shipped timer's service writes the textfile collector's file.
    ok(c, "systemctl start ocusers-metrics.service")?;
    let file = ok(c, "cat /var/lib/prometheus/node-exporter/ocusers.prom")?;
    let fm = parse_prometheus(&file)?;
    ensure(
        fm.get(&("ocusers_tenants".into(), String::new())) == Some(&(names.len() as f64)),
        || format!("textfile: {file}"),
    )?;
    ok(c, "systemd-analyze verify /usr/lib/systemd/system/ocusers-metrics.timer /usr/lib/systemd/system/ocusers-metrics.service 2>&1 | (! grep -i -E 'error|invalid|unknown')")
        .map_err(|e| format!("systemd-analyze verify: {e}"))?;
    fx.figure(
        "ocusers metrics page",
        format!("{} samples for {} tenants", m.len(), names.len()),
    );
    Ok(())
}

/// The printed plan, as (tenant, step) pairs, and the applied steps.
struct ApplyRun {
    plan: BTreeSet<(String, String)>,
    labels: BTreeMap<String, String>,
    applied: BTreeSet<(String, String)>,
    stdout: String,
}

fn apply(c: &Container, args: &str) -> Result<ApplyRun, String> {
    let out: Output = c.sh(&format!(
        "AP_C_EXTRA=extra-from-env-42 ocusers apply {args}"
    ));
    let stdout = check(&format!("ocusers apply {args}"), out)?;
    let mut run = ApplyRun {
        plan: BTreeSet::new(),
        labels: BTreeMap::new(),
        applied: BTreeSet::new(),
        stdout: stdout.clone(),
    };
    let mut section = "";
    let mut tenant = String::new();
    for line in stdout.lines() {
        if line.starts_with("plan for ") {
            section = "plan";
        } else if line == "applying:" {
            section = "applying";
        } else if section == "plan" {
            if let Some(step) = line.strip_prefix("  - ") {
                run.plan.insert((tenant.clone(), step.to_string()));
            } else if let Some((name, label)) = line.split_once(": ") {
                tenant = name.to_string();
                run.labels.insert(tenant.clone(), label.to_string());
            }
        } else if section == "applying"
            && let Some((name, step)) = line.strip_prefix("  ").and_then(|l| l.split_once(": "))
        {
            // A planned step found done when reached (a stub gateway is
            // ready before the wait begins) is reported as such.
            let step = step
                .strip_suffix(" (already done when reached)")
                .unwrap_or(step);
            run.applied.insert((name.to_string(), step.to_string()));
        }
    }
    Ok(run)
}

fn plan_matches(run: &ApplyRun) -> R {
    ensure(!run.plan.is_empty() && run.plan == run.applied, || {
        format!(
            "plan and applied steps differ:\nonly planned: {:?}\nonly applied: {:?}\n{}",
            run.plan.difference(&run.applied).collect::<Vec<_>>(),
            run.applied.difference(&run.plan).collect::<Vec<_>>(),
            run.stdout
        )
    })
}

fn tenants_of(run: &ApplyRun) -> BTreeSet<String> {
    run.plan.iter().map(|(t, _)| t.clone()).collect()
}

const FIVE: [&str; 5] = ["ap-a", "ap-b", "ap-c", "ap-d", "ap-e"];

fn write(c: &Container, path: &str, text: &str) -> R {
    std::fs::write(c.root().join(path.trim_start_matches('/')), text)
        .map_err(|e| format!("{path}: {e}"))
}

fn file_v1(existing: &str) -> String {
    format!(
        "{existing}\n\
[tenants.ap-a]\ntier = \"light\"\n\n\
[tenants.ap-b]\ntier = \"standard\"\ndomains = [\"ap-b.example.com\"]\n\n\
[tenants.ap-c]\ntier = \"light\"\nmemory_max = \"1536M\"\ntasks_max = 300\n\
secrets = {{ OPENAI_API_KEY = {{ file = \"/root/ap-c.key\" }}, EXTRA_TOKEN = {{ env = \"AP_C_EXTRA\" }} }}\n\n\
[tenants.ap-d]\ntier = \"heavy\"\n\n\
[tenants.ap-e]\n"
    )
}

/// Acceptance 1: apply five tenants (plan printed = steps applied), apply
/// again (nothing to do), change two tiers, give running alice a new limit
/// (live, same process) and prune one; then export and apply on a second
/// host reproduces the tenant set.
pub fn apply_converges_and_prunes(fx: &Fixture) -> R {
    let c = &fx.c;
    let existing = ok(c, "ocusers export")?;
    write(c, "/root/ap-c.key", "sk-test-apc-secret\n")?;
    write(c, "/root/tenants.toml", &file_v1(&existing))?;

    let t = std::time::Instant::now();
    let first = apply(c, "--no-start /root/tenants.toml")?;
    fx.figure(
        "ocusers apply (5 new tenants, --no-start)",
        format!("{:.1} s", t.elapsed().as_secs_f64()),
    );
    plan_matches(&first)?;
    ensure(tenants_of(&first) == FIVE.map(String::from).into(), || {
        format!("first plan touches {:?}", tenants_of(&first))
    })?;
    for n in FIVE {
        ensure(
            first
                .labels
                .get(n)
                .is_some_and(|l| l.starts_with("add (tier ")),
            || first.stdout.clone(),
        )?;
        ok(
            c,
            &format!("getent passwd oc-{n} && test -f /var/lib/ocusers/tenants/{n}.toml"),
        )?;
        let enabled = ok(c, &format!("systemctl is-enabled openclaw@{n}"))?;
        ensure(enabled.trim() == "enabled", || format!("{n}: {enabled}"))?;
    }
    ensure(!first.stdout.contains("sk-test-apc-secret"), || {
        "secret printed".into()
    })?;
    ensure(
        show_u64(c, "openclaw@ap-c.service", "MemoryMax")? == Some(1536 << 20)
            && show_u64(c, "openclaw@ap-c.service", "TasksMax")? == Some(300),
        || "ap-c's overrides are not on its unit".into(),
    )?;
    let env = std::fs::read_to_string(c.root().join("etc/ocusers/tenants/ap-c.env"))
        .map_err(|e| e.to_string())?;
    ensure(
        env.contains("\nOPENAI_API_KEY=sk-test-apc-secret\n")
            && env.contains("\nEXTRA_TOKEN=extra-from-env-42\n"),
        || "ap-c's secrets are not in its env file".into(),
    )?;
    let reg = ok(c, "cat /var/lib/ocusers/tenants/ap-b.toml")?;
    ensure(reg.contains("ap-b.example.com"), || reg.clone())?;

    let again = apply(c, "--no-start /root/tenants.toml")?;
    ensure(
        again.stdout.starts_with("nothing to do") && again.applied.is_empty(),
        || again.stdout.clone(),
    )?;

    // Change two tiers, override alice's MemoryMax, drop ap-e.
    let alice_pid = show(c, "openclaw@alice.service", "MainPID")?;
    let v2 = file_v1(&existing)
        .replace(
            "[tenants.ap-a]\ntier = \"light\"",
            "[tenants.ap-a]\ntier = \"heavy\"",
        )
        .replace(
            "[tenants.ap-b]\ntier = \"standard\"",
            "[tenants.ap-b]\ntier = \"light\"",
        )
        .replace("[tenants.ap-e]\n", "")
        .replace(
            "[tenants.alice]\n",
            "[tenants.alice]\nmemory_max = \"3G\"\n",
        );
    write(c, "/root/tenants-v2.toml", &v2)?;
    let dry = apply(c, "--no-start --prune --dry-run /root/tenants-v2.toml")?;
    ensure(dry.stdout.contains("dry run: nothing changed"), || {
        dry.stdout.clone()
    })?;
    ok(c, "test -f /var/lib/ocusers/tenants/ap-e.toml")?;
    let second = apply(c, "--no-start --prune /root/tenants-v2.toml")?;
    plan_matches(&second)?;
    // The archive's name carries the time of the run.
    let norm = |plan: &BTreeSet<(String, String)>| -> BTreeSet<(String, String)> {
        plan.iter()
            .map(|(t, s)| match s.find("/var/lib/ocusers/archive/") {
                Some(i) => (t.clone(), format!("{}ARCHIVE", &s[..i])),
                None => (t.clone(), s.clone()),
            })
            .collect()
    };
    ensure(norm(&second.plan) == norm(&dry.plan), || {
        format!(
            "dry run and real plan differ:\n{}\n{}",
            dry.stdout, second.stdout
        )
    })?;
    let want: BTreeSet<String> = ["alice", "ap-a", "ap-b", "ap-e"].map(String::from).into();
    ensure(tenants_of(&second) == want, || second.stdout.clone())?;
    ensure(
        second
            .labels
            .get("ap-e")
            .is_some_and(|l| l == "remove (--prune)"),
        || second.stdout.clone(),
    )?;
    ensure(
        second
            .labels
            .get("ap-a")
            .is_some_and(|l| l.contains("tier light -> heavy")),
        || second.stdout.clone(),
    )?;
    ensure(
        second
            .labels
            .get("ap-b")
            .is_some_and(|l| l.contains("tier standard -> light")),
        || second.stdout.clone(),
    )?;
    ensure(
        show_u64(c, "openclaw@ap-a.service", "MemoryMax")? == Some(4 << 30)
            && show_u64(c, "openclaw@ap-b.service", "MemoryMax")? == Some(1280 << 20),
        || "new tiers' limits not on the units".into(),
    )?;
    let ap_a_env = ok(c, "cat /etc/ocusers/tenants/ap-a.env")?;
    ensure(
        ap_a_env.contains("NODE_OPTIONS=--max-old-space-size=2048"),
        || ap_a_env.clone(),
    )?;
    // alice's new limit is live: same process, no daemon-reload pending,
    // on her and on the tenants apply created and changed.
    for unit in ["alice", "ap-a", "ap-b", "ap-c"].map(|t| format!("openclaw@{t}.service")) {
        let reload = show(c, &unit, "NeedDaemonReload")?;
        ensure(reload == "no", || {
            format!("{unit}: NeedDaemonReload={reload} after apply")
        })?;
    }
    let (max, pid) = (
        show_u64(c, "openclaw@alice.service", "MemoryMax")?,
        show(c, "openclaw@alice.service", "MainPID")?,
    );
    ensure(max == Some(3 << 30) && pid == alice_pid, || {
        format!(
            "alice's MemoryMax was not changed live: MemoryMax {max:?}, MainPID {pid} (was {alice_pid})"
        )
    })?;
    ensure(
        c.sh("getent passwd oc-ap-e").status.code() == Some(2),
        || "oc-ap-e left".into(),
    )?;
    ok(
        c,
        "test ! -e /var/lib/ocusers/tenants/ap-e.toml && ls /var/lib/ocusers/archive/ap-e-*.tar.gz",
    )?;

    let third = apply(c, "--no-start --prune /root/tenants-v2.toml")?;
    ensure(
        third.stdout.starts_with("nothing to do") && third.applied.is_empty(),
        || third.stdout.clone(),
    )?;

    second_host_reproduces(fx)?;

    // Leave the host as this trial found it: the original tenants, alice
    // back on her tier's limits, the ap-* tenants pruned.
    write(c, "/root/tenants-orig.toml", &existing)?;
    let back = apply(c, "--no-start --prune /root/tenants-orig.toml")?;
    plan_matches(&back)?;
    ensure(
        show_u64(c, "openclaw@alice.service", "MemoryMax")? == Some(2 << 30)
            && show(c, "openclaw@alice.service", "MainPID")? == alice_pid,
        || format!("alice not back on her tier, live: {}", back.stdout),
    )?;
    let left = ok(c, "ls /var/lib/ocusers/tenants")?;
    ensure(!left.contains("ap-"), || format!("left behind: {left}"))
}

/// Export from the first host, apply on a fresh second host (stub gateway,
/// its own network namespace): the same tenant set, every gateway ready;
/// a tier change there restarts that gateway; a second apply does nothing.
fn second_host_reproduces(fx: &Fixture) -> R {
    let c = &fx.c;
    let exported = ok(c, "ocusers export")?;
    let json1 = ok(c, "ocusers export --json")?;
    let deb = fx.deb.clone();
    let stub = stub_runtime::build_stub_gateway()?;
    let base = rootfs::ensure_base_root()?;
    let dir = deb.parent().unwrap().to_path_buf();
    let h2 = Container::boot_with(&base, &[(dir, "/mnt/deb".into(), true)], true)?;
    // The second host has a network of its own, without the package mirror:
    // the packages the .deb depends on (nftables) come from the first host's
    // apt cache, where apt finds them as if downloaded.
    let cache = "var/cache/apt/archives";
    for entry in std::fs::read_dir(fx.c.root().join(cache)).map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        let to = h2.root().join(cache).join(entry.file_name());
        if entry.file_name().to_string_lossy().ends_with(".deb") && !to.exists() {
            std::fs::copy(entry.path(), &to).map_err(|e| format!("copying {to:?}: {e}"))?;
        }
    }
    ok(
        &h2,
        "DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends /mnt/deb/ocusers_*.deb >/tmp/apt.log 2>&1 || { tail -30 /tmp/apt.log; exit 1; }",
    )?;
    stub_runtime::install_stub_runtime(h2.root(), &stub, "0.0.0-stub", true)?;
    write(&h2, "/root/ap-c.key", "sk-test-apc-secret\n")?;
    write(&h2, "/root/exported.toml", &exported)?;
    let t = std::time::Instant::now();
    let run = apply(&h2, "/root/exported.toml")?;
    fx.figure(
        "second host: apply of the export (stub gateways, wait for ready)",
        format!(
            "{:.1} s for {} tenants",
            t.elapsed().as_secs_f64(),
            tenants_of(&run).len()
        ),
    );
    plan_matches(&run)?;
    let json2 = ok(&h2, "ocusers export --json")?;
    let (a, b): (Value, Value) = (
        serde_json::from_str(&json1).map_err(|e| e.to_string())?,
        serde_json::from_str(&json2).map_err(|e| e.to_string())?,
    );
    ensure(a == b, || {
        format!("second host differs:\nfirst:  {a}\nsecond: {b}")
    })?;
    let status: Value =
        serde_json::from_str(&ok(&h2, "ocusers status --json")?).map_err(|e| e.to_string())?;
    for t in status["tenants"].as_array().into_iter().flatten() {
        ensure(t["ready"] == true, || {
            format!("second host: {} not ready", t["name"])
        })?;
    }
    // A tier change on a running gateway: limits live, then a restart so
    // the gateway reads its new V8 heap.
    let pid = show(&h2, "openclaw@ap-b.service", "MainPID")?;
    let changed = exported.replace(
        "[tenants.ap-b]\ntier = \"light\"",
        "[tenants.ap-b]\ntier = \"standard\"",
    );
    ensure(changed != exported, || {
        format!("ap-b not in the export: {exported}")
    })?;
    write(&h2, "/root/exported.toml", &changed)?;
    let upd = apply(&h2, "/root/exported.toml")?;
    plan_matches(&upd)?;
    ensure(
        upd.applied
            .iter()
            .any(|(t, s)| t == "ap-b" && s.starts_with("restart openclaw@ap-b")),
        || upd.stdout.clone(),
    )?;
    ensure(
        show(&h2, "openclaw@ap-b.service", "MainPID")? != pid,
        || "ap-b was not restarted".into(),
    )?;
    let again = apply(&h2, "/root/exported.toml")?;
    ensure(again.stdout.starts_with("nothing to do"), || {
        again.stdout.clone()
    })?;
    drop(h2);
    Ok(())
}
