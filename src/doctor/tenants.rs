//! The per-tenant checks: the tenant's files, its public origins, the
//! hazards in its state, and leftovers of tenants without a registry entry.
use super::*;

/// The tenant's user, state directory, secrets file: as its registry
/// entry says they should be.
pub fn tenant_files(paths: &Paths, r: &Record) -> Vec<Check> {
    let mut problems = Vec::new();
    let user = paths::user_name(&r.name);
    let account = identity::lookup(&user);
    match &account {
        None => problems.push(format!(
            "user {user} is missing (registry entry without a user)"
        )),
        Some(a) if a.home != paths::home_dir(&r.name) => problems.push(format!(
            "user {user} has home {}, not {}",
            a.home.display(),
            paths::home_dir(&r.name).display()
        )),
        Some(_) => {}
    }
    // By descriptor, without following a link (see src/safefs.rs).
    let state = paths.state_dir(&r.name);
    let stat = crate::safefs::Dir::open_trusted(&paths.state_parent())
        .and_then(|p| p.stat(Path::new(r.name.as_str())));
    match stat {
        Ok(None) => problems.push(format!("state directory {} is missing", state.display())),
        Err(_) if !crate::fsutil::exists(&paths.state_parent()) => {
            problems.push(format!("state directory {} is missing", state.display()))
        }
        Err(e) => problems.push(e.to_string()),
        Ok(Some(st)) if crate::safefs::Kind::of(&st) != crate::safefs::Kind::Dir => {
            problems.push(format!(
                "state directory {} is {}, not a directory",
                state.display(),
                crate::safefs::Kind::of(&st).article()
            ))
        }
        Ok(Some(st)) => {
            if let Some(a) = &account
                && (st.st_uid != a.uid || st.st_mode & 0o7777 != 0o700)
            {
                problems.push(format!(
                    "state directory {} is not 0700 {user}",
                    state.display()
                ));
            }
        }
    }
    // The compile cache (made by systemd at the first start): if there, a
    // directory of the tenant's own, 0700, not a link.
    let cache = paths.cache_dir(&r.name);
    let cache_state = statedir::cache_dir(paths, &r.name);
    if cache_state == statedir::CacheDir::NotDir
        || (matches!(cache_state, statedir::CacheDir::Dir { .. })
            && account
                .as_ref()
                .is_some_and(|a| !cache_state.is_sound_for(a)))
    {
        problems.push(format!(
            "compile cache {} is not a 0700 directory of {user}",
            cache.display()
        ));
    }
    let env = paths.secrets_file(&r.name);
    match std::fs::metadata(&env) {
        Err(_) => problems.push(format!("secrets file {} is missing", env.display())),
        Ok(m) if m.uid() != 0 || m.mode() & 0o077 != 0 => {
            problems.push(format!("secrets file {} is not 0600 root", env.display()))
        }
        Ok(_) => {}
    }
    if problems.is_empty() {
        vec![about(
            ok(
                "tenant",
                format!("{}: user, state, secrets and registry agree", r.name),
            ),
            &r.name,
        )]
    } else {
        vec![about(
            bad(
                Status::Fail,
                "tenant",
                format!("{}: {}", r.name, problems.join("; ")),
                "`sudo ocusers repair` recreates what is missing from the registry entry",
            ),
            &r.name,
        )]
    }
}

/// The tenant's public origins: the root-owned files are what its domains
/// and `[proxy]` make, and (as root, by descriptor) its `openclaw.json`
/// still includes them. A config without the includes is the tenant's own
/// doing or from before ocusers wrote them: a warning, with the fix.
pub fn origins(paths: &Paths, cfg: &crate::proxy::ProxyConfig, r: &Record) -> Check {
    use crate::proxy::origins;
    let drift = origins::drift(paths, cfg, r);
    if !drift.is_empty() {
        return about(
            bad(
                Status::Fail,
                "origins",
                format!(
                    "{}: {} (the Control UI in a browser through the proxy is refused from an origin not listed)",
                    r.name,
                    drift.join("; ")
                ),
                "`sudo ocusers repair` (or `sudo ocusers proxy sync`) writes them from the registry",
            ),
            &r.name,
        );
    }
    let listed = match origins::public_origins(cfg, r) {
        o if o.is_empty() => "public access is off".to_string(),
        o => o.join(", "),
    };
    if nix::unistd::geteuid().is_root()
        && let Ok(Some(text)) = statedir::read_config(paths, &r.name)
    {
        let missing = origins::missing_includes(&r.name, &text);
        if !missing.is_empty() {
            return about(
                bad(
                    Status::Warn,
                    "origins",
                    format!(
                        "{}: {}/openclaw.json does not include its public origins at {} ({listed})",
                        r.name,
                        paths.state_dir(&r.name).display(),
                        missing.join(", ")
                    ),
                    format!(
                        "`sudo ocusers repair` puts them back as {} (its own `openclaw config patch`); without them its browser access through the proxy is refused",
                        r.name
                    ),
                ),
                &r.name,
            );
        }
    }
    about(ok("origins", format!("{}: {listed}", r.name)), &r.name)
}

/// How long doctor scans tenants' state in all.
pub(super) const STATE_SCAN_BUDGET: std::time::Duration = std::time::Duration::from_secs(30);

/// What in the tenant's state root will not follow or open: links that
/// point outside it, FIFOs, sockets, devices (a warning: it is the tenant's
/// own directory). Only as root (the state is 0700); the scan is bounded
/// (see [`crate::statedir::scan_limits`]) and says when it was cut.
pub fn state_hazards(paths: &Paths, r: &Record, max_time: std::time::Duration) -> Option<Check> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let account = identity::lookup(&paths::user_name(&r.name))?;
    let line = crate::statedir::hazards(paths, &r.name, &account, max_time)?;
    Some(about(
        bad(
            Status::Warn,
            "state",
            format!("{}: {line}", r.name),
            format!(
                "the tenant's own files; if they are not wanted, remove them as the tenant (`sudo ocusers exec {} -- rm PATH`)",
                r.name
            ),
        ),
        &r.name,
    ))
}

/// Tenant leftovers without a registry entry: users, secrets files, state.
pub fn orphan_names(paths: &Paths, records: &[Record]) -> BTreeSet<String> {
    let known: BTreeSet<&str> = records.iter().map(|r| r.name.as_str()).collect();
    let mut names = BTreeSet::new();
    let passwd = std::fs::read_to_string(paths.root().join("etc/passwd")).unwrap_or_default();
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() > 5
            && let Some(n) = f[0].strip_prefix(paths::USER_PREFIX)
            && let Ok(name) = TenantName::parse(n)
            && Path::new(f[5]) == paths::home_dir(&name)
        {
            names.insert(n.to_string());
        }
    }
    if let Ok(rd) = std::fs::read_dir(paths.secrets_dir()) {
        for e in rd.flatten() {
            if let Some(n) = e.file_name().to_str().and_then(|n| n.strip_suffix(".env")) {
                names.insert(n.to_string());
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir(paths.state_parent()) {
        for e in rd.flatten() {
            if let Some(n) = e.file_name().to_str() {
                names.insert(n.to_string());
            }
        }
    }
    names.retain(|n| !known.contains(n.as_str()) && TenantName::parse(n).is_ok());
    names
}

pub(super) fn orphans(paths: &Paths, records: &[Record]) -> Vec<Check> {
    orphan_names(paths, records)
        .into_iter()
        .map(|n| Check {
            check: "tenant".into(),
            status: Status::Fail,
            tenant: Some(n.clone()),
            detail: format!(
                "{n}: a user, secrets file or state directory without a registry entry"
            ),
            fix: Some(format!(
                "`sudo ocusers remove {n}` (archives the state) or `sudo ocusers repair --remove-orphans`"
            )),
            blocks_left: None,
        })
        .collect()
}
