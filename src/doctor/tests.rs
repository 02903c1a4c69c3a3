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
