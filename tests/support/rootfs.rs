//! The cached Debian 12 root every heavy tier starts from (the system tier's containers copy
//! it, the VM tier's image is upgraded from it): [`ensure_base_root`] builds it once with
//! debootstrap (cached under [`CACHE_DIR`], flock-guarded, atomically renamed into place), a
//! Debian 12 minbase root with [`BASE_INCLUDE`], an up-to-date apt list and the `npm` package
//! with all its dependencies pre-downloaded (not installed) in `/var/cache/apt/archives`.
//! Everything needs root; a missing prerequisite is an error that says how to fix it, never a
//! skip.
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::process::{du_mb, effective_uid, remove_tree, require_tools, run_logged, write_file};
/// Packages debootstrap adds to the minbase variant.
pub const BASE_INCLUDE: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "dbus",
    "passwd",
    "ca-certificates",
    "procps",
    "iproute2",
    "curl",
    "util-linux",
    "less",
];
/// Debian suite of the base root.
pub const SUITE: &str = "bookworm";
/// Bump when the way the base root is built changes (part of the cache key).
const BASE_FORMAT: u32 = 1;
/// Packages downloaded (not installed) into the base root's apt archive cache:
/// the .deb's Depends and Recommends that minbase lacks, so a container on
/// a private network (the bench, a second host) can install the .deb.
const PREDOWNLOAD: &[&str] = &["npm", "nftables"];
/// Everything the tests cache on the host.
pub const CACHE_DIR: &str = "/var/cache/ocusers-tests";
/// Host dir bound to the container's `/root/.npm`, shared by all runs and containers.
pub const NPM_CACHE_DIR: &str = "/var/cache/ocusers-tests/npm-cache";
/// Host CA bundle; registry TLS is only trusted through it on these machines.
pub const HOST_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// `PATH` of commands run inside a root (chroot, container).
pub const PATH_ENV: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Fails (with how to fix it) unless we are root and the host tools exist.
pub fn require_prerequisites() -> Result<(), String> {
    static CHECK: OnceLock<Result<(), String>> = OnceLock::new();
    CHECK
        .get_or_init(|| {
            let mut problems = Vec::new();
            match effective_uid() {
                Some(0) => {}
                Some(uid) => problems.push(format!(
                    "the system tests need root (euid is {uid}): run them as root, e.g. `sudo -E cargo test --test system`"
                )),
                None => problems.push("cannot read the euid from /proc/self/status".to_string()),
            }
            if !Path::new(HOST_CA_BUNDLE).is_file() {
                problems.push(format!(
                    "{HOST_CA_BUNDLE} is missing on the host: `apt-get install ca-certificates`"
                ));
            }
            require_tools(
                "system test",
                &[
                    ("debootstrap", "debootstrap"),
                    ("systemd-nspawn", "systemd-container"),
                    ("nsenter", "util-linux"),
                    ("setpriv", "util-linux"),
                    ("chroot", "coreutils"),
                    ("kill", "procps"),
                    ("du", "coreutils"),
                ],
                problems,
            )
        })
        .clone()
}
///
/// Returns `/var/cache/ocusers-tests/base-<key>`, where `<key>` hashes [`BASE_INCLUDE`], the suite,
/// the pre-downloaded packages and a format version. Treat the result as read-only.
pub fn ensure_base_root() -> Result<PathBuf, String> {
    require_prerequisites()?;
    let cache = Path::new(CACHE_DIR);
    fs::create_dir_all(cache).map_err(|e| format!("cannot create {CACHE_DIR}: {e}"))?;
    let key = base_key();
    let final_dir = cache.join(format!("base-{key}"));
    if final_dir.is_dir() {
        return Ok(final_dir);
    }
    let lock_path = cache.join("base.lock");
    let _lock = crate::support::process::lock_exclusive(&lock_path)?;
    if final_dir.is_dir() {
        return Ok(final_dir); // another test run built it while we waited
    }
    // Under the lock, any build dir is a leftover of a crashed build.
    let tmp = cache.join(format!(".build-base-{key}"));
    if tmp.exists() {
        remove_tree(&tmp)?;
    }
    let log = cache.join(format!(".build-base-{key}.log"));
    let mirror = debian_mirror()?;
    eprintln!(
        "[container] building base root {} from {mirror} (once; takes about a minute)",
        final_dir.display()
    );
    let started = Instant::now();

    let mut debootstrap = Command::new("debootstrap");
    debootstrap
        .arg("--variant=minbase")
        .arg(format!("--include={}", BASE_INCLUDE.join(",")))
        .arg(SUITE)
        .arg(&tmp)
        .arg(&mirror);
    run_logged(debootstrap, &log, Duration::from_secs(1800))?;

    // Inside the root, as the tests will use it later.
    let chroot_env = [
        ("PATH", PATH_ENV),
        ("LANG", "C.UTF-8"),
        ("DEBIAN_FRONTEND", "noninteractive"),
    ];
    let mut update = Command::new("chroot");
    update
        .arg(&tmp)
        .args(["apt-get", "update"])
        .env_clear()
        .envs(chroot_env);
    run_logged(update, &log, Duration::from_secs(600))?;
    // Depends and Recommends, so a later `apt-get install` of them needs no network.
    let mut download = Command::new("chroot");
    download
        .arg(&tmp)
        .args(["apt-get", "install", "--download-only", "-y"])
        .args(PREDOWNLOAD)
        .env_clear()
        .envs(chroot_env);
    run_logged(download, &log, Duration::from_secs(1200))?;

    // Per-container identity is given at boot; do not bake the host's into the base.
    write_file(&tmp.join("etc/machine-id"), "", 0o444)?;
    let _ = fs::remove_file(tmp.join("etc/hostname"));
    let build_secs = started.elapsed().as_secs_f64();
    write_file(
        &tmp.join(".ocusers-base"),
        &format!(
            "key={key}\nsuite={SUITE}\nmirror={mirror}\ninclude={}\npredownload={}\nbuild_seconds={build_secs:.1}\n",
            BASE_INCLUDE.join(","),
            PREDOWNLOAD.join(",")
        ),
        0o644,
    )?;
    fs::rename(&tmp, &final_dir).map_err(|e| {
        format!(
            "cannot rename {} to {}: {e}",
            tmp.display(),
            final_dir.display()
        )
    })?;
    let _ = fs::remove_file(&log);
    eprintln!(
        "[container] base root built in {build_secs:.1}s, {} MB: {}",
        du_mb(&final_dir),
        final_dir.display()
    );
    Ok(final_dir)
}

/// Cache key of the base root: FNV-1a over everything that shapes its content.
pub fn base_key() -> String {
    let spec = format!(
        "format={BASE_FORMAT};suite={SUITE};variant=minbase;include={};predownload={}",
        BASE_INCLUDE.join(","),
        PREDOWNLOAD.join(",")
    );
    cache_key(&spec)
}

/// FNV-1a of `spec`, 48 bits in hex: the cache keys under [`CACHE_DIR`] (do not change it, or
/// every cached root and image is rebuilt).
pub fn cache_key(spec: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in spec.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:012x}", hash >> 16)
}

/// The Debian mirror the host's apt uses for `bookworm` (`$OCUSERS_TEST_DEBIAN_MIRROR` overrides).
pub fn debian_mirror() -> Result<String, String> {
    if let Ok(mirror) = std::env::var("OCUSERS_TEST_DEBIAN_MIRROR")
        && !mirror.is_empty()
    {
        return Ok(mirror);
    }
    let is_debian = |uri: &str| {
        (uri.starts_with("http://") || uri.starts_with("https://"))
            && uri.trim_end_matches('/').ends_with("/debian")
    };
    let mut files: Vec<PathBuf> = fs::read_dir("/etc/apt/sources.list.d")
        .map(|dir| dir.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    // deb822 *.sources first, then one-line sources.list and *.list files.
    for path in files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "sources"))
    {
        let text = fs::read_to_string(path).unwrap_or_default();
        for stanza in text.split("\n\n") {
            let mut fields: HashMap<String, String> = HashMap::new();
            let mut last = String::new();
            for line in stanza.lines() {
                if line.trim_start().starts_with('#') || line.trim().is_empty() {
                    continue;
                }
                if line.starts_with([' ', '\t']) {
                    if let Some(value) = fields.get_mut(&last) {
                        value.push(' ');
                        value.push_str(line.trim());
                    }
                } else if let Some((k, v)) = line.split_once(':') {
                    last = k.trim().to_ascii_lowercase();
                    fields.insert(last.clone(), v.trim().to_string());
                }
            }
            let has = |field: &str, word: &str| {
                fields
                    .get(field)
                    .is_some_and(|v| v.split_whitespace().any(|w| w == word))
            };
            if !has("types", "deb") || !has("suites", SUITE) || has("enabled", "no") {
                continue;
            }
            if let Some(uri) = fields
                .get("uris")
                .and_then(|v| v.split_whitespace().find(|u| is_debian(u)))
            {
                return Ok(uri.to_string());
            }
        }
    }
    let mut lists = vec![PathBuf::from("/etc/apt/sources.list")];
    lists.extend(
        files
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "list"))
            .cloned(),
    );
    for path in &lists {
        let text = fs::read_to_string(path).unwrap_or_default();
        for line in text.lines() {
            let mut words = line.split_whitespace().peekable();
            if words.next() != Some("deb") {
                continue;
            }
            if words.peek().is_some_and(|w| w.starts_with('[')) {
                // skip options: "[a=b c=d]"
                for w in words.by_ref() {
                    if w.ends_with(']') {
                        break;
                    }
                }
            }
            let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
                continue;
            };
            if suite == SUITE && is_debian(uri) {
                return Ok(uri.to_string());
            }
        }
    }
    Err(format!(
        "no Debian mirror for {SUITE} found in the host's apt sources (/etc/apt/sources.list.d/*.sources \
         `URIs:` with `Suites: {SUITE}`, or `deb URI {SUITE} ...` in /etc/apt/sources.list*). \
         Configure apt, or set OCUSERS_TEST_DEBIAN_MIRROR=http://.../debian"
    ))
}
