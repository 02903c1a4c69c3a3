use super::*;

#[test]
fn non_cgroup2_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let c = cgroups(dir.path());
    assert_eq!(c.status, Status::Warn);
    assert!(c.fix.is_some());
}

#[test]
fn registry_entry_without_user_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::new(dir.path());
    let r = Record {
        name: TenantName::parse("ghost-tenant").unwrap(),
        port: 20000,
        block: 128,
        tier: "standard".into(),
        runtime: "2026.9.6".into(),
        created: "x".into(),
        domains: Vec::new(),
        limits: Default::default(),
    };
    let c = &tenant_files(&paths, &r)[0];
    assert_eq!(c.status, Status::Fail);
    assert!(
        c.detail.contains("user oc-ghost-tenant is missing"),
        "{}",
        c.detail
    );
    let rt = runtimes(&paths, std::slice::from_ref(&r));
    assert!(
        rt.iter()
            .any(|c| c.status == Status::Fail && c.detail.contains("missing runtime")),
        "{rt:?}"
    );
    std::fs::create_dir_all(paths.secrets_dir()).unwrap();
    std::fs::write(paths.secrets_dir().join("zed.env"), "").unwrap();
    assert_eq!(
        orphan_names(&paths, &[r]).into_iter().collect::<Vec<_>>(),
        ["zed"]
    );
}

#[test]
fn pool_says_blocks_left_and_warns_of_the_ephemeral_range() {
    let pool = crate::config::PortsConfig {
        start: 20000,
        end: 20511,
        block: 128,
    };
    let r = Record {
        name: TenantName::parse("alice").unwrap(),
        port: 20128,
        block: 128,
        tier: "standard".into(),
        runtime: "2026.9.6".into(),
        created: "x".into(),
        domains: Vec::new(),
        limits: Default::default(),
    };
    let live = [20300].into();
    let c = pool_checks(&pool, std::slice::from_ref(&r), &live, Some((32768, 60999)));
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0].status, Status::Ok);
    assert_eq!(c[0].blocks_left, Some(2));
    assert!(
        c[0].detail.contains("2 of 4 port blocks left"),
        "{}",
        c[0].detail
    );
    let json = serde_json::to_value(&c[0]).unwrap();
    assert_eq!(json["blocks_left"], 2);

    let c = pool_checks(&pool, &[], &Default::default(), Some((20400, 60999)));
    assert_eq!(c[0].blocks_left, Some(4));
    assert_eq!(c[1].status, Status::Warn);
    assert!(c[1].detail.contains("20400-20511"), "{}", c[1].detail);
    assert!(c[1].fix.as_deref().unwrap().contains("ip_local_port_range"));

    let full = [
        r.clone(),
        Record {
            port: 20000,
            ..r.clone()
        },
        Record {
            port: 20256,
            ..r.clone()
        },
        Record { port: 20384, ..r },
    ];
    let c = pool_checks(&pool, &full, &Default::default(), None);
    assert_eq!(
        (c.len(), c[0].status, c[0].blocks_left),
        (1, Status::Warn, Some(0))
    );
}

#[test]
fn a_cache_link_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::new(dir.path());
    // A link is never the tenant's directory, whoever the user is.
    let r = Record {
        name: TenantName::parse("linked").unwrap(),
        port: 20000,
        block: 128,
        tier: "standard".into(),
        runtime: "2026.9.6".into(),
        created: "x".into(),
        domains: Vec::new(),
        limits: Default::default(),
    };
    std::fs::create_dir_all(paths.cache_parent()).unwrap();
    std::os::unix::fs::symlink("/etc", paths.cache_dir(&r.name)).unwrap();
    let c = tenant_files(&paths, &r);
    assert!(
        c.iter().any(|c| c.detail.contains("compile cache")),
        "{c:?}"
    );
}
