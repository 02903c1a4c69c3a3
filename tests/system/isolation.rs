//! Issue 4 on stock Debian 12 (systemd 252 in a container that shares the host's network
//! namespace, with the real gateway): what ocusers sets, what `ocusers audit` reports about the
//! layers this host can enforce, and that each injected fault is named. The enforcement itself
//! (bind filter, firewall, limits) is proven in the VM tier (tests/vm/), where it exists.
use std::collections::BTreeSet;

use serde_json::Value;

use crate::support::assert::{R, ensure};
use crate::support::process::{check, describe};
use crate::tenants::Fixture;

fn audit(fx: &Fixture, args: &str) -> Result<(i32, Value), String> {
    let out = fx.c.sh(&format!("ocusers audit --json{args}"));
    let code = out.status.code().unwrap_or(-1);
    let v = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("audit --json: {e}: {}", describe(&out)))?;
    Ok((code, v))
}

fn failures(v: &Value) -> BTreeSet<String> {
    v["failures"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(str::to_string))
        .collect()
}

/// On Debian 12 in this container: the bind rules are stored by systemd 252 but not enforced
/// (-BPF_FRAMEWORK), nft may not touch the shared network namespace, and `ocusers audit` says
/// exactly that: the layers are inactive, every file, token, log, listener and exposure check
/// holds, and the probes that the OS answers without those layers (reading state, secrets and
/// environ, signalling) are denied. Then each injected fault adds a failure naming its cause.
pub fn isolation_on_debian12(fx: &Fixture) -> R {
    let sh = |s: &str| fx.c.sh_ok(s);
    let port: u16 = sh("sed -n 's/^port = //p' /var/lib/ocusers/tenants/alice.toml")?
        .trim()
        .parse()
        .map_err(|e| format!("alice's port: {e}"))?;
    let show = sh("systemctl show -p SocketBindAllow -p SocketBindDeny openclaw@alice")?;
    ensure(
        show.contains(&format!("SocketBindAllow={port}-{}", port + 127))
            && show.contains("SocketBindDeny="),
        || format!("bind rules not stored on alice's unit:\n{show}"),
    )?;
    let (code, v) = audit(fx, "")?;
    ensure(code == 1, || {
        format!("audit exit {code} (want 1: layers inactive): {v:#}")
    })?;
    let layer = |name: &str| {
        v["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    ensure(
        layer("bind")["active"] == false
            && layer("bind")["detail"]
                .as_str()
                .is_some_and(|d| d.contains("-BPF_FRAMEWORK")),
        || format!("bind layer: {}", layer("bind")),
    )?;
    ensure(layer("firewall")["active"] == false, || {
        format!("firewall layer: {}", layer("firewall"))
    })?;
    for t in v["tenants"].as_array().into_iter().flatten() {
        for c in t["checks"].as_array().into_iter().flatten() {
            ensure(c["ok"] == true, || format!("{}: {c}", t["name"]))?;
        }
        // OpenClaw's own `security audit`, run as the tenant in its sandbox.
        let own = t["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["check"] == "openclaw-audit")
            .ok_or_else(|| format!("{}: no openclaw-audit check: {v:#}", t["name"]))?;
        eprintln!(
            "[figure] openclaw security audit as {}: {}",
            t["name"], own["detail"]
        );
    }
    for p in v["probes"].as_array().into_iter().flatten() {
        if ["read-state", "read-secrets", "read-environ", "signal"]
            .contains(&p["probe"].as_str().unwrap_or(""))
        {
            ensure(p["result"] == "denied" || p["result"] == "not_run", || {
                format!("probe not denied: {p}")
            })?;
        }
    }
    let base = failures(&v);
    for f in &base {
        ensure(
            f.contains("firewall layer inactive")
                || f.contains(" could bind ")
                || f.contains(" could connect to "),
            || format!("unexpected failure on a clean Debian 12 host: {f}"),
        )?;
    }

    let faults: [(&str, &str, &str, &str); 4] = [
        (
            "secrets file made 0644",
            "chmod 644 /etc/ocusers/tenants/alice.env",
            "chmod 600 /etc/ocusers/tenants/alice.env",
            "alice: secrets_file:",
        ),
        (
            "state dir made 0755",
            "chmod 755 /var/lib/openclaw/alice",
            "chmod 700 /var/lib/openclaw/alice",
            "alice: state_dir:",
        ),
        (
            "token copied from another tenant",
            "cp -p /etc/ocusers/tenants/bob-smith.env /root/smith.env.orig; \
             tok=$(sed -n 's/^OPENCLAW_GATEWAY_TOKEN=//p' /etc/ocusers/tenants/alice.env); \
             sed -i \"s/^OPENCLAW_GATEWAY_TOKEN=.*/OPENCLAW_GATEWAY_TOKEN=$tok/\" /etc/ocusers/tenants/bob-smith.env",
            "cp -p /root/smith.env.orig /etc/ocusers/tenants/bob-smith.env",
            "bob-smith: token: OPENCLAW_GATEWAY_TOKEN is the same as alice's",
        ),
        (
            "a foreign process listening on a tenant's port",
            &format!(
                "setpriv --reuid nobody --regid nogroup --clear-groups -- perl -MSocket -e 'socket(S, PF_INET, SOCK_STREAM, 0) or die; bind(S, sockaddr_in({}, INADDR_LOOPBACK)) or die; listen(S, 5) or die; sleep 300' >/dev/null 2>&1 & echo $! > /root/squatter.pid; sleep 1",
                port + 5
            ),
            "kill $(cat /root/squatter.pid)",
            "alice: listeners:",
        ),
    ];
    // All four at once and one audit (OpenClaw's own audit left out: it
    // was read above, and it is the slow part): each fault must still be
    // named by a failure of its own. Undone in reverse order.
    for (_, inject, _, _) in &faults {
        sh(inject)?;
    }
    let result = audit(fx, " --no-openclaw");
    for (_, _, restore, _) in faults.iter().rev() {
        sh(restore)?;
    }
    let (code, v) = result?;
    let new: Vec<String> = failures(&v).difference(&base).cloned().collect();
    for (what, _, _, needle) in &faults {
        let named: Vec<&String> = new.iter().filter(|f| f.contains(needle)).collect();
        ensure(code == 1 && !named.is_empty(), || {
            format!("{what}: no new failure says {needle:?} (exit {code}): {new:#?}")
        })?;
        eprintln!(
            "[figure] audit names ({what}): {}",
            named
                .iter()
                .map(|f| f.as_str())
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
    let (_, after) = audit(fx, " --no-openclaw")?;
    ensure(failures(&after) == base, || {
        format!(
            "host not restored: {:#?}",
            failures(&after)
                .symmetric_difference(&base)
                .collect::<Vec<_>>()
        )
    })?;
    // The firewall file is written even where nft cannot load it, so the
    // rules are ready for a host that can.
    check(
        "firewall file",
        fx.c.sh("grep -c 'answer' /var/lib/ocusers/firewall.nft"),
    )
    .map(|_| ())
}
