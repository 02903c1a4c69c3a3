use std::io::{Read, Write};
use std::time::{Duration, Instant};

use super::*;

fn name(n: &str) -> TenantName {
    TenantName::parse(n).unwrap()
}

#[test]
fn idle_stop_parses_durations_and_off() {
    assert_eq!(parse_idle_stop("15m"), Ok(Some(900)));
    assert_eq!(parse_idle_stop("90s"), Ok(Some(90)));
    assert_eq!(parse_idle_stop("1h"), Ok(Some(3600)));
    assert_eq!(parse_idle_stop("20s"), Ok(Some(20)));
    assert_eq!(parse_idle_stop("off"), Ok(None));
    assert_eq!(parse_idle_stop("0"), Ok(None));
    for bad in ["", "soon", "15 minutes", "-5m", "5s", "15x"] {
        let e = parse_idle_stop(bad).unwrap_err();
        assert!(e.contains("idle_stop") && !e.contains('\n'), "{bad}: {e}");
    }
    assert!(parse_idle_stop("5s").unwrap_err().contains("at least 10s"));
    assert!(parse_idle_stop("15x").unwrap_err().contains("like 15m"));
}

#[test]
fn a_tenants_own_setting_wins_over_its_tier() {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::new(dir.path());
    let mut tier = Tier::load(&paths, "light").unwrap();
    assert_eq!(tier.idle_stop, None, "tiers ship always on");
    let mut o = LimitOverrides::default();
    assert_eq!(effective(&tier, &o), Ok(None));
    tier.idle_stop = Some(900);
    assert_eq!(effective(&tier, &o), Ok(Some(900)));
    o.idle_stop = Some("off".into());
    assert_eq!(effective(&tier, &o), Ok(None));
    o.idle_stop = Some("20s".into());
    assert_eq!(effective(&tier, &o), Ok(Some(20)));
}

#[test]
fn a_tier_file_takes_idle_stop_and_names_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::new(dir.path());
    let base = include_str!("../../policy/tiers/light.toml");
    std::fs::create_dir_all(paths.local_tiers_dir()).unwrap();
    std::fs::write(
        paths.local_tiers_dir().join("nap.toml"),
        format!("{base}idle_stop = \"15m\"\n"),
    )
    .unwrap();
    assert_eq!(Tier::load(&paths, "nap").unwrap().idle_stop, Some(900));
    std::fs::write(
        paths.local_tiers_dir().join("bad.toml"),
        format!("{base}idle_stop = \"later\"\n"),
    )
    .unwrap();
    let e = format!("{:#}", Tier::load(&paths, "bad").unwrap_err());
    assert!(e.contains("bad.toml") && e.contains("idle_stop"), "{e}");
}

#[test]
fn dropins_wait_for_readiness_and_exit_idle() {
    let n = name("alice");
    let relay = render_relay(&n, 900, 180);
    for want in [
        "Wants=openclaw@alice.service",
        "After=openclaw@alice.service",
        "ExecStartPre=-/usr/bin/ocusers internal wait-ready --port ${OCUSERS_PORT} --timeout 360",
        "ExecStart=\n",
        "--exit-idle-time=900s 127.0.0.1:${OCUSERS_PORT}",
        "TimeoutStartSec=390",
    ] {
        assert!(relay.contains(want), "missing {want}:\n{relay}");
    }
    assert!(render_gateway(&n).contains("StopWhenUnneeded=yes"));
    let paths = Paths::new("/r");
    assert_eq!(
        relay_dropin(&paths, &n),
        std::path::Path::new(
            "/r/etc/systemd/system/openclaw-proxy@alice.service.d/50-ocusers-idle-stop.conf"
        )
    );
    assert_eq!(
        gateway_dropin(&paths, &n),
        std::path::Path::new(
            "/r/etc/systemd/system/openclaw@alice.service.d/50-ocusers-idle-stop.conf"
        )
    );
    assert_eq!(show(900), "15min");
    assert_eq!(show(20), "20s");
}

#[test]
fn the_tenant_side_finds_enabled_channels_and_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path();
    assert_eq!(inspect(s), Scheduled::default(), "no config: nothing runs");
    std::fs::write(
        s.join("openclaw.json"),
        r#"{"gateway":{"port":1},"channels":{"telegram":{"botToken":"x"},"discord":{"enabled":false}}}"#,
    )
    .unwrap();
    let found = inspect(s);
    assert_eq!(found.channels, vec!["telegram".to_string()]);
    assert_eq!(found.cron_jobs, 0);
    std::fs::create_dir(s.join("cron")).unwrap();
    std::fs::write(
        s.join("cron/jobs.json"),
        r#"{"version":1,"jobs":[{"id":"a"},{"id":"b","enabled":false}]}"#,
    )
    .unwrap();
    assert_eq!(inspect(s).cron_jobs, 1);
    // cron.enabled = false: the scheduler runs nothing.
    std::fs::write(s.join("openclaw.json"), r#"{"cron":{"enabled":false}}"#).unwrap();
    assert_eq!(inspect(s), Scheduled::default());
    // JSON5 the check cannot read: unknown, so refused unless forced.
    std::fs::write(s.join("openclaw.json"), "{ channels: { telegram: {} } }").unwrap();
    assert!(inspect(s).unreadable.is_some());
    // A FIFO is not read (it would block): refused as unreadable.
    std::fs::remove_file(s.join("openclaw.json")).unwrap();
    nix::unistd::mkfifo(&s.join("openclaw.json"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let t = Instant::now();
    assert!(
        inspect(s)
            .unreadable
            .unwrap()
            .contains("not a regular file")
    );
    assert!(t.elapsed() < Duration::from_secs(2));
}

#[test]
fn refusal_is_one_line_naming_the_cause_and_the_fix() {
    let n = name("bob");
    let found = Scheduled {
        channels: vec!["telegram".into()],
        cron_jobs: 2,
        unreadable: None,
    };
    let m = refusal(&n, &found, false).unwrap();
    assert!(!m.contains('\n'), "{m}");
    for want in [
        "bob",
        "telegram",
        "2 cron job(s)",
        "--force-idle-stop",
        "force_idle_stop",
    ] {
        assert!(m.contains(want), "missing {want}: {m}");
    }
    assert_eq!(refusal(&n, &found, true), None);
    assert_eq!(refusal(&n, &Scheduled::default(), false), None);
}

#[test]
fn roots_side_keeps_only_well_formed_answers() {
    let s = parse_answer(br#"{"channels":["telegram","x\u001b[2J","../../etc"],"cron_jobs":0}"#);
    assert_eq!(s.channels, vec!["telegram".to_string()]);
    let s = parse_answer(b"garbage");
    assert!(s.unreadable.is_some());
    assert!(
        refusal(&name("bob"), &s, false).is_some(),
        "no answer is no pass"
    );
    let s = parse_answer(br#"{"channels":[],"cron_jobs":0,"unreadable":"a\nb"}"#);
    assert_eq!(s.unreadable.as_deref(), Some("ab"));
}

/// A hostile "gateway" (the tenant controls what answers on its port): one
/// that never answers and one that sends an endless body. The wait ends at
/// its bound and reads at most a probe's cap.
#[test]
fn the_readiness_wait_is_bounded_against_a_hostile_port() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut c = c;
                let mut buf = [0u8; 1024];
                let _ = c.read(&mut buf);
                // 503 with an endless body, slowly.
                let _ = c.write_all(
                    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 999999999999\r\n\r\n",
                );
                for _ in 0..10_000 {
                    if c.write_all(&[b'x'; 65536]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    let t = Instant::now();
    assert!(!wait_ready(port, Duration::from_secs(3)));
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());

    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let t = Instant::now();
    assert!(!wait_ready(port, Duration::from_secs(2)));
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    drop(silent);

    let ok = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = ok.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in ok.incoming().flatten() {
            let mut c = c;
            let mut buf = [0u8; 1024];
            let _ = c.read(&mut buf);
            let _ = c.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        }
    });
    assert!(wait_ready(port, Duration::from_secs(5)));
}
