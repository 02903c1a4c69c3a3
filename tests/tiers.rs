//! The system and VM tiers are libtest-mimic programs: with cargo's default
//! harness they compile, find no `#[test]` functions and "pass" with 0 tests,
//! which once happened silently after a merge. Cargo.toml must keep
//! `harness = false` on both.
#[test]
fn system_and_vm_tiers_run_their_own_harness() {
    let manifest =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    let doc: toml::Table = manifest.parse().unwrap();
    let tests = doc["test"]
        .as_array()
        .expect("[[test]] entries in Cargo.toml");
    for tier in ["system", "vm"] {
        let entry = tests
            .iter()
            .find(|t| t["name"].as_str() == Some(tier))
            .unwrap_or_else(|| panic!("no [[test]] named {tier} in Cargo.toml"));
        assert_eq!(
            entry.get("harness").and_then(|h| h.as_bool()),
            Some(false),
            "[[test]] {tier} needs `harness = false`, or it runs 0 tests and passes"
        );
    }
}
