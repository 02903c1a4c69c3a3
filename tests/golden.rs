//! Golden files for everything ocusers renders: the tenant's OpenClaw
//! config, its environment file, its registry entry, and the man page and
//! shell completions generated from the clap definitions (shipped in the
//! .deb from packaging/generated/). `UPDATE_GOLDEN=1 cargo test --test
//! golden` rewrites them; review the diff before committing.
use std::path::PathBuf;

use ocusers::paths::Paths;
use ocusers::secrets::{self, EnvFile};
use ocusers::tenant::{self, Record, TenantName};

mod support;

/// The golden compare of every tier; a difference fails the test with the rendered text.
fn check(rel: &str, actual: &[u8]) {
    if let Err(e) = support::assert::golden(rel, actual) {
        panic!("{e}");
    }
}

#[test]
fn tenant_openclaw_config() {
    let alice = TenantName::parse("alice").unwrap();
    let text = ocusers::openclaw_config::render(&alice, 20000, None);
    check("tests/golden/openclaw.json", text.as_bytes());
    // A lean tier's tenant: the tier's allow-list, with device-pair (the
    // invites need it) added whether the tier lists it or not.
    let lean = ocusers::openclaw_config::render(&alice, 20000, Some(&["telegram".to_string()]));
    check("tests/golden/openclaw-lean.json", lean.as_bytes());
    let v: serde_json::Value = serde_json::from_str(&lean).unwrap();
    assert_eq!(
        v["plugins"]["allow"],
        serde_json::json!(["device-pair", "telegram"])
    );
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(v["plugins"].get("allow").is_none(), "{text}");
    // It must be JSON and carry no secret, only the reference to one.
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        v["gateway"]["auth"]["token"],
        serde_json::json!({"source": "env", "provider": "default", "id": "OPENCLAW_GATEWAY_TOKEN"})
    );
    assert_eq!(v["gateway"]["bind"], "loopback");
}

#[test]
fn tenant_env_file() {
    let mut env = EnvFile::default();
    env.set(secrets::TOKEN_KEY, &"0".repeat(64)).unwrap();
    env.set(secrets::PORT_KEY, "20000").unwrap();
    env.set(secrets::NODE_OPTIONS_KEY, "--max-old-space-size=1024")
        .unwrap();
    check("tests/golden/alice.env", env.render("alice").as_bytes());
}

#[test]
fn registry_entry() {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::new(dir.path());
    let name = TenantName::parse("alice").unwrap();
    let record = Record {
        name: name.clone(),
        port: 20000,
        block: 128,
        tier: "standard".into(),
        runtime: "2026.9.6".into(),
        created: "2026-11-22T23:00:00Z".into(),
        domains: Vec::new(),
        limits: Default::default(),
    };
    tenant::save(&paths, &record).unwrap();
    check(
        "tests/golden/registry-alice.toml",
        &std::fs::read(paths.registry_file(&name)).unwrap(),
    );
}

#[test]
fn man_pages() {
    // ocusers.1 plus one page per subcommand (ocusers-add.1, ...).
    let dir = tempfile::tempdir().unwrap();
    clap_mangen::generate_to(ocusers::cli::command(), dir.path()).unwrap();
    let mut pages: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    pages.sort();
    for sub in [
        "ocusers.1",
        "ocusers-add.1",
        "ocusers-remove.1",
        "ocusers-runtime-install.1",
    ] {
        assert!(pages.iter().any(|p| p == sub), "{sub} in {pages:?}");
    }
    for page in &pages {
        check(
            &format!("packaging/generated/man/{page}"),
            &std::fs::read(dir.path().join(page)).unwrap(),
        );
    }
    // No stale page left in the package.
    let shipped = std::fs::read_dir(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("packaging/generated/man"),
    )
    .unwrap()
    .count();
    assert_eq!(
        shipped,
        pages.len(),
        "packaging/generated/man has stale pages"
    );
}

#[test]
fn shell_completions() {
    use clap_complete::Shell;
    for (shell, file) in [
        (Shell::Bash, "ocusers.bash"),
        (Shell::Zsh, "_ocusers"),
        (Shell::Fish, "ocusers.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut ocusers::cli::command(), "ocusers", &mut buf);
        check(&format!("packaging/generated/{file}"), &buf);
    }
}

/// A stand-in for systemd with fixed answers: enough to pin the documented
/// `status --json` shape. The real D-Bus path is the system tier's job.
struct FixedSystemd(ocusers::systemd::UnitInfo);

impl ocusers::systemd::Systemd for FixedSystemd {
    fn unit(&self, _: &str) -> anyhow::Result<ocusers::systemd::UnitInfo> {
        Ok(self.0.clone())
    }
    fn unit_file_state(&self, _: &str) -> anyhow::Result<String> {
        Ok(self.0.unit_file_state.clone())
    }
    fn enable(&self, _: &str) -> anyhow::Result<()> {
        unreachable!()
    }
    fn disable(&self, _: &str) -> anyhow::Result<()> {
        unreachable!()
    }
    fn start(&self, _: &str) -> anyhow::Result<()> {
        unreachable!()
    }
    fn stop(&self, _: &str) -> anyhow::Result<()> {
        unreachable!()
    }
    fn restart(&self, _: &str) -> anyhow::Result<()> {
        unreachable!()
    }
    fn set_limits_and_bind(
        &self,
        _: &str,
        _: &ocusers::policy::Limits,
        _: &ocusers::systemd::SocketBind,
    ) -> anyhow::Result<()> {
        unreachable!()
    }
    fn reset_failed(&self, _: &str) -> anyhow::Result<()> {
        unreachable!()
    }
    fn active_state(&self, _: &str) -> anyhow::Result<String> {
        Ok(self.0.active_state.clone())
    }
    fn reload(&self, _: &str) -> anyhow::Result<()> {
        unreachable!()
    }
    fn daemon_reload(&self) -> anyhow::Result<()> {
        unreachable!()
    }
}

#[test]
fn status_json_shape() {
    // An empty root: no sleeper's drop-in, whatever the host has.
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::new(dir.path());
    let sd = FixedSystemd(ocusers::systemd::UnitInfo {
        load_state: "loaded".into(),
        active_state: "inactive".into(),
        sub_state: "dead".into(),
        unit_file_state: "enabled".into(),
        active_enter_usec: 0,
        main_pid: 0,
        n_restarts: 2,
        result: "success".into(),
        memory_current: None,
        memory_high: Some(1536 << 20),
        memory_max: Some(2 << 30),
        cpu_usage_nsec: Some(5_230_000_000),
        cpu_quota_per_sec_usec: Some(1_000_000),
        tasks_current: None,
        tasks_max: Some(512),
        control_group: String::new(),
    });
    let record = Record {
        name: TenantName::parse("alice").unwrap(),
        port: 20000,
        block: 128,
        tier: "standard".into(),
        runtime: "2026.9.6".into(),
        created: "2026-11-22T23:00:00Z".into(),
        domains: Vec::new(),
        limits: Default::default(),
    };
    let status =
        ocusers::status::collect_as(&paths, &sd, &record, ocusers::status::Probe::Gateways)
            .unwrap();
    let mut text = serde_json::to_string_pretty(&status).unwrap();
    text.push('\n');
    check("tests/golden/status-alice.json", text.as_bytes());

    // Run by a normal user: a running gateway's readiness is unknown (only
    // root may connect to a tenant's port), never "not ready".
    let running = FixedSystemd(ocusers::systemd::UnitInfo {
        active_state: "active".into(),
        sub_state: "running".into(),
        main_pid: 1234,
        ..sd.0.clone()
    });
    for status in [
        ocusers::status::collect_as(
            &paths,
            &running,
            &record,
            ocusers::status::Probe::NotAsThisUser,
        )
        .unwrap(),
        ocusers::status::collect_many_as(
            &paths,
            &running,
            std::slice::from_ref(&record),
            ocusers::status::Probe::NotAsThisUser,
        )
        .unwrap()
        .remove(0),
    ] {
        let mut text = serde_json::to_string_pretty(&status).unwrap();
        text.push('\n');
        check("tests/golden/status-alice-not-root.json", text.as_bytes());
    }
}

/// The nftables ruleset for three tenants, an allow-list and a local
/// resolver (`nft -f` of it is the VM tier's job; bench/firewall_load
/// times it at 200 tenants).
#[test]
fn firewall_ruleset() {
    use ocusers::config::AllowLocal;
    use ocusers::firewall::{Inputs, TenantRule, render};
    let t = |name: &str, first: u16, uid: u32| TenantRule {
        name: name.into(),
        first_port: first,
        last_port: first + 127,
        uid,
    };
    let inputs = Inputs {
        tenants: vec![
            t("alice", 20000, 998),
            t("bob", 20128, 997),
            t("carol", 20256, 996),
        ],
        allow: vec![
            AllowLocal::parse("127.0.0.1:11434").unwrap(),
            AllowLocal::parse("tcp/[::1]:8080").unwrap(),
        ],
        resolvers: vec!["127.0.0.53".parse().unwrap()],
    };
    check("tests/golden/firewall.nft", render(&inputs).as_bytes());
}

/// The proxy includes, per proxy and TLS mode, with one tenant's extra
/// domain: they list no tenant, only the domain and the extra domains.
#[test]
fn proxy_includes() {
    use ocusers::proxy::{Kind, ProxyConfig, Tls};
    let base = ProxyConfig {
        domain: "test.internal".into(),
        kind: Kind::Caddy,
        tls: Tls::Internal,
        cert_file: String::new(),
        key_file: String::new(),
        listen: vec!["127.0.0.1".into(), "::1".into()],
        public_port: 443,
        caddy_config: "/etc/caddy/Caddyfile".into(),
        caddy_include: "/etc/caddy/ocusers.caddy".into(),
        nginx_include: "/etc/nginx/conf.d/ocusers.conf".into(),
    };
    let extra = ["alice.example.org".to_string()];
    check(
        "tests/golden/proxy/caddy-internal.caddy",
        base.render(&extra).as_bytes(),
    );
    let acme = ProxyConfig {
        tls: Tls::Acme,
        listen: vec![],
        domain: "example.com".into(),
        ..base.clone()
    };
    check(
        "tests/golden/proxy/caddy-acme.caddy",
        acme.render(&[]).as_bytes(),
    );
    let files = ProxyConfig {
        tls: Tls::Files,
        cert_file: "/etc/ssl/ocusers/wildcard.pem".into(),
        key_file: "/etc/ssl/ocusers/wildcard.key".into(),
        ..base.clone()
    };
    assert_eq!(files.problem(), None);
    check(
        "tests/golden/proxy/caddy-files.caddy",
        files.render(&extra).as_bytes(),
    );
    let nginx = ProxyConfig {
        kind: Kind::Nginx,
        ..files.clone()
    };
    assert_eq!(nginx.problem(), None);
    check(
        "tests/golden/proxy/nginx.conf",
        nginx.render(&extra).as_bytes(),
    );
    let nginx_all = ProxyConfig {
        listen: vec![],
        ..nginx
    };
    check(
        "tests/golden/proxy/nginx-all-addresses.conf",
        nginx_all.render(&[]).as_bytes(),
    );
    // No tenant name appears: adding one never changes these files.
    for text in [base.render(&extra), nginx_all.render(&[])] {
        assert!(!text.contains("alice.test.internal"), "{text}");
    }
}

/// The public-origin files a tenant's config includes: on a proxy at HTTPS
/// port 19443 with one extra domain, and with public access off.
#[test]
fn public_origin_files() {
    use ocusers::proxy::{Kind, ProxyConfig, Tls, origins};
    let on = ProxyConfig {
        domain: "test.internal".into(),
        kind: Kind::Caddy,
        tls: Tls::Internal,
        cert_file: String::new(),
        key_file: String::new(),
        listen: vec![],
        public_port: 19443,
        caddy_config: "/etc/caddy/Caddyfile".into(),
        caddy_include: "/etc/caddy/ocusers.caddy".into(),
        nginx_include: "/etc/nginx/conf.d/ocusers.conf".into(),
    };
    let off = ProxyConfig {
        domain: String::new(),
        ..on.clone()
    };
    let record = Record {
        name: TenantName::parse("alice").unwrap(),
        port: 20000,
        block: 128,
        tier: "standard".into(),
        runtime: "2026.9.6".into(),
        created: "2026-12-01T00:00:00Z".into(),
        domains: vec!["alice.example.org".into()],
        limits: Default::default(),
    };
    for (cfg, dir) in [(&on, "on-19443"), (&off, "off")] {
        for (file, text) in origins::render(cfg, &record) {
            check(
                &format!("tests/golden/origins/{dir}/{file}"),
                text.as_bytes(),
            );
        }
    }
    assert_eq!(
        ocusers::proxy::public_origins(&on, &record),
        [
            "https://alice.test.internal:19443",
            "https://alice.example.org:19443"
        ]
    );
}
