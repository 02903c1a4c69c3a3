//! Public origins (issue 16): through the real Caddy, on the test's client
//! address, a browser-like WebSocket upgrade to alice's gateway carries an
//! `Origin`. The gateway must accept alice's own public origin
//! (`https://alice.test.internal:19443`, port included: Caddy serves HTTPS
//! on 19443 here, `public_port` in `[proxy]`) and refuse any other ("origin
//! not allowed"); an extra domain added with `apply` becomes an allowed
//! origin without a restart. The client is a small raw-WebSocket script
//! ([`PROBE`]) run with the host's python3 (the container shares the host's
//! network namespace); the token reaches it through its environment.
//!
//! Then, as alice inside her sandbox, the attacks on the files behind it:
//! writing, replacing or linking her own or bob-smith's origin files, and a
//! `proxy sync` afterwards, against a root-owned sentinel and bob-smith.
//! (Reading them is not refused: they hold public URLs, see
//! src/proxy/origins.rs.)
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::proxy::{CADDY_CA, CADDY_HTTPS, CLIENT_ADDR};
use crate::support::assert::{R, ensure, wait_for};
use crate::support::process::{describe, stdout};
use crate::support::trials::Figures as _;
use crate::tenants::Fixture;

const PROBE: &str = include_str!("wsprobe.py");
const PUBLIC: &str = "/var/lib/ocusers/public";
const EXTRA: &str = "alice.example.org";
const SENTINEL: &str = "/srv/ocusers-origins-sentinel";

/// One WebSocket connect to tenant `token`'s gateway at `host` through
/// Caddy with `Origin: origin`: the probe's JSON line.
fn connect(fx: &Fixture, host: &str, origin: &str, token: &str) -> Result<Value, String> {
    let dir = std::env::temp_dir();
    let script = dir.join(format!("ocusers-wsprobe-{}.py", std::process::id()));
    std::fs::write(&script, PROBE).map_err(|e| format!("writing the probe: {e}"))?;
    let ca = fx.c.root().join(CADDY_CA.trim_start_matches('/'));
    let out = Command::new("timeout")
        .arg("60")
        .arg("python3")
        .arg(&script)
        .args([CLIENT_ADDR, CLIENT_ADDR, &CADDY_HTTPS.to_string(), host])
        .arg(&ca)
        .arg(origin)
        .env("WS_TOKEN", token)
        .output()
        .map_err(|e| format!("python3 (needed on the host for this trial): {e}"))?;
    let _ = std::fs::remove_file(&script);
    let line = stdout(&out);
    serde_json::from_str(line.trim())
        .map_err(|e| format!("probe for {origin}: {e}: {}", describe(&out)))
}

/// A file inside the container, written from here.
fn put(fx: &Fixture, path: &str, text: &str) -> R {
    std::fs::write(fx.c.root().join(path.trim_start_matches('/')), text)
        .map_err(|e| format!("writing {path}: {e}"))
}

/// Accepted: the upgrade went through and the gateway answered `connect`
/// without refusing the origin. (Through the proxy a client without a
/// device identity may still be asked to pair: that answer comes after the
/// origin check; the refused probes differ from these in `Origin` only.)
fn accepted(v: &Value) -> bool {
    v["status"] == 101
        && !v["ok"].is_null()
        && v["code"] != "CONTROL_UI_ORIGIN_NOT_ALLOWED"
        && !v["message"]
            .as_str()
            .is_some_and(|m| m.contains("origin not allowed"))
        && v["close"].is_null()
}

/// Refused for its origin, after the upgrade (the gateway's own check).
fn refused_for_origin(v: &Value) -> bool {
    v["status"] == 101
        && v["ok"] == false
        && v["code"] == "CONTROL_UI_ORIGIN_NOT_ALLOWED"
        && v["message"]
            .as_str()
            .is_some_and(|m| m.contains("origin not allowed"))
}

fn allowed_origins(fx: &Fixture, name: &str) -> Result<Vec<String>, String> {
    let text = fx.sh(&format!("cat {PUBLIC}/{name}/control-ui.json"))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
    Ok(v["allowedOrigins"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|o| o.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

/// Mode, owner and SHA-256 of the sentinel and of bob-smith's origin files.
fn sentinel(fx: &Fixture) -> Result<String, String> {
    fx.sh(&format!(
        "[ -d {SENTINEL} ] || {{ install -d -o root -g root -m 0755 {SENTINEL} && \
           echo 'root sentinel' > {SENTINEL}/file && chmod 0644 {SENTINEL}/file; }}; \
         stat -c '%n %a %U %G' {SENTINEL} {SENTINEL}/file {PUBLIC} {PUBLIC}/alice {PUBLIC}/bob-smith {PUBLIC}/bob-smith/*; \
         sha256sum {SENTINEL}/file {PUBLIC}/bob-smith/*; ls -A {SENTINEL} {PUBLIC}/bob-smith"
    ))
}

pub fn public_origins(fx: &Fixture) -> R {
    let token = fx.token("alice")?;
    let own = format!("https://alice.test.internal:{CADDY_HTTPS}");
    let host = "alice.test.internal";

    // What ocusers wrote: the origin files and the includes in the config.
    let allowed = allowed_origins(fx, "alice")?;
    ensure(allowed == [own.clone()], || {
        format!("alice's allowed origins: {allowed:?}")
    })?;
    let public = fx.sh(&format!(
        "cat {PUBLIC}/alice/public-origin.json {PUBLIC}/alice/device-pair.json; \
         stat -c '%a %U %G' {PUBLIC}/alice {PUBLIC}/alice/control-ui.json"
    ))?;
    ensure(
        public.contains(&format!("\"{own}\""))
            && public.contains(&format!(
                "\"publicUrl\": \"wss://alice.test.internal:{CADDY_HTTPS}\""
            ))
            && public.ends_with("750 root oc-alice\n640 root oc-alice\n"),
        || format!("alice's public files: {public}"),
    )?;
    let out = fx.ocusers("doctor --json");
    let doctor: Value = serde_json::from_str(&stdout(&out))
        .map_err(|e| format!("doctor --json: {e}: {}", describe(&out)))?;
    let checks: Vec<&Value> = doctor["checks"]
        .as_array()
        .map(|a| a.iter().filter(|c| c["check"] == "origins").collect())
        .unwrap_or_default();
    ensure(
        !checks.is_empty() && checks.iter().all(|c| c["status"] == "ok"),
        || format!("doctor's origins checks: {checks:?}"),
    )?;

    // Through Caddy: alice's own origin is accepted, foreign ones refused.
    let v = connect(fx, host, &own, &token)?;
    ensure(accepted(&v), || format!("alice's own origin {own}: {v}"))?;
    fx.figure(
        "public_origins: alice's own origin through Caddy",
        v.to_string(),
    );
    for foreign in [
        format!("https://bob-smith.test.internal:{CADDY_HTTPS}"),
        "https://evil.example".to_string(),
        // The right host without the port is another origin.
        "https://alice.test.internal".to_string(),
    ] {
        let v = connect(fx, host, &foreign, &token)?;
        ensure(refused_for_origin(&v), || {
            format!("foreign origin {foreign} on alice's name: {v}")
        })?;
    }

    // A domain change through `apply` reaches the allowed origins, and the
    // gateway takes it without a restart.
    let pid = fx.main_pid("alice")?;
    let extra_origin = format!("https://{EXTRA}:{CADDY_HTTPS}");
    // alice as she is (tier, limit overrides), plus the extra domain.
    let spec = fx.json("export --json")?["tenants"]["alice"].clone();
    let mut base = String::from("[tenants.alice]\n");
    for (k, v) in spec.as_object().into_iter().flatten() {
        if k != "domains" {
            base.push_str(&format!("{k} = {v}\n"));
        }
    }
    put(
        fx,
        "/root/origins.toml",
        &format!("{base}domains = [\"{EXTRA}\"]\n"),
    )?;
    fx.sh(&format!(
        "grep -q '{EXTRA}' /etc/hosts || echo '{CLIENT_ADDR} {EXTRA}' >> /etc/hosts"
    ))?;
    let t = Instant::now();
    fx.ocusers_ok("apply /root/origins.toml")?;
    let allowed = allowed_origins(fx, "alice")?;
    ensure(allowed == [own.clone(), extra_origin.clone()], || {
        format!("allowed origins after apply: {allowed:?}")
    })?;
    let mut last = Value::Null;
    wait_for(
        "the extra domain's origin accepted",
        Duration::from_secs(60),
        || {
            last = connect(fx, EXTRA, &extra_origin, &token)?;
            Ok(accepted(&last))
        },
    )
    .map_err(|e| format!("{e}: {last}"))?;
    fx.figure(
        "apply of an extra domain to its origin accepted",
        format!("{:.1} s", t.elapsed().as_secs_f64()),
    );
    ensure(fx.main_pid("alice")? == pid, || {
        "alice's gateway was restarted for an origin change".into()
    })?;
    let v = connect(fx, host, &extra_origin, &token)?;
    ensure(accepted(&v), || {
        format!("extra origin on alice's name: {v}")
    })?;

    attacks(fx, &token, &own)?;

    // Back as it was: no extra domain, its origin refused again.
    put(fx, "/root/origins.toml", &base)?;
    fx.ocusers_ok("apply /root/origins.toml")?;
    let allowed = allowed_origins(fx, "alice")?;
    ensure(allowed == [own.clone()], || {
        format!("allowed origins after removing the domain: {allowed:?}")
    })?;
    wait_for(
        "the removed domain's origin refused",
        Duration::from_secs(30),
        || {
            Ok(refused_for_origin(&connect(
                fx,
                host,
                &extra_origin,
                &token,
            )?))
        },
    )?;
    let v = connect(fx, host, &own, &token)?;
    ensure(accepted(&v), || {
        format!("alice's own origin at the end: {v}")
    })?;

    old_tenant_repaired(fx, &token, host, &own)
}

/// A tenant from before ocusers wrote the includes (or one that dropped
/// them): its own config has no `$include` of its origins. `doctor` warns
/// and names `repair`; `repair` has the tenant's own CLI put them back, and
/// its browser origin is accepted again, without a restart.
fn old_tenant_repaired(fx: &Fixture, token: &str, host: &str, own: &str) -> R {
    // OpenClaw's own `config patch` refuses to overwrite an include, so the
    // tenant writes its config itself, as a tenant from before wrote it.
    let config = "/var/lib/openclaw/alice/openclaw.json";
    let mut v: Value = serde_json::from_str(&fx.sh(&format!("cat {config}"))?)
        .map_err(|e| format!("{config}: {e}"))?;
    for (parent, key) in [
        ("/gateway", "controlUi"),
        ("/gateway", "publicOrigin"),
        ("/plugins/entries", "device-pair"),
    ] {
        if let Some(o) = v.pointer_mut(parent).and_then(Value::as_object_mut) {
            o.remove(key);
        }
    }
    let old = v.to_string();
    ensure(!old.contains('\''), || {
        format!("a quote in {config}: {old}")
    })?;
    fx.ocusers_ok(&format!(
        "exec alice -- sh -c 'printf %s \"$1\" > {config}.old && mv {config}.old {config}' sh '{old}'"
    ))?;
    ensure(
        !fx.sh(&format!("cat {config}"))?.contains("$include"),
        || format!("{config} still has includes after the tenant dropped them"),
    )?;
    let origins_check = || -> Result<Value, String> {
        let out = fx.ocusers("doctor --json");
        let doctor: Value = serde_json::from_str(&stdout(&out))
            .map_err(|e| format!("doctor --json: {e}: {}", describe(&out)))?;
        Ok(doctor["checks"]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|c| c["check"] == "origins" && c["tenant"] == "alice")
                    .cloned()
            })
            .unwrap_or(Value::Null))
    };
    let c = origins_check()?;
    ensure(
        c["status"] == "warn" && c.to_string().contains("ocusers repair"),
        || format!("doctor on alice without her includes: {c}"),
    )?;
    let pid = fx.main_pid("alice")?;
    let out = fx.ocusers_ok("repair")?;
    ensure(out.contains("repaired tenant alice"), || {
        format!("repair: {out}")
    })?;
    let c = origins_check()?;
    ensure(c["status"] == "ok", || {
        format!("doctor on alice after repair: {c}")
    })?;
    let text = fx.sh(&format!("cat {config}; stat -c '%U' {config}"))?;
    ensure(
        text.matches("/var/lib/ocusers/public/alice/").count() == 3 && text.ends_with("oc-alice\n"),
        || format!("{config} after repair: {text}"),
    )?;
    let mut last = Value::Null;
    wait_for(
        "alice's origin accepted after repair",
        Duration::from_secs(60),
        || {
            last = connect(fx, host, own, token)?;
            Ok(accepted(&last))
        },
    )
    .map_err(|e| format!("{e}: {last}"))?;
    ensure(fx.main_pid("alice")? == pid, || {
        "repair restarted alice's gateway to put her includes back".into()
    })?;
    // Repaired once: a second repair has nothing to do for her.
    let again = fx.ocusers_ok("repair")?;
    ensure(!again.contains("repaired tenant alice"), || {
        format!("a second repair changed alice again: {again}")
    })
}

/// As alice in her sandbox: her origin files and bob-smith's cannot be
/// written, replaced or linked; a `proxy sync` afterwards writes only root's
/// own files; the sentinel and bob-smith are unchanged.
fn attacks(fx: &Fixture, token: &str, own: &str) -> R {
    let sent = sentinel(fx)?;
    let bob_pid = fx.main_pid("bob-smith")?;
    let attempts = [
        format!(
            "echo '{{\"allowedOrigins\": [\"https://evil.example\"]}}' > {PUBLIC}/alice/control-ui.json"
        ),
        format!("ln -sf {SENTINEL}/file {PUBLIC}/alice/control-ui.json"),
        format!("mv {PUBLIC}/alice/control-ui.json {PUBLIC}/alice/x"),
        format!("rm -f {PUBLIC}/alice/public-origin.json"),
        format!("ln -s {SENTINEL} {PUBLIC}/alice/evil"),
        format!("echo x > {PUBLIC}/bob-smith/control-ui.json"),
        format!("mkdir {PUBLIC}/mallet"),
    ];
    for a in &attempts {
        let out = fx.c.sh(&format!(
            "ocusers exec alice -- sh -c '{}'",
            a.replace('\'', "'\\''")
        ));
        ensure(!out.status.success(), || {
            format!("as alice, `{a}` succeeded: {}", describe(&out))
        })?;
    }
    fx.ocusers_ok("proxy sync")?;
    let now = sentinel(fx)?;
    ensure(now == sent, || {
        format!("the sentinel or bob-smith's files changed:\n{sent}\n---\n{now}")
    })?;
    ensure(fx.main_pid("bob-smith")? == bob_pid, || {
        "bob-smith's gateway was restarted".into()
    })?;
    let allowed = allowed_origins(fx, "alice")?;
    ensure(allowed.contains(&own.to_string()), || {
        format!("alice's origins after the attacks: {allowed:?}")
    })?;
    let v = connect(fx, "alice.test.internal", own, token)?;
    ensure(accepted(&v), || {
        format!("alice's own origin after the attacks: {v}")
    })
}
