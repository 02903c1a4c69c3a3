//! Hostile archives and a hostile tenant against `backup`/`restore` on the
//! real host (issue 14). Runs after the day-2 trials: alice, bob and
//! bob-smith exist. bob is the attacker (everything he does runs as oc-bob
//! inside his sandbox, through `ocusers exec`), alice the neighbour, and a
//! root-owned sentinel (a 0755 directory with a 0644 file of known SHA-256)
//! stands for the host.
//!
//! - Every crafted archive of `support/craft.rs` (one per refusal) is
//!   refused by `restore` in one line, and nothing is created: no user, no
//!   state directory, no registry entry, no environment file.
//! - bob prepares his state (a FIFO behind openclaw.json and in the state,
//!   a 64 TiB sparse file, a non-UTF-8 name, links to the sentinel and to
//!   alice's state, a SQLite database whose trigger would loop forever and
//!   write if it ran) and swaps a directory for a link and back in a loop,
//!   with links planted beside the database, while root runs `backup bob`,
//!   `backup --all` and `restore` of bob's archive. Each finishes within a
//!   fixed bound, the sentinel is unchanged, and no archive holds a byte of
//!   alice's token or state.
use std::io::Read;
use std::time::{Duration, Instant};

use crate::day2::{put, random_hex};
use crate::support::assert::ensure;
use crate::support::craft;
use crate::support::process::{describe, stderr, stdout};
use crate::support::trials::Figures as _;
use crate::tenants::Fixture;

type R = Result<(), String>;

/// Every root command of this trial finishes within this.
const BOUND: Duration = Duration::from_secs(240);
const OUT: &str = "/root/hostile-backups";

fn sentinel(fx: &Fixture) -> Result<String, String> {
    fx.sh(
        "stat -c '%n %U %G %a %s %F' /srv/sentinel /srv/sentinel/file && \
         sha256sum /srv/sentinel/file && ls -la /srv/sentinel | tail -n +2 | awk '{print $1, $3, $4, $9}'",
    )
}

fn nothing_of(fx: &Fixture, name: &str) -> R {
    let left = fx.sh(&format!(
        "id oc-{name} 2>/dev/null; ls -d /var/lib/openclaw/{name} /var/lib/ocusers/tenants/{name}.toml \
         /etc/ocusers/tenants/{name}.env /var/lib/ocusers/runtimes/by-tenant/{name} 2>/dev/null; \
         systemctl list-units --all --no-legend 'openclaw@{name}.service' 2>/dev/null | grep -c . || true"
    ))?;
    ensure(left.trim() == "0", || {
        format!("a refused restore left something of {name}: {left}")
    })
}

fn timed(fx: &Fixture, what: &str) -> Result<std::process::Output, String> {
    let t = Instant::now();
    let out = fx.ocusers(what);
    ensure(t.elapsed() < BOUND, || {
        format!(
            "`ocusers {what}` took {:.0} s: {}",
            t.elapsed().as_secs_f64(),
            describe(&out)
        )
    })?;
    Ok(out)
}

/// Every byte of every archive in `dir` (decompressed).
fn archives(fx: &Fixture, dir: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut out = Vec::new();
    let d = fx.c.root().join(dir.trim_start_matches('/'));
    for e in std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))? {
        let p = e.map_err(|e| e.to_string())?.path();
        if p.extension().is_some_and(|x| x == "gz") {
            let mut bytes = Vec::new();
            flate2::read::GzDecoder::new(std::fs::File::open(&p).map_err(|e| e.to_string())?)
                .read_to_end(&mut bytes)
                .map_err(|e| format!("{}: {e}", p.display()))?;
            out.push((p.display().to_string(), bytes));
        }
    }
    Ok(out)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

pub fn hostile_archive_and_backup(fx: &Fixture) -> R {
    fx.sh(&format!(
        "rm -rf /srv/sentinel {OUT} && install -d -m 755 /srv/sentinel && \
         echo 'SENTINEL-{}' > /srv/sentinel/file && chmod 644 /srv/sentinel/file",
        random_hex()
    ))?;
    let before = sentinel(fx)?;
    let sentinel_text = fx.sh("cat /srv/sentinel/file")?;

    // 1. Crafted archives: each refused in one line, nothing created.
    for (case, bytes, needle) in craft::hostile("mallory") {
        let file = format!("/root/crafted-{case}.tar.gz");
        put(fx, &file, &bytes)?;
        for cmd in [format!("backup verify {file}"), format!("restore {file}")] {
            let out = timed(fx, &cmd)?;
            let err = stderr(&out);
            ensure(
                out.status.code() == Some(1)
                    && err.trim_end().lines().count() == 1
                    && err.contains(needle),
                || {
                    format!(
                        "{case}: `ocusers {cmd}` should refuse with {needle:?}: {}",
                        describe(&out)
                    )
                },
            )?;
        }
        nothing_of(fx, "mallory")?;
        ensure(sentinel(fx)? == before, || {
            format!("{case}: the sentinel changed")
        })?;
        fx.sh(&format!("rm {file}"))?;
    }

    // 2. bob prepares his state, as bob, in his sandbox. The day-2 trials
    // end with alice and bob-smith (doctor_and_repair removes bob), so this
    // trial brings bob back for itself and removes him again at the end.
    fx.ocusers_ok("add bob")?;
    let alice_token = fx.token("alice")?;
    let alice_secret = format!("alice-private-{}", random_hex());
    put(fx, "/root/.alice-secret", alice_secret.as_bytes())?;
    // alice's workspace exists once her agent ran; made here as alice if
    // the trials before did not.
    fx.ocusers_ok("exec alice -- mkdir -p /var/lib/openclaw/alice/workspace")?;
    fx.sh(
        "install -o oc-alice -g oc-alice -m 600 /root/.alice-secret /var/lib/openclaw/alice/workspace/private.txt && rm /root/.alice-secret",
    )?;
    let prep = fx.ocusers(
        "exec bob -- sh -c 'set -e; cd /var/lib/openclaw/bob; rm -rf hostile; mkdir -p hostile/d; \
         echo inner > hostile/d/f; mkfifo hostile/fifo; \
         truncate -s 64T hostile/sparse 2>/dev/null || truncate -s 15T hostile/sparse; \
         printf bytes > \"hostile/name-$(printf \"\\377\\376\")\"; \
         ln -s /srv/sentinel/file hostile/to-sentinel; ln -s /var/lib/openclaw/alice hostile/to-alice; \
         ln -s /dev/zero hostile/zero; \
         mv openclaw.json hostile/openclaw.json.saved; mkfifo openclaw.json'",
    );
    ensure(prep.status.success(), || {
        format!("preparing bob's state: {}", describe(&prep))
    })?;
    // The trap: a trigger that would write and never end if anything ran it.
    let db = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    {
        let conn = rusqlite::Connection::open(db.path()).map_err(|e| e.to_string())?;
        conn.execute_batch(
            "CREATE TABLE state_leases (scope TEXT, lease_key TEXT, owner TEXT);
             INSERT INTO state_leases VALUES ('gateway-owner', 'global', 'bob');
             CREATE TABLE fired (v TEXT);
             CREATE TRIGGER trap BEFORE DELETE ON state_leases BEGIN
               INSERT INTO fired VALUES ('ran');
               SELECT count(*) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c);
             END;",
        )
        .map_err(|e| e.to_string())?;
    }
    put(
        fx,
        "/root/trap.sqlite",
        &std::fs::read(db.path()).map_err(|e| e.to_string())?,
    )?;
    fx.sh("install -o oc-bob -g oc-bob -m 600 /root/trap.sqlite /var/lib/openclaw/bob/hostile/trap.sqlite && rm /root/trap.sqlite")?;

    // 3. The race, as bob, while root backs up and restores.
    const LOOP: &str = "cd /var/lib/openclaw/bob/hostile; end=$(( $(date +%s) + 80 )); \
        while [ ! -e stop ] && [ $(date +%s) -lt $end ]; do \
          mv d d.x; ln -s /srv/sentinel d; rm d; mv d.x d; \
          ln -s /var/lib/openclaw/alice l; rm l; mkdir l; rmdir l; \
          ln -sf /srv/sentinel/file trap.sqlite-journal; rm -f trap.sqlite-journal; \
          ln -sf /var/lib/openclaw/alice/openclaw.json trap.sqlite-wal; rm -f trap.sqlite-wal; \
          ln -sf /srv/sentinel trap.sqlite-shm; rm -f trap.sqlite-shm; \
        done";
    let mut results = Vec::new();
    std::thread::scope(|s| -> R {
        let racer = s.spawn(|| {
            fx.c.exec(
                &["ocusers", "exec", "bob", "--", "sh", "-c", LOOP],
                Duration::from_secs(120),
            )
        });
        std::thread::sleep(Duration::from_secs(1));
        for cmd in [
            format!("backup bob --out {OUT}"),
            format!("backup bob --out {OUT}"),
            format!("backup --all --out {OUT}"),
        ] {
            let out = timed(fx, &cmd)?;
            results.push((cmd, out));
        }
        let _ = fx.ocusers("exec bob -- touch /var/lib/openclaw/bob/hostile/stop");
        let racer = racer.join().map_err(|_| "racer panicked".to_string())?;
        ensure(racer.status.success(), || {
            format!("bob's race loop: {}", describe(&racer))
        })?;
        Ok(())
    })?;
    // bob's own backups may fail under his own race (his state, his
    // loss), in one line; alice's backup in --all does not.
    for (cmd, out) in &results {
        ensure(
            out.status.success()
                || stderr(out)
                    .lines()
                    .filter(|l| l.starts_with("ocusers:"))
                    .count()
                    >= 1,
            || format!("{cmd}: {}", describe(out)),
        )?;
    }
    let all = &results[2].1;
    ensure(stdout(all).contains("alice:"), || {
        format!("backup --all wrote no archive of alice: {}", describe(all))
    })?;
    // Once more without the race: bob's archive is made, without what he
    // planted, and the trap never ran.
    let out = timed(fx, &format!("backup bob --out {OUT}"))?;
    ensure(out.status.success(), || {
        format!("backup bob: {}", describe(&out))
    })?;
    let said = stderr(&out);
    for what in ["FIFO", "hostile/sparse", "outside the state"] {
        ensure(said.contains(what), || {
            format!("backup bob did not say it left out a {what}: {said}")
        })?;
    }
    let path = stdout(&out)
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let bytes = std::fs::read(fx.c.root().join(path.trim_start_matches('/')))
        .map_err(|e| format!("{path}: {e}"))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_slice()));
    let mut names = Vec::new();
    let mut trap = None;
    for e in tar.entries().map_err(|e| e.to_string())? {
        let mut e = e.map_err(|e| e.to_string())?;
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        if name == "state/hostile/trap.sqlite" {
            let mut data = Vec::new();
            e.read_to_end(&mut data).map_err(|e| e.to_string())?;
            trap = Some(data);
        }
        names.push(name);
    }
    for gone in [
        "state/hostile/fifo",
        "state/hostile/sparse",
        "state/hostile/to-sentinel",
        "state/hostile/to-alice",
        "state/hostile/zero",
        "state/openclaw.json",
    ] {
        ensure(!names.iter().any(|n| n == gone), || {
            format!("{gone} is in bob's archive: {names:?}")
        })?;
    }
    ensure(
        names.iter().any(|n| n.starts_with("state/hostile/name-")),
        || format!("the non-UTF-8 name is not in bob's archive: {names:?}"),
    )?;
    let copy = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    std::fs::write(copy.path(), trap.ok_or("no trap.sqlite in bob's archive")?)
        .map_err(|e| e.to_string())?;
    let c = rusqlite::Connection::open(copy.path()).map_err(|e| e.to_string())?;
    let count = |t: &str| -> Result<i64, String> {
        c.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))
            .map_err(|e| e.to_string())
    };
    ensure(count("fired")? == 0 && count("state_leases")? == 0, || {
        "the snapshot ran bob's trigger, or kept the lease".into()
    })?;

    // bob's config back (his gateway may restart on the change: it has
    // the restore below to settle).
    fx.ocusers_ok(
        "exec bob -- sh -c 'cd /var/lib/openclaw/bob && rm -f openclaw.json && mv hostile/openclaw.json.saved openclaw.json'",
    )?;

    // 4. restore of bob's archive under another name: his links and names
    // land in the new tenant's own state only.
    let out = timed(fx, &format!("restore {path} --as mallet"))?;
    if !out.status.success() {
        let journal = fx.c.sh("journalctl -u openclaw@mallet -n 80 --no-pager -o cat; ls -la /var/lib/openclaw/mallet /var/lib/openclaw/mallet/hostile 2>&1 | head -40");
        return Err(format!(
            "restore --as mallet: {}\n--- mallet's journal ---\n{}",
            describe(&out),
            describe(&journal)
        ));
    }
    let got = fx.sh("cat /var/lib/openclaw/mallet/hostile/d/f; stat -c '%U' /var/lib/openclaw/mallet/hostile/trap.sqlite")?;
    ensure(got == "inner\noc-mallet\n", || {
        format!("mallet's restored state: {got:?}")
    })?;
    let out = timed(fx, "remove mallet --purge")?;
    ensure(out.status.success(), || {
        format!("remove mallet: {}", describe(&out))
    })?;

    // 5. upgrade against the same hostile state (openclaw.json a FIFO
    // again, the links and names still there): bob goes to a runtime that
    // never becomes ready, so upgrade puts him back on his own, finds him
    // not ready there either (his config is a FIFO), and resets his state
    // from the pre-upgrade snapshot: the snapshot is made by bob's uid,
    // root empties the state by descriptor and the snapshot is unpacked as
    // bob. Short readiness timeouts keep the three waits short.
    upgrade_under_attack(fx)?;

    // 6. Nothing crossed.
    ensure(sentinel(fx)? == before, || "the sentinel changed".into())?;
    let mut all = archives(fx, OUT)?;
    for dir in [
        "/var/lib/ocusers/backups/pre-upgrade",
        "/var/lib/ocusers/backups/replaced-state",
    ] {
        if fx.c.root().join(dir.trim_start_matches('/')).is_dir() {
            all.extend(archives(fx, dir)?);
        }
    }
    for (file, bytes) in all {
        if file.contains("/alice-") {
            continue;
        }
        for (what, needle) in [
            ("alice's gateway token", alice_token.as_bytes()),
            ("alice's private file", alice_secret.as_bytes()),
            ("the sentinel", sentinel_text.trim().as_bytes()),
        ] {
            ensure(!contains(&bytes, needle), || format!("{file} holds {what}"))?;
        }
    }
    fx.ocusers_ok("exec bob -- rm -rf /var/lib/openclaw/bob/hostile")?;
    fx.sh(&format!(
        "rm -rf {OUT} /srv/sentinel /var/lib/openclaw/alice/workspace/private.txt"
    ))?;
    // The trials after this one find the tenants the day-2 trials left.
    fx.ocusers_ok("remove bob --purge")?;
    Ok(())
}

/// `upgrade --to BROKEN --tenants bob` while bob's state is hostile; see
/// step 5 of [`hostile_archive_and_backup`].
fn upgrade_under_attack(fx: &Fixture) -> R {
    let rt = "/var/lib/ocusers/runtimes";
    let status = fx.json("status bob --json")?;
    let own = status["tenants"][0]["runtime"]
        .as_str()
        .or_else(|| status["runtime"].as_str())
        .ok_or_else(|| format!("no runtime in bob's status: {status}"))?
        .to_string();
    let broken = format!("{own}-hostile");
    fx.sh(&format!(
        "cd {rt} && rm -rf {broken} && cp -al {own} {broken} && \
         rm {broken}/node_modules/openclaw/openclaw.mjs && \
         echo 'setInterval(() => {{}}, 1000);' > {broken}/node_modules/openclaw/openclaw.mjs"
    ))?;
    fx.ocusers_ok(
        "exec bob -- sh -c 'cd /var/lib/openclaw/bob && mv openclaw.json hostile/openclaw.json.saved && mkfifo openclaw.json'",
    )?;
    // The host's config may not exist (the defaults); it is put back as it
    // was, or removed again.
    fx.sh("rm -f /tmp/hostile-archive-ocusers.toml.saved; if [ -e /etc/ocusers/ocusers.toml ]; then cp -a /etc/ocusers/ocusers.toml /tmp/hostile-archive-ocusers.toml.saved; fi; printf '[tenants]\\nready_timeout = 10\\n' >> /etc/ocusers/ocusers.toml")?;
    let t = Instant::now();
    let out = timed(
        fx,
        &format!("upgrade --to {broken} --tenants bob --timeout 10"),
    );
    let took = t.elapsed();
    let put_back = fx.sh("rm /etc/ocusers/ocusers.toml; if [ -e /tmp/hostile-archive-ocusers.toml.saved ]; then mv /tmp/hostile-archive-ocusers.toml.saved /etc/ocusers/ocusers.toml; fi");
    let out = out?;
    put_back?;
    fx.figure(
        "upgrade of a hostile tenant to a runtime that never becomes ready (3 waits of 10 s)",
        format!("{:.1} s", took.as_secs_f64()),
    );
    let err = stderr(&out);
    ensure(
        out.status.code() == Some(1) && err.contains(&format!("bob: not ready on {broken}")),
        || format!("upgrade of hostile bob: {}", describe(&out)),
    )?;
    let now = fx.json("status bob --json")?;
    ensure(now.to_string().contains(&format!("\"{own}\"")), || {
        format!("bob is not back on {own}: {now}")
    })?;
    // What upgrade put back is the snapshot bob's uid made: his regular
    // files, none of what the packer leaves out, and no config (it was a
    // FIFO when the snapshot was made).
    let got = fx.sh(
        "cd /var/lib/openclaw/bob && cat hostile/d/f; stat -c '%U %F' hostile/openclaw.json.saved; \
         for f in openclaw.json hostile/fifo hostile/sparse hostile/to-sentinel hostile/to-alice hostile/zero; do \
           if [ -e $f ] || [ -L $f ]; then echo \"left: $f\"; fi; done",
    )?;
    ensure(got == "inner\noc-bob regular file\n", || {
        format!("bob's state after the reset: {got:?}")
    })?;
    fx.ocusers_ok(
        "exec bob -- sh -c 'cd /var/lib/openclaw/bob && mv hostile/openclaw.json.saved openclaw.json'",
    )?;
    fx.sh(&format!("rm -rf {rt}/{broken}"))?;
    Ok(())
}
