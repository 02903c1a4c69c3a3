//! The plans `ocusers set` and `ocusers domain` hand to apply, against a
//! temporary root and a systemd that reports a running alice: which steps
//! are left to do (nothing is applied).

use anyhow::{Result, bail};

use crate::config::HostConfig;
use crate::manifest::Desired;
use crate::onetenant::{self, Settings};
use crate::paths::{self, Paths};
use crate::policy::Tier;
use crate::provision::{Ctx, Start};
use crate::secrets::{self, EnvFile};
use crate::systemd::{SocketBind, Systemd, UnitInfo};
use crate::tenant::{self, Record, TenantName};

/// A running alice with her tier's limits; applying anything is an error.
struct Running {
    unit: UnitInfo,
    bind: SocketBind,
}

impl Systemd for Running {
    fn unit(&self, _: &str) -> Result<UnitInfo> {
        Ok(self.unit.clone())
    }
    fn unit_file_state(&self, _: &str) -> Result<String> {
        Ok("enabled".into())
    }
    fn enable(&self, _: &str) -> Result<()> {
        bail!("the plan test applies nothing")
    }
    fn disable(&self, _: &str) -> Result<()> {
        bail!("the plan test applies nothing")
    }
    fn start(&self, _: &str) -> Result<()> {
        bail!("the plan test applies nothing")
    }
    fn stop(&self, _: &str) -> Result<()> {
        bail!("the plan test applies nothing")
    }
    fn restart(&self, _: &str) -> Result<()> {
        bail!("the plan test applies nothing")
    }
    fn set_limits_and_bind(
        &self,
        _: &str,
        _: &crate::policy::Limits,
        _: &SocketBind,
    ) -> Result<()> {
        bail!("the plan test applies nothing")
    }
    fn reset_failed(&self, _: &str) -> Result<()> {
        bail!("the plan test applies nothing")
    }
    fn active_state(&self, _: &str) -> Result<String> {
        Ok("active".into())
    }
    fn reload(&self, _: &str) -> Result<()> {
        bail!("the plan test applies nothing")
    }
    fn daemon_reload(&self) -> Result<()> {
        bail!("the plan test applies nothing")
    }
    fn socket_bind(&self, _: &str) -> Result<SocketBind> {
        Ok(self.bind.clone())
    }
}

struct Host {
    _dir: tempfile::TempDir,
    paths: Paths,
    cfg: HostConfig,
    alice: Record,
}

fn host() -> Host {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::new(dir.path());
    let mut cfg = HostConfig::load(&paths).unwrap();
    cfg.isolation.firewall = crate::config::FirewallMode::Off;
    cfg.proxy.domain = "test.internal".into();
    let alice = Record {
        name: TenantName::parse("alice").unwrap(),
        port: 20000,
        block: 128,
        tier: "standard".into(),
        runtime: "2026.9.6".into(),
        created: String::new(),
        domains: Vec::new(),
        limits: Default::default(),
    };
    tenant::save(&paths, &alice).unwrap();
    // Her env file as the add plan wrote it for the standard tier.
    let mut env = EnvFile::default();
    env.set(secrets::TOKEN_KEY, &secrets::new_token().unwrap())
        .unwrap();
    env.set(secrets::PORT_KEY, "20000").unwrap();
    env.set(secrets::NODE_OPTIONS_KEY, &secrets::node_options(1024))
        .unwrap();
    env.store(&paths.secrets_file(&alice.name), "alice")
        .unwrap();
    // Her unit's drop-ins as the limits step leaves them.
    let control = paths.unit_control_dir(&paths::unit_name(&alice.name));
    std::fs::create_dir_all(&control).unwrap();
    std::fs::write(control.join("50-SocketBindAllow.conf"), "").unwrap();
    // The proxy's include as loaded, without extra domains.
    let include = paths.host_path(cfg.proxy.include());
    let text = cfg.proxy.render(&[]);
    for f in [include, paths.proxy_loaded_stamp()] {
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, &text).unwrap();
    }
    Host {
        _dir: dir,
        paths,
        cfg,
        alice,
    }
}

/// The steps left to do of the plan apply builds for `desired`.
fn todo(h: &Host, desired: &Desired) -> Vec<String> {
    let standard = Tier::load(&h.paths, "standard").unwrap().limits;
    let sd = Running {
        unit: UnitInfo {
            active_state: "active".into(),
            active_enter_usec: u64::MAX,
            memory_high: Some(standard.memory_high),
            memory_max: Some(standard.memory_max),
            cpu_quota_per_sec_usec: Some(standard.cpu_quota_per_sec_usec),
            tasks_max: Some(standard.tasks_max),
            ..Default::default()
        },
        bind: crate::isolation::socket_bind_for(&h.cfg, &h.alice),
    };
    let record = Record {
        tier: desired.tier.name.clone(),
        domains: desired.domains.clone(),
        limits: desired.overrides.clone(),
        ..h.alice.clone()
    };
    let others: Vec<Record> = Vec::new();
    let mut extra = crate::proxy::extra_domains(&others);
    extra.extend(record.domains.iter().cloned());
    let ctx = Ctx::new(&h.paths, &h.cfg, &sd, &record, &desired.tier, &[], extra);
    assert_eq!(ctx.limits, desired.limits);
    ctx.plan(Start::Wait, true).todo().unwrap()
}

fn has(steps: &[String], needle: &str) -> bool {
    steps.iter().any(|s| s.contains(needle))
}

#[test]
fn set_memory_max_changes_the_limits_and_restarts_nothing() {
    let h = host();
    let s = Settings {
        memory_max: Some("3G".into()),
        ..Default::default()
    };
    let d = onetenant::set(&h.paths, std::slice::from_ref(&h.alice), &h.alice.name, &s).unwrap();
    let steps = todo(&h, &d);
    assert!(has(&steps, "record tenant in"), "{steps:#?}");
    assert!(
        has(
            &steps,
            "with overrides (MemoryHigh=1610612736 MemoryMax=3221225472 CPUQuota=100% TasksMax=512)"
        ),
        "{steps:#?}"
    );
    assert!(!has(&steps, "restart"), "{steps:#?}");
    assert!(!has(&steps, "write secrets file"), "{steps:#?}");
    assert!(!has(&steps, "start openclaw@alice"), "{steps:#?}");
    assert!(!has(&steps, "ocusers.caddy"), "{steps:#?}");
}

#[test]
fn set_tier_rewrites_the_heap_and_restarts_the_gateway() {
    let h = host();
    let s = Settings {
        tier: Some("heavy".into()),
        ..Default::default()
    };
    let d = onetenant::set(&h.paths, std::slice::from_ref(&h.alice), &h.alice.name, &s).unwrap();
    let steps = todo(&h, &d);
    assert!(
        has(
            &steps,
            "set limits of tier heavy (MemoryHigh=3221225472 MemoryMax=4294967296"
        ),
        "{steps:#?}"
    );
    assert!(has(&steps, "write secrets file"), "{steps:#?}");
    assert!(
        has(
            &steps,
            "restart openclaw@alice.service so the gateway reads its changed environment"
        ),
        "{steps:#?}"
    );
}

#[test]
fn a_domain_under_the_wildcard_leaves_the_proxy_unreloaded() {
    let h = host();
    let reg = [h.alice.clone()];
    let d = onetenant::domain_add(
        &h.paths,
        &h.cfg,
        &reg,
        &h.alice.name,
        "alice-extra.test.internal",
    )
    .unwrap();
    let steps = todo(&h, &d);
    assert!(
        has(
            &steps,
            "route alice-extra.test.internal, alice.test.internal to alice"
        ),
        "{steps:#?}"
    );
    assert!(!has(&steps, "reload caddy.service"), "{steps:#?}");
    assert!(!has(&steps, "set limits"), "{steps:#?}");
    assert!(!has(&steps, "restart"), "{steps:#?}");

    let d =
        onetenant::domain_add(&h.paths, &h.cfg, &reg, &h.alice.name, "alice.example.org").unwrap();
    let steps = todo(&h, &d);
    assert!(
        has(&steps, "reload caddy.service if it changed"),
        "{steps:#?}"
    );
    assert!(
        has(
            &steps,
            "route alice.example.org, alice.test.internal to alice"
        ),
        "{steps:#?}"
    );
    assert!(!has(&steps, "restart"), "{steps:#?}");
}

/// A systemd on which every job succeeds (for applying route steps).
struct Obliging(Running);

impl Systemd for Obliging {
    fn unit(&self, u: &str) -> Result<UnitInfo> {
        self.0.unit(u)
    }
    fn unit_file_state(&self, _: &str) -> Result<String> {
        Ok("enabled".into())
    }
    fn enable(&self, _: &str) -> Result<()> {
        Ok(())
    }
    fn disable(&self, _: &str) -> Result<()> {
        Ok(())
    }
    fn start(&self, _: &str) -> Result<()> {
        Ok(())
    }
    fn stop(&self, _: &str) -> Result<()> {
        Ok(())
    }
    fn restart(&self, _: &str) -> Result<()> {
        Ok(())
    }
    fn set_limits_and_bind(
        &self,
        _: &str,
        _: &crate::policy::Limits,
        _: &SocketBind,
    ) -> Result<()> {
        Ok(())
    }
    fn reset_failed(&self, _: &str) -> Result<()> {
        Ok(())
    }
    fn active_state(&self, _: &str) -> Result<String> {
        Ok("active".into())
    }
    fn reload(&self, _: &str) -> Result<()> {
        Ok(())
    }
    fn daemon_reload(&self) -> Result<()> {
        Ok(())
    }
}

#[test]
fn a_failed_domain_change_puts_the_earlier_routes_back() {
    let h = host();
    let sd = Obliging(Running {
        unit: UnitInfo::default(),
        bind: SocketBind {
            allow: Vec::new(),
            deny: Vec::new(),
        },
    });
    let links = |paths: &Paths| crate::proxy::links(paths).unwrap();
    // alice routed at her own name, as `add` left her.
    let mut plan = crate::plan::Plan::new("alice", "test");
    plan.push(crate::proxy::route_step(
        &h.paths,
        &h.cfg.proxy,
        &sd,
        &h.alice,
    ));
    plan.apply().unwrap();
    let before = links(&h.paths);
    assert_eq!(
        before,
        [("alice.test.internal".to_string(), "alice".to_string())]
    );
    // A domain added, then a later step fails: the earlier link stays,
    // the new one goes.
    let with = Record {
        domains: vec!["alice-extra.test.internal".into()],
        ..h.alice.clone()
    };
    let mut plan = crate::plan::Plan::new("alice", "test");
    plan.push(crate::proxy::route_step(&h.paths, &h.cfg.proxy, &sd, &with));
    plan.push(crate::plan::Step::new(
        "fail",
        || Ok(false),
        || bail!("boom"),
    ));
    plan.apply().unwrap_err();
    assert_eq!(links(&h.paths), before);
}
