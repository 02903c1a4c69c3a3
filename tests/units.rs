//! The shipped units state the decisions that keep tenants apart. These
//! checks read the files; the system tier proves them on a real systemd with
//! the real gateway (and `systemd-analyze security`).
use std::path::PathBuf;

fn unit(name: &str) -> Vec<(String, String)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("units")
        .join(name);
    std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("{name}: {l}"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn values<'a>(u: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    u.iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

#[test]
fn template_identity_and_supervision() {
    let u = unit("openclaw@.service");
    for (key, want) in [
        ("User", "oc-%i"),
        ("Group", "oc-%i"),
        ("Slice", "openclaw.slice"),
        ("PartOf", "openclaw.target"),
        ("WantedBy", "openclaw.target"),
        ("EnvironmentFile", "/etc/ocusers/tenants/%i.env"),
        ("Restart", "always"),
        ("RestartPreventExitStatus", "78"),
        ("StateDirectoryMode", "0700"),
        ("UMask", "0077"),
        ("MemorySwapMax", "0"),
    ] {
        assert_eq!(values(&u, key), [want], "{key}");
    }
    // Secrets only through the root-only file: no Environment= line may
    // carry a token or key (Environment= is readable over D-Bus by anyone).
    for env in values(&u, "Environment") {
        let upper = env.to_uppercase();
        assert!(
            !upper.contains("TOKEN") && !upper.contains("KEY") && !upper.contains("PASSWORD"),
            "{env}"
        );
    }
    let exec = values(&u, "ExecStart")[0];
    assert!(exec.contains("--bind loopback"), "{exec}");
    assert!(exec.contains("${OCUSERS_PORT}"), "{exec}");
    assert!(!exec.contains("token"), "{exec}");
}

/// The restart contract (threat model rule 5): a gateway that exits for a
/// supervisor restart (status 0) comes back, a configuration error (78)
/// does not loop, and a crash loop ends at a start limit.
#[test]
fn template_restart_contract() {
    let u = unit("openclaw@.service");
    assert_eq!(values(&u, "Restart"), ["always"]);
    assert_eq!(values(&u, "RestartPreventExitStatus"), ["78"]);
    let burst: u32 = values(&u, "StartLimitBurst")[0].parse().unwrap();
    assert!((1..=20).contains(&burst), "StartLimitBurst={burst}");
    assert!(!values(&u, "StartLimitIntervalSec").is_empty());
    // The restart is systemd's (a new process, a fresh V8 heap), not the
    // gateway's in-process one (OPENCLAW_NO_RESPAWN), which keeps the old
    // process and what it leaked.
    for env in values(&u, "Environment") {
        assert!(!env.starts_with("OPENCLAW_NO_RESPAWN"), "{env}");
    }
}

#[test]
fn template_sandbox() {
    let u = unit("openclaw@.service");
    for key in [
        "NoNewPrivileges",
        "PrivateTmp",
        "PrivateDevices",
        "ProtectHome",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectKernelLogs",
        "ProtectControlGroups",
        "ProtectClock",
        "ProtectHostname",
        "RestrictRealtime",
        "RestrictNamespaces",
        "LockPersonality",
    ] {
        assert_eq!(values(&u, key), ["yes"], "{key}");
    }
    assert_eq!(values(&u, "ProtectSystem"), ["strict"]);
    assert_eq!(values(&u, "ProtectProc"), ["invisible"]);
    assert_eq!(values(&u, "CapabilityBoundingSet"), [""]);
    assert!(values(&u, "SystemCallFilter").contains(&"@system-service"));
    assert!(values(&u, "SystemCallFilter").contains(&"~@privileged @resources"));
    // Other tenants' state directories are not even visible by name.
    // The host's /dev/shm (which PrivateDevices= binds in) is replaced by one
    // of the unit's own.
    assert_eq!(
        values(&u, "TemporaryFileSystem"),
        [
            "/dev/shm:mode=1777,size=256M,nosuid,nodev,noexec",
            "/var/lib/openclaw:ro",
            "/var/cache/openclaw:ro"
        ]
    );
    // The admin's files: secrets, registry, archives and backups of every
    // tenant (only the runtimes under /var/lib/ocusers stay visible).
    for path in [
        "/etc/ocusers",
        "/var/lib/ocusers/tenants",
        "/var/lib/ocusers/archive",
        "/var/lib/ocusers/backups",
    ] {
        assert!(
            values(&u, "InaccessiblePaths")[0]
                .split_whitespace()
                .any(|p| p.trim_start_matches('-') == path),
            "{path} not in InaccessiblePaths"
        );
    }
    // Known to break the real gateway (README, "Sandbox"): must stay off.
    assert!(
        values(&u, "RestrictSUIDSGID").is_empty(),
        "breaks openat2 in the gateway"
    );
    assert!(
        values(&u, "MemoryDenyWriteExecute").is_empty(),
        "breaks V8's JIT"
    );
}

#[test]
fn target_and_slice() {
    let t = unit("openclaw.target");
    assert_eq!(values(&t, "WantedBy"), ["multi-user.target"]);
    let s = unit("openclaw.slice");
    assert!(values(&s, "Description")[0].contains("OpenClaw"));
}

#[test]
fn firewall_unit_loads_the_generated_table_before_tenants() {
    let u = unit("ocusers-firewall.service");
    assert_eq!(values(&u, "Type"), ["oneshot"]);
    assert_eq!(values(&u, "RemainAfterExit"), ["yes"]);
    assert_eq!(
        values(&u, "ExecStart"),
        ["/usr/sbin/nft -f /var/lib/ocusers/firewall.nft"]
    );
    // After nftables.service (whose config usually flushes the ruleset) and
    // reloaded with it; before any gateway.
    assert!(values(&u, "After")[0].contains("nftables.service"));
    assert_eq!(values(&u, "ReloadPropagatedFrom"), ["nftables.service"]);
    assert!(values(&u, "Before")[0].contains("openclaw.target"));
    assert_eq!(values(&u, "WantedBy"), ["multi-user.target"]);
    let t = unit("openclaw@.service");
    assert_eq!(values(&t, "Wants"), ["ocusers-firewall.service"]);
    assert_eq!(
        values(&t, "After"),
        ["network.target", "ocusers-firewall.service"]
    );
}

#[test]
fn slice_caps_all_tenants_below_the_host() {
    let s = unit("openclaw.slice");
    assert_eq!(values(&s, "MemoryMax"), ["90%"]);
    assert_eq!(values(&s, "MemoryHigh"), ["85%"]);
    assert_eq!(values(&s, "MemorySwapMax"), ["0"]);
}

#[test]
fn metrics_timer_writes_the_textfile() {
    let s = unit("ocusers-metrics.service");
    assert_eq!(values(&s, "Type"), ["oneshot"]);
    assert_eq!(
        values(&s, "ExecStart"),
        ["/usr/bin/ocusers metrics --textfile /var/lib/prometheus/node-exporter/ocusers.prom"]
    );
    assert_eq!(values(&s, "CapabilityBoundingSet"), [""]);
    let t = unit("ocusers-metrics.timer");
    assert_eq!(values(&t, "OnUnitActiveSec"), ["30s"]);
    assert_eq!(values(&t, "WantedBy"), ["timers.target"]);
}

/// Caddy's on-demand `ask` endpoint: socket-activated, one sandboxed
/// process per request, no daemon; loopback only.
#[test]
fn ask_endpoint_units() {
    let s = unit("ocusers-ask.socket");
    assert_eq!(values(&s, "ListenStream"), ["127.0.0.1:9123"]);
    assert_eq!(values(&s, "Accept"), ["yes"]);
    assert_eq!(values(&s, "WantedBy"), ["sockets.target"]);
    let u = unit("ocusers-ask@.service");
    assert_eq!(values(&u, "ExecStart"), ["/usr/bin/ocusers proxy ask"]);
    assert_eq!(values(&u, "StandardInput"), ["socket"]);
    // Logs must not end up in the HTTP answer.
    assert_eq!(values(&u, "StandardError"), ["journal"]);
    for (key, want) in [
        ("DynamicUser", "yes"),
        ("PrivateNetwork", "yes"),
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("TemporaryFileSystem", "/var/lib:ro"),
        ("BindReadOnlyPaths", "-/var/lib/ocusers/proxy/hosts"),
    ] {
        assert_eq!(values(&u, key), [want], "{key}");
    }
    assert_eq!(ocusers::proxy::ask::ADDR, "127.0.0.1:9123");
}

#[test]
fn invite_endpoint_units() {
    let s = unit("ocusers-invite.socket");
    assert_eq!(values(&s, "ListenStream"), [ocusers::invite::ADDR]);
    assert_eq!(values(&s, "Accept"), ["yes"]);
    let u = unit("ocusers-invite@.service");
    assert_eq!(values(&u, "ExecStart"), ["/usr/bin/ocusers invite-serve"]);
    assert_eq!(values(&u, "StandardInput"), ["socket"]);
    // Logs must not end up in the HTTP answer.
    assert_eq!(values(&u, "StandardError"), ["journal"]);
    for (key, want) in [
        ("CapabilityBoundingSet", ""),
        ("PrivateNetwork", "yes"),
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("RestrictAddressFamilies", "AF_UNIX"),
        ("ReadWritePaths", "-/var/lib/ocusers/invites"),
        ("InaccessiblePaths", "-/var/lib/openclaw"),
    ] {
        assert_eq!(values(&u, key), [want], "{key}");
    }
}

/// Every path and name the template spells out for instance `%i` is the one
/// the library computes for that tenant (`Paths` at `/`, `paths::*`,
/// `runtime`, `origins`): the unit and the code cannot drift apart.
#[test]
fn template_paths_are_the_librarys() {
    use ocusers::paths::{self, Paths};
    use ocusers::tenant::TenantName;
    let name = TenantName::parse("alice").unwrap();
    let p = Paths::new("/");
    let u: Vec<(String, String)> = unit("openclaw@.service")
        .into_iter()
        .map(|(k, v)| (k, v.replace("%i", name.as_str())))
        .collect();
    let one = |key: &str| -> String {
        let v = values(&u, key);
        assert_eq!(v.len(), 1, "{key}: {v:?}");
        v[0].to_string()
    };
    let env = |var: &str| -> String {
        let prefix = format!("{var}=");
        let v: Vec<&str> = values(&u, "Environment")
            .into_iter()
            .filter_map(|e| e.strip_prefix(prefix.as_str()))
            .collect();
        assert_eq!(v.len(), 1, "Environment={var}: {v:?}");
        v[0].to_string()
    };
    let s = |p: std::path::PathBuf| p.display().to_string();
    let state = s(p.state_dir(&name));
    let link = s(p.tenant_runtime_link(&name));
    assert_eq!(one("User"), paths::user_name(&name));
    assert_eq!(one("Group"), paths::user_name(&name));
    assert_eq!(one("EnvironmentFile"), s(p.secrets_file(&name)));
    assert_eq!(one("AssertPathExists"), s(p.secrets_file(&name)));
    assert_eq!(one("AssertPathIsDirectory"), format!("{link}/"));
    assert_eq!(one("WorkingDirectory"), state);
    assert_eq!(
        format!("/var/lib/{}", one("StateDirectory")),
        state,
        "StateDirectory= is relative to /var/lib"
    );
    assert_eq!(s(paths::home_dir(&name)), state);
    // The compile cache: the tenant's CacheDirectory=, which Node uses
    // (NODE_COMPILE_CACHE) with OpenClaw's launcher told not to respawn.
    let cache = s(p.cache_dir(&name));
    assert_eq!(
        format!("/var/cache/{}", one("CacheDirectory")),
        cache,
        "CacheDirectory= is relative to /var/cache"
    );
    assert_eq!(one("CacheDirectoryMode"), "0700");
    assert_eq!(env("NODE_COMPILE_CACHE"), cache);
    assert_eq!(env("OPENCLAW_PACKAGED_COMPILE_CACHE_RESPAWNED"), "1");
    assert_eq!(s(p.cache_parent()), "/var/cache/openclaw");
    assert_eq!(env("HOME"), state);
    assert_eq!(env("OPENCLAW_STATE_DIR"), state);
    assert_eq!(
        env("OPENCLAW_CONFIG_PATH"),
        s(p.state_dir(&name).join(ocusers::statedir::CONFIG))
    );
    assert_eq!(
        env("OPENCLAW_INCLUDE_ROOTS"),
        ocusers::proxy::origins::dir_of(&name)
    );
    assert!(
        env("PATH").starts_with(&format!("{link}/node_modules/.bin:")),
        "{}",
        env("PATH")
    );
    let prefix = p.tenant_runtime_link(&name);
    let exec = one("ExecStart");
    let mut words = exec.split_whitespace();
    assert_eq!(
        words.next(),
        Some(s(ocusers::runtime::node_bin(&prefix)).as_str())
    );
    assert_eq!(
        words.next(),
        Some(s(ocusers::runtime::openclaw_entry(&prefix)).as_str())
    );
    assert!(
        exec.contains(&format!("${{{}}}", ocusers::secrets::PORT_KEY)),
        "{exec}"
    );
    assert_eq!(
        paths::unit_name(&name),
        format!("openclaw@{}.service", name.as_str())
    );
}
