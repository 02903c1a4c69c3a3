//! A hostile tenant prepares its own state directory and waits for root
//! (issue 14, root's own operations; threat model rules 1, 2 and 6). Each
//! attack runs as the tenant inside its sandbox (`ocusers exec mallory --
//! sh -c ...`); then the root commands that touch tenant state run (`add`
//! again, `apply` of the host's own export, `repair`, `doctor`, `audit`),
//! each under a fixed time bound. After each: the sentinel (a root-owned
//! directory `/srv/victim` 0755 with a file 0644, known SHA-256) and the
//! other tenant (alice) are unchanged, and a refusal is one line naming the
//! path and the fix.
//!
//! The trial adds its own tenant, mallory, and removes it at the end, so
//! the later trials see the tenants the day-2 trials left (alice,
//! bob-smith).
use std::time::{Duration, Instant};

use crate::support::assert::ensure;
use crate::support::process::{describe, stderr, stdout};
use crate::tenants::Fixture;

type R = Result<(), String>;

const T: &str = "mallory";
const STATE: &str = "/var/lib/openclaw/mallory";
/// Every root command must finish within this (`repair` restarts the real
/// gateway and waits until it is ready).
const BOUND: Duration = Duration::from_secs(120);

/// Mode, owner and content of the sentinel and of the other tenant.
fn sentinel(fx: &Fixture) -> Result<String, String> {
    fx.sh(
        "stat -c '%a %u %g %h %n' /srv/victim /srv/victim/file /var/lib/openclaw/alice \
         /var/lib/openclaw/alice/openclaw.json /var/lib/openclaw/alice/logs; \
         sha256sum /srv/victim/file /var/lib/openclaw/alice/openclaw.json; ls -A /srv/victim",
    )
}

/// `script` as the tenant, in its sandbox.
fn as_tenant(fx: &Fixture, script: &str) -> std::process::Output {
    assert!(!script.contains('\''), "no single quotes in {script}");
    fx.c.sh(&format!(
        "ocusers exec {T} -- sh -c 'cd {STATE} && {script}'"
    ))
}

fn as_tenant_ok(fx: &Fixture, script: &str) -> R {
    let out = as_tenant(fx, script);
    ensure(out.status.success(), || {
        format!("as {T}: {script}: {}", describe(&out))
    })
}

/// A root command with the time bound; the output and how long it took.
fn root(fx: &Fixture, args: &str) -> Result<(std::process::Output, Duration), String> {
    let t = Instant::now();
    let out = fx.c.exec(
        &[
            "bash",
            "-c",
            &format!("timeout -k 5 {} ocusers {args}", BOUND.as_secs()),
        ],
        BOUND + Duration::from_secs(30),
    );
    let took = t.elapsed();
    ensure(
        took < BOUND + Duration::from_secs(5) && out.status.code() != Some(124),
        || format!("`ocusers {args}` ran over {BOUND:?}: {}", describe(&out)),
    )?;
    Ok((out, took))
}

/// The one stderr line that says why `add` refused: it names `path`,
/// `what`, and the fix (as the tenant, `rm`).
fn refused_in_one_line(out: &std::process::Output, path: &str, what: &str) -> R {
    let err = stderr(out);
    ensure(
        !out.status.success()
            && err.lines().any(|l| {
                l.contains(&format!("`{path}`"))
                    && l.contains(what)
                    && l.contains(&format!("ocusers exec {T} -- rm"))
            }),
        || {
            format!(
                "no one-line refusal naming `{path}` ({what}): {}",
                describe(out)
            )
        },
    )
}

/// Every root command that touches tenant state, bounded; the sentinel and
/// alice unchanged after each. Returns the outputs of add, doctor, audit.
struct Round {
    add: std::process::Output,
    doctor: String,
    audit: String,
    repair: std::process::Output,
}

fn round(fx: &Fixture, before: &str, attack: &str) -> Result<Round, String> {
    let mut times = Vec::new();
    // repair first: add would fix the state directory's mode before it.
    let (repair, t) = root(fx, "repair")?;
    times.push(("repair", t));
    let (doctor, t) = root(fx, "doctor")?;
    times.push(("doctor", t));
    let (audit, t) = root(fx, &format!("audit {T} --no-openclaw"))?;
    times.push(("audit", t));
    let (add, t) = root(fx, &format!("add {T} --no-start"))?;
    times.push(("add", t));
    let (apply, t) = root(fx, "apply --no-start /root/hostile-fs.toml")?;
    times.push(("apply", t));
    // A refusal for mallory does not stop apply for the others.
    ensure(
        add.status.success() || stderr(&apply).contains("could not finish tenant(s) mallory ("),
        || format!("{attack}: apply: {}", describe(&apply)),
    )?;
    let after = sentinel(fx)?;
    ensure(after == before, || {
        format!("{attack}: the sentinel or alice changed:\n{before}\n---\n{after}")
    })?;
    eprintln!(
        "[hostile_fs] {attack}: {}",
        times
            .iter()
            .map(|(c, t)| format!("{c} {:.1} s", t.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(Round {
        add,
        doctor: format!("{}{}", stdout(&doctor), stderr(&doctor)),
        audit: format!("{}{}", stdout(&audit), stderr(&audit)),
        repair,
    })
}

/// Put mallory's state back as `add` made it: the gateway stopped, what
/// the attacks made removed (as the tenant), then `add` again.
fn reset(fx: &Fixture, attack: &str) -> R {
    root(fx, &format!("stop {T}"))?;
    fx.sh(&format!("rm -f {STATE}/hl {STATE}/rootfile"))?;
    as_tenant_ok(
        fx,
        "rm -rf openclaw.json logs big d l hl-tenant \"$(printf \"bad\\377dir\")\" \"$(printf \"top\\377\")\"",
    )?;
    let (out, _) = root(fx, &format!("add {T} --no-start"))?;
    ensure(out.status.success(), || {
        format!(
            "after {attack}, add did not put the state back: {}",
            describe(&out)
        )
    })?;
    fx.sh(&format!(
        "test -f {STATE}/openclaw.json -a ! -L {STATE}/openclaw.json -a -d {STATE}/logs -a ! -L {STATE}/logs"
    ))
    .map(drop)
    .map_err(|e| format!("after {attack}: {e}"))
}

pub fn hostile_tenant_state(fx: &Fixture) -> R {
    fx.sh(
        "rm -rf /srv/victim && mkdir -m 0755 /srv/victim && echo sentinel > /srv/victim/file && \
         chmod 0644 /srv/victim/file && chown -R root:root /srv/victim",
    )?;
    let (out, _) = root(fx, &format!("add {T} --no-start"))?;
    ensure(out.status.success(), || {
        format!("add {T}: {}", describe(&out))
    })?;
    fx.sh("ocusers export > /root/hostile-fs.toml")?;
    // repair restarts mallory's gateway when it fixes the state; a short
    // ready timeout keeps that wait short (the real gateway takes 7-85 s
    // to be ready, and whether it is does not matter here).
    fx.sh("cp -a /etc/ocusers/ocusers.toml /tmp/hostile-ocusers.toml.saved 2>/dev/null; printf '[tenants]\\nready_timeout = 5\\n' >> /etc/ocusers/ocusers.toml")?;
    let before = sentinel(fx)?;
    let result = attacks(fx, &before);
    let restored = fx.sh("rm /etc/ocusers/ocusers.toml; if [ -e /tmp/hostile-ocusers.toml.saved ]; then mv /tmp/hostile-ocusers.toml.saved /etc/ocusers/ocusers.toml; fi");
    // Whatever happened, mallory goes (its state cleaned first by the
    // tenant, so removing it does not depend on what it left).
    let _ = fx.ocusers(&format!("stop {T}"));
    let _ = fx.sh(&format!("rm -f {STATE}/hl {STATE}/rootfile"));
    let _ = as_tenant(fx, "rm -rf -- * .[!.]* 2>/dev/null; true");
    let removed = fx.ocusers_ok(&format!("remove {T} --purge"));
    let _ = fx.sh("rm -rf /srv/victim /root/hostile-fs.toml");
    result?;
    restored?;
    removed.map(drop)
}

fn attacks(fx: &Fixture, before: &str) -> R {
    // The state directory itself cannot be swapped: its parent is root's.
    let out = as_tenant(
        fx,
        "ln -s /srv/victim /var/lib/openclaw/mallory2 || mv /var/lib/openclaw/mallory /var/lib/openclaw/m2 || exit 0; exit 1",
    );
    ensure(out.status.success(), || {
        format!(
            "the tenant could change /var/lib/openclaw: {}",
            describe(&out)
        )
    })?;

    // 1. logs is a link to the sentinel, the config gone (the case).
    as_tenant_ok(fx, "rm -rf openclaw.json logs && ln -s /srv/victim logs")?;
    let r = round(fx, before, "logs -> /srv/victim")?;
    refused_in_one_line(&r.add, &format!("{STATE}/logs"), "symlink")?;
    ensure(
        r.doctor
            .contains(&format!("`{STATE}/logs` is a symlink to `/srv/victim`")),
        || format!("doctor did not warn about logs: {}", r.doctor),
    )?;
    ensure(r.audit.contains("outside the state directory"), || {
        format!("audit did not warn about logs: {}", r.audit)
    })?;
    reset(fx, "logs -> /srv/victim")?;

    // 2. logs is a link to the other tenant's state.
    as_tenant_ok(
        fx,
        "rm -rf openclaw.json logs && ln -s /var/lib/openclaw/alice logs",
    )?;
    let r = round(fx, before, "logs -> alice")?;
    refused_in_one_line(&r.add, &format!("{STATE}/logs"), "symlink")?;
    reset(fx, "logs -> alice")?;

    // 3. openclaw.json is a link to the sentinel's file.
    as_tenant_ok(
        fx,
        "rm -f openclaw.json && ln -s /srv/victim/file openclaw.json",
    )?;
    let r = round(fx, before, "openclaw.json -> /srv/victim/file")?;
    refused_in_one_line(&r.add, &format!("{STATE}/openclaw.json"), "symlink")?;
    reset(fx, "openclaw.json -> /srv/victim/file")?;

    // 4. openclaw.json is a FIFO (reading it would hang root).
    as_tenant_ok(fx, "rm -f openclaw.json && mkfifo openclaw.json")?;
    let r = round(fx, before, "openclaw.json is a FIFO")?;
    refused_in_one_line(&r.add, &format!("{STATE}/openclaw.json"), "is a FIFO")?;
    ensure(
        r.doctor
            .contains(&format!("`{STATE}/openclaw.json` is a FIFO")),
        || format!("doctor did not warn about the FIFO: {}", r.doctor),
    )?;
    reset(fx, "openclaw.json is a FIFO")?;

    // 5. openclaw.json is a link to /dev/zero (reading it whole would
    //    fill the memory).
    as_tenant_ok(fx, "rm -f openclaw.json && ln -s /dev/zero openclaw.json")?;
    let r = round(fx, before, "openclaw.json -> /dev/zero")?;
    refused_in_one_line(&r.add, &format!("{STATE}/openclaw.json"), "symlink")?;
    reset(fx, "openclaw.json -> /dev/zero")?;

    // 6. A sparse file larger than the host's RAM, as openclaw.json and
    //    beside it (ext4 stops at 16 TiB).
    as_tenant_ok(
        fx,
        "rm -f openclaw.json && (truncate -s 64T openclaw.json || truncate -s 15T openclaw.json) && \
         (truncate -s 64T big || truncate -s 15T big) && test $(stat -c %s big) -gt 1000000000000",
    )?;
    let r = round(fx, before, "sparse 15-64 TiB files")?;
    // The config is a regular file: the tenant's own, so add leaves it.
    ensure(r.add.status.success(), || describe(&r.add))?;
    ensure(
        r.audit.contains("no logging.file") || r.audit.contains("logging.file"),
        || format!("audit did not get past the sparse config: {}", r.audit),
    )?;
    reset(fx, "sparse files")?;

    // 7. Names that are not UTF-8, with a FIFO under one; and a root-owned
    //    file so repair has ownership to fix (a state dir 0755 too).
    as_tenant_ok(
        fx,
        "d=$(printf \"bad\\377dir\") && mkdir \"$d\" && touch \"$d/$(printf \"f\\376\")\" && \
         mkfifo \"$d/$(printf \"p\\375\")\" && touch \"$(printf \"top\\377\")\" && chmod 755 .",
    )?;
    fx.sh(&format!("touch {STATE}/rootfile"))?;
    let r = round(fx, before, "non-UTF-8 names")?;
    // repair may fail only at its last step, the gateway's readiness.
    ensure(
        r.repair.status.success() || stderr(&r.repair).contains("did not become ready"),
        || format!("repair over non-UTF-8 names: {}", describe(&r.repair)),
    )?;
    let owners = fx.sh(&format!("stat -c '%a %U' {STATE} {STATE}/rootfile"))?;
    ensure(owners == "700 oc-mallory\n644 oc-mallory\n", || {
        format!("repair did not give the state back: {owners}")
    })?;
    ensure(r.doctor.contains("is a FIFO"), || {
        format!(
            "doctor did not name the FIFO under a non-UTF-8 name: {}",
            r.doctor
        )
    })?;
    fx.sh(&format!("rm -f {STATE}/rootfile"))?;
    reset(fx, "non-UTF-8 names")?;

    // 8. A hard link to a file outside. fs.protected_hardlinks (and the
    //    sandbox's mounts) should stop the tenant; root plants one as well,
    //    as a host without that protection would let the tenant, and
    //    repair must not give the sentinel's file to the tenant.
    let out = as_tenant(fx, "ln /srv/victim/file hl-tenant");
    let tenant_made_it = out.status.success();
    eprintln!(
        "[hostile_fs] tenant's hard link to /srv/victim/file: {} (fs.protected_hardlinks={})",
        if tenant_made_it { "made" } else { "refused" },
        fx.sh("cat /proc/sys/fs/protected_hardlinks")?.trim()
    );
    fx.sh(&format!(
        "ln /srv/victim/file {STATE}/hl && touch {STATE}/rootfile"
    ))?;
    as_tenant_ok(fx, "chmod 755 .")?;
    let before_hl = sentinel(fx)?; // the link count of the file is 2 now
    let r = round(fx, &before_hl, "hard link to /srv/victim/file")?;
    let all = format!("{}{}", stdout(&r.repair), stderr(&r.repair));
    ensure(
        all.contains(&format!("`{STATE}/hl` has 2 hard links")),
        || format!("repair did not name the hard link: {}", describe(&r.repair)),
    )?;
    let owners = fx.sh(&format!("stat -c '%U' {STATE}/rootfile /srv/victim/file"))?;
    ensure(owners == "oc-mallory\nroot\n", || owners.clone())?;
    ensure(r.doctor.contains("hard links"), || {
        format!("doctor did not warn about the hard link: {}", r.doctor)
    })?;
    fx.sh(&format!(
        "rm -f {STATE}/hl {STATE}/rootfile {STATE}/hl-tenant"
    ))?;
    reset(fx, "hard link")?;

    // 9. A race: the tenant swaps logs between a directory and a link to
    //    the sentinel as fast as it can while root runs add and repair.
    as_tenant_ok(
        fx,
        "rm -rf openclaw.json logs && mkdir d && ln -s /srv/victim l",
    )?;
    let script = format!(
        "(ocusers exec {T} -- sh -c 'cd {STATE}; end=$(($(date +%s)+25)); n=0; \
           while [ $(date +%s) -lt $end ]; do mv -T d logs; mv -T logs d; mv -T l logs; mv -T logs l; \
           n=$((n+1)); done; echo swaps=$n' > /tmp/hostile-swaps 2>&1 &) ; sleep 1; \
         i=0; while [ $i -lt 6 ]; do \
           timeout 60 ocusers add {T} --no-start >/dev/null 2>&1; \
           timeout 60 ocusers exec {T} -- chmod 755 {STATE}; \
           timeout 60 ocusers repair >/dev/null 2>&1; \
           timeout 60 ocusers doctor >/dev/null 2>&1; i=$((i+1)); done; \
         j=0; while ! grep -q swaps= /tmp/hostile-swaps && [ $j -lt 60 ]; do sleep 1; j=$((j+1)); done; \
         cat /tmp/hostile-swaps"
    );
    let swaps = fx.sh(&script)?;
    eprintln!("[hostile_fs] race: {}", swaps.trim());
    root(fx, &format!("stop {T}"))?;
    let after = sentinel(fx)?;
    ensure(after == before, || {
        format!("race: the sentinel or alice changed:\n{before}\n---\n{after}")
    })?;
    as_tenant_ok(fx, "rm -rf d l logs")?;
    reset(fx, "race")
}
