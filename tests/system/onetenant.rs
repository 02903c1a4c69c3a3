//! One-tenant changes without an apply file (issue 16): `ocusers set` and
//! `ocusers domain add|remove`, on the running alice after the proxy
//! trials set Caddy up (tls internal, clients from [`CLIENT_ADDR`]).
use std::time::Duration;

use crate::proxy::CLIENT_ADDR;
use crate::support::assert::{R, ensure, wait_for};
use crate::support::process::{describe, stderr, stdout};
use crate::tenants::Fixture;

const DOMAIN: &str = "test.internal";
const CADDY_HTTPS: u16 = 19443;
const CADDY_CA: &str = "/var/lib/caddy/.local/share/caddy/pki/authorities/local/root.crt";
const UNIT: &str = "openclaw@alice.service";
/// Under `*.DOMAIN`: routed by its link alone, the include stays as it is.
const COVERED: &str = "alice-extra.test.internal";
/// Outside `*.DOMAIN`: the include lists it, Caddy is reloaded.
const OUTSIDE: &str = "alice-extra.example.test";

/// `/readyz` through Caddy by host name, from the client address: (HTTP
/// status, body); status 0 when no HTTP answer (no site for the name).
fn readyz_as(fx: &Fixture, host: &str) -> Result<(u16, String), String> {
    let out = fx.sh(&format!(
        "curl -s -o /tmp/body -w '%{{http_code}}' --max-time 15 --cacert {CADDY_CA} \
         --resolve {host}:{CADDY_HTTPS}:{CLIENT_ADDR} https://{host}:{CADDY_HTTPS}/readyz || true; echo; cat /tmp/body 2>/dev/null; rm -f /tmp/body"
    ))?;
    let (code, body) = out.split_once('\n').unwrap_or((&out, ""));
    Ok((code.trim().parse().unwrap_or(0), body.to_string()))
}

/// What must not move while limits and routes change: the gateway's
/// process and start time, and Caddy's process.
fn lifetimes(fx: &Fixture) -> Result<String, String> {
    fx.sh(&format!(
        "systemctl show -P MainPID {UNIT}; systemctl show -P ActiveEnterTimestamp {UNIT}; systemctl show -P MainPID caddy"
    ))
}

/// alice's limits as systemd reports them.
fn limits(fx: &Fixture) -> Result<String, String> {
    fx.sh(&format!(
        "systemctl show -p MemoryHigh -p MemoryMax -p CPUQuotaPerSecUSec -p TasksMax {UNIT}"
    ))
}

/// What a refused command must leave as it was.
fn snapshot(fx: &Fixture) -> Result<String, String> {
    Ok(format!(
        "{}{}{}",
        limits(fx)?,
        fx.sh("sha256sum /var/lib/ocusers/tenants/*.toml /etc/caddy/ocusers.caddy")?,
        fx.sh("ls -l /var/lib/ocusers/proxy/hosts")?
    ))
}

pub fn set_and_domain_live(fx: &Fixture) -> R {
    let before = lifetimes(fx)?;
    let original = fx.json("export --json")?["tenants"]["alice"].clone();
    ensure(original.is_object(), || format!("export: {original}"))?;
    let limits_before = limits(fx)?;

    // Bad input: one line naming the problem and the fix, non-zero, nothing changed.
    let unchanged = snapshot(fx)?;
    for (args, code, needle) in [
        (
            "set alice --memory-max lots",
            1,
            "cannot set the limits of tenant alice: memory_max",
        ),
        (
            "set alice --memory-max 1G",
            1,
            "memory_high (1610612736) must not be above memory_max (1073741824)",
        ),
        ("set alice --tier huge", 2, "unknown tier \"huge\""),
        (
            "set alice --memory-max 64T",
            1,
            "not enough memory for `ocusers set alice --memory-max 64T`",
        ),
        (
            "set nosuch --memory-max 3G",
            1,
            "no tenant named \"nosuch\"",
        ),
        (
            "domain add alice Bad_Host.test",
            2,
            "invalid domain \"Bad_Host.test\"",
        ),
        (
            "domain add alice bob-smith.test.internal",
            1,
            "already routes to tenant \"bob-smith\"",
        ),
        (
            "domain remove alice nothere.example.test",
            1,
            "has no extra domain \"nothere.example.test\"",
        ),
        (
            "add alice --domain alice.example.org",
            1,
            "to change them use `ocusers domain add alice alice.example.org`",
        ),
    ] {
        let out = fx.ocusers(args);
        let err = stderr(&out);
        ensure(
            out.status.code() == Some(code)
                && err.trim_end().lines().count() == 1
                && err.contains(needle),
            || format!("`ocusers {args}`: {}", describe(&out)),
        )?;
    }
    ensure(snapshot(fx)? == unchanged, || {
        "a refused command changed limits, the registry or the routes".into()
    })?;

    // The plan first, changing nothing.
    let out = fx.ocusers_ok("set alice --memory-max 3G --dry-run")?;
    ensure(
        out.contains("plan for `ocusers set alice --memory-max 3G`")
            && out.contains("memory_max (tier) -> 3G")
            && out.contains("MemoryMax=3221225472")
            && !out.contains("restart")
            && out.contains("dry run: nothing changed"),
        || out.clone(),
    )?;
    ensure(limits(fx)? == limits_before, || {
        "the dry run changed the limits".into()
    })?;

    // Live over D-Bus, the gateway kept.
    let out = fx.ocusers_ok("set alice --memory-max 3G")?;
    ensure(out.contains("applied"), || out.clone())?;
    ensure(fx.show(UNIT, "MemoryMax")? == "3221225472", || {
        format!("MemoryMax after set: {:?}", fx.show(UNIT, "MemoryMax"))
    })?;
    ensure(lifetimes(fx)? == before, || {
        format!("set restarted something: {before:?} -> {:?}", lifetimes(fx))
    })?;
    let again = fx.ocusers_ok("set alice --memory-max 3G")?;
    ensure(again.contains("nothing to do"), || again.clone())?;

    // A name under *.DOMAIN: only its link, the include stays, Caddy keeps
    // its configuration (and every open WebSocket).
    let include = fx.sh("sha256sum /etc/caddy/ocusers.caddy")?;
    let out = fx.ocusers_ok(&format!("domain add alice {COVERED}"))?;
    ensure(
        out.contains(&format!("route {COVERED}, alice.{DOMAIN} to alice"))
            && !out.contains("reload"),
        || out.clone(),
    )?;
    let (code, body) = readyz_as(fx, COVERED)?;
    ensure(code == 200, || format!("{COVERED}: {code} {body}"))?;
    ensure(
        fx.sh("sha256sum /etc/caddy/ocusers.caddy")? == include,
        || "the include changed for a name under *.DOMAIN".into(),
    )?;
    // A name outside it: in the include, Caddy reloaded (not restarted).
    let out = fx.ocusers_ok(&format!("domain add alice {OUTSIDE}"))?;
    ensure(out.contains("reload caddy.service"), || out.clone())?;
    ensure(
        fx.sh("cat /etc/caddy/ocusers.caddy")?.contains(OUTSIDE),
        || "the include does not list the new domain".into(),
    )?;
    let mut last = (0, String::new());
    wait_for(
        &format!("{OUTSIDE} through Caddy"),
        Duration::from_secs(30),
        || {
            last = readyz_as(fx, OUTSIDE)?;
            Ok(last.0 == 200)
        },
    )
    .map_err(|e| format!("{e}: {last:?}"))?;
    let (code, body) = readyz_as(fx, &format!("bob-smith.{DOMAIN}"))?;
    ensure(code == 200, || {
        format!("bob-smith after alice's domains: {code} {body}")
    })?;
    ensure(lifetimes(fx)? == before, || {
        format!(
            "domain add restarted something: {before:?} -> {:?}",
            lifetimes(fx)
        )
    })?;

    let shown = fx.json("export --json")?["tenants"]["alice"].clone();
    ensure(
        shown["memory_max"] == "3G"
            && shown["domains"] == serde_json::json!([OUTSIDE, COVERED])
            && shown["tier"] == original["tier"],
        || format!("export after set and domain add: {shown}"),
    )?;
    let text = fx.ocusers_ok("export")?;
    ensure(
        text.contains("memory_max = \"3G\"") && text.contains(COVERED),
        || text.clone(),
    )?;

    // Routes taken away.
    fx.ocusers_ok(&format!("domain remove alice {COVERED}"))?;
    let (code, body) = readyz_as(fx, COVERED)?;
    ensure(code == 404 && body.contains("no OpenClaw tenant"), || {
        format!("{COVERED} after remove: {code} {body}")
    })?;
    fx.ocusers_ok(&format!("domain remove alice {OUTSIDE}"))?;
    ensure(
        !fx.sh("cat /etc/caddy/ocusers.caddy")?.contains(OUTSIDE),
        || "the include still lists the removed domain".into(),
    )?;
    let (code, body) = readyz_as(fx, OUTSIDE)?;
    ensure(code != 200, || {
        format!("{OUTSIDE} after remove: {code} {body}")
    })?;
    fx.sh(&format!("test ! -e /var/lib/ocusers/proxy/hosts/{COVERED} && test ! -e /var/lib/ocusers/proxy/hosts/{OUTSIDE}"))
        .map_err(|e| format!("a removed domain's link is left: {e}"))?;

    // alice's limits as they were, for the trials that follow.
    let restore = match original["memory_max"].as_str() {
        Some(v) => v.to_string(),
        None => "tier".into(),
    };
    let out = fx.ocusers(&format!("set alice --memory-max {restore}"));
    ensure(out.status.success(), || describe(&out))?;
    ensure(limits(fx)? == limits_before, || {
        format!(
            "alice's limits not restored: {limits_before:?} -> {:?}",
            limits(fx)
        )
    })?;
    let after = fx.json("export --json")?["tenants"]["alice"].clone();
    ensure(after == original, || {
        format!("export {original} -> {after}")
    })?;
    ensure(lifetimes(fx)? == before, || {
        format!(
            "the gateway or Caddy was restarted: {before:?} -> {:?}",
            lifetimes(fx)
        )
    })?;
    // The change trail names the commands.
    let trail = fx.json("history alice --json")?;
    let actions: Vec<&str> = trail["entries"]
        .as_array()
        .map(|e| e.iter().filter_map(|x| x["action"].as_str()).collect())
        .unwrap_or_default();
    ensure(
        ["set", "domain-add", "domain-remove"]
            .iter()
            .all(|a| actions.contains(a)),
        || format!("history alice: {actions:?}"),
    )?;
    let out = stdout(&fx.ocusers("status alice --json"));
    ensure(out.contains("\"ready\": true"), || out.clone())
}
