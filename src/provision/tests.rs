//! Golden files of the plans' steps as `--dry-run` prints them, built
//! against a temporary root and a systemd that knows no unit: a step
//! removed, reordered or reworded changes them. Only the descriptions and
//! the done/todo marks; `applied.rs` applies the plans (a fake systemd and
//! user database) and compares the resulting tree and calls.
//! `UPDATE_GOLDEN=1 cargo test --lib provision::tests` rewrites both;
//! review the diff.
use std::path::{Path, PathBuf};

use anyhow::Result;

mod applied;

use super::{Ctx, Start, push_restart, remove, secret};
use crate::config::HostConfig;
use crate::paths::Paths;
use crate::plan::Plan;
use crate::policy::{Limits, Tier};
use crate::systemd::{SocketBind, Systemd, UnitInfo};
use crate::tenant::{Record, TenantName};

/// No unit is loaded, enabled or running; nothing is ever applied.
struct Unknown;

impl Systemd for Unknown {
    fn unit(&self, _: &str) -> Result<UnitInfo> {
        Ok(UnitInfo::default())
    }
    fn unit_file_state(&self, _: &str) -> Result<String> {
        Ok("disabled".into())
    }
    fn enable(&self, _: &str) -> Result<()> {
        anyhow::bail!("the plan goldens apply nothing")
    }
    fn disable(&self, _: &str) -> Result<()> {
        anyhow::bail!("the plan goldens apply nothing")
    }
    fn start(&self, _: &str) -> Result<()> {
        anyhow::bail!("the plan goldens apply nothing")
    }
    fn stop(&self, _: &str) -> Result<()> {
        anyhow::bail!("the plan goldens apply nothing")
    }
    fn restart(&self, _: &str) -> Result<()> {
        anyhow::bail!("the plan goldens apply nothing")
    }
    fn set_limits_and_bind(&self, _: &str, _: &Limits, _: &SocketBind) -> Result<()> {
        anyhow::bail!("the plan goldens apply nothing")
    }
    fn reset_failed(&self, _: &str) -> Result<()> {
        anyhow::bail!("the plan goldens apply nothing")
    }
    fn active_state(&self, _: &str) -> Result<String> {
        Ok("inactive".into())
    }
    fn reload(&self, _: &str) -> Result<()> {
        anyhow::bail!("the plan goldens apply nothing")
    }
    fn daemon_reload(&self) -> Result<()> {
        anyhow::bail!("the plan goldens apply nothing")
    }
    fn socket_bind(&self, _: &str) -> Result<SocketBind> {
        Ok(SocketBind {
            allow: Vec::new(),
            deny: Vec::new(),
        })
    }
}

fn check(name: &str, root: &Path, plan: &Plan<'_>) {
    let actual = plan
        .describe()
        .unwrap()
        .replace(&root.display().to_string(), "ROOT");
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/plans")
        .join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run `UPDATE_GOLDEN=1 cargo test --lib provision::tests`",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "the {name} plan differs from {}; run `UPDATE_GOLDEN=1 cargo test --lib provision::tests` and review the diff.\n--- planned:\n{actual}",
        path.display()
    );
}

/// A tenant no host has (its user `oc-goldie` does not exist), public
/// access off. Its port is 1 (tcpmux), where no gateway of another test
/// answers /readyz (one of the system tier may well be on 20000).
fn goldie() -> Record {
    Record {
        name: TenantName::parse("goldie").unwrap(),
        port: 1,
        block: 128,
        tier: "standard".into(),
        runtime: "2026.9.6".into(),
        created: String::new(),
        domains: vec!["goldie.example.org".into()],
        limits: Default::default(),
    }
}

#[test]
fn plans_match_their_golden_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let paths = Paths::new(root);
    let cfg = HostConfig::load(&paths).unwrap();
    assert!(!cfg.proxy.enabled());
    let sd = Unknown;
    let record = goldie();
    let tier = Tier::load(&paths, "standard").unwrap();

    let add = Ctx::new(&paths, &cfg, &sd, &record, &tier, &[], Vec::new());
    check("add", root, &add.plan(Start::Wait, false));
    check("add-no-start", root, &add.plan(Start::No, false));
    let secrets = vec![("OPENAI_API_KEY".to_string(), "sk-x".to_string())];
    let apply = Ctx::new(&paths, &cfg, &sd, &record, &tier, &secrets, Vec::new());
    check("apply", root, &apply.plan(Start::Wait, true));

    let name = &record.name;
    let archive = Some(PathBuf::from("/ARCHIVE/goldie.tar.gz"));
    let plan = |archive| {
        remove::plan(
            &paths,
            &cfg,
            &sd,
            &crate::identity::SYSTEM,
            name,
            "oc-goldie",
            None,
            "openclaw@goldie.service",
            archive,
            Some(&[]),
        )
        .unwrap()
    };
    check("remove", root, &plan(archive));
    check("remove-purge", root, &plan(None));

    let mut restart = Plan::new("goldie", "test");
    push_restart(&mut restart, &paths, &sd, &record);
    check("restart", root, &restart);
    let rotation = secret::Rotation::new(&paths, &record).unwrap();
    check("token-rotate", root, &rotation.plan(&paths, &sd, &record));
    // `secret set` needs the tenant's env file.
    let mut env = crate::secrets::EnvFile::default();
    env.set(crate::secrets::PORT_KEY, "1").unwrap();
    env.store(&paths.secrets_file(name), "goldie").unwrap();
    check(
        "secret-set",
        root,
        &secret::set(&paths, &record, "OPENAI_API_KEY", "sk-x".into()),
    );
}

/// A sleeper (idle_stop) behind the proxy: its drop-ins, left out of
/// openclaw.target, started through its relay.
#[test]
fn the_idle_stop_plan_matches_its_golden_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let paths = Paths::new(root);
    std::fs::create_dir_all(paths.etc_dir()).unwrap();
    std::fs::write(paths.host_config(), "[proxy]\ndomain = \"example.org\"\n").unwrap();
    let cfg = HostConfig::load(&paths).unwrap();
    assert!(cfg.proxy.enabled());
    let sd = Unknown;
    let mut record = goldie();
    record.limits.idle_stop = Some("15m".into());
    let tier = Tier::load(&paths, "standard").unwrap();
    let add = Ctx::new(&paths, &cfg, &sd, &record, &tier, &[], Vec::new());
    assert_eq!(add.idle, Some(900));
    let plan = add.plan(Start::Wait, false);
    let text = plan.describe().unwrap();
    assert!(!text.contains("wanted by openclaw.target"), "{text}");
    check("add-idle-stop", root, &plan);
    drop(plan);
    // "off" over the tier: always on, no drop-in step (none is there).
    let mut off = record.clone();
    off.limits.idle_stop = Some("off".into());
    let add = Ctx::new(&paths, &cfg, &sd, &off, &tier, &[], Vec::new());
    assert_eq!(add.idle, None);
    let text = add.plan(Start::Wait, false).describe().unwrap();
    assert!(
        !text.contains("idle_stop") && text.contains("wanted by openclaw.target"),
        "{text}"
    );
}
