//! Container harness for the system test tier: a real systemd (PID 1), D-Bus, `useradd` and npm
//! inside a `systemd-nspawn` container booted from a cached Debian 12 root.
//!
//! * [`ensure_base_root`] builds (once, cached, flock-guarded, atomically renamed into place) a
//!   Debian 12 minbase root with [`BASE_INCLUDE`], an up-to-date apt list and the `npm` package with
//!   all its dependencies pre-downloaded (not installed) in `/var/cache/apt/archives`.
//! * [`Container::boot`] copies that root to a fresh dir under `/var/tmp`, adds the host's CA bundle
//!   (see [`CONTAINER_CA_BUNDLE`]) and `/root/.npmrc`, binds the shared npm cache
//!   ([`NPM_CACHE_DIR`] → `/root/.npm`) plus the caller's binds, boots it and waits until
//!   `systemctl is-system-running --wait` says `running` or `degraded`.
//! * [`Container::exec`] / [`Container::sh`] / [`Container::sh_as`] run commands inside through
//!   `nsenter` into all of the container's namespaces with a clean environment and a timeout.
//! * Dropping a [`Container`] powers it off (bounded wait), SIGKILLs what is left, waits for
//!   nspawn and deletes the copy. nspawn is started with a parent-death signal, so even a test
//!   binary killed by Ctrl-C or SIGKILL takes its containers down; leftover copies of dead test
//!   runs are deleted by the next [`Container::boot`].
//!
//! The network namespace is the host's (no `--private-network`): loopback inside is the host's
//! loopback. Everything needs root; a missing prerequisite is an error that says how to fix it,
//! never a skip.

// The trials in main.rs use different parts of this API over time.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

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
/// Where the containers' temporary copies live (not /tmp, which may be a small tmpfs).
pub const WORK_PARENT: &str = "/var/tmp";
const WORK_PREFIX: &str = "ocusers-ct-";
/// Host CA bundle; registry TLS is only trusted through it on these machines.
pub const HOST_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Where the host's CA bundle is copied inside each container.
pub const CONTAINER_CA_BUNDLE: &str = "/etc/ssl/host-ca-bundle.crt";
/// Default timeout of [`Container::sh`] and [`Container::sh_as`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
const PATH_ENV: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(30);

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
            for (tool, package) in [
                ("debootstrap", "debootstrap"),
                ("systemd-nspawn", "systemd-container"),
                ("nsenter", "util-linux"),
                ("setpriv", "util-linux"),
                ("chroot", "coreutils"),
                ("kill", "procps"),
                ("du", "coreutils"),
            ] {
                if which(tool).is_none() {
                    problems.push(format!(
                        "`{tool}` is missing on the host: install it with `apt-get install {package}`"
                    ));
                }
            }
            if !Path::new(HOST_CA_BUNDLE).is_file() {
                problems.push(format!(
                    "{HOST_CA_BUNDLE} is missing on the host: `apt-get install ca-certificates`"
                ));
            }
            if problems.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "system test prerequisites are missing (this tier never skips):\n  - {}",
                    problems.join("\n  - ")
                ))
            }
        })
        .clone()
}

/// Cached Debian 12 root for tests, built once with debootstrap (see the module docs).
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
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("cannot flock {}: {e}", lock_path.display()))?;
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

/// How long the phases of [`Container::boot`] took.
#[derive(Debug, Clone, Copy)]
pub struct BootTimings {
    /// Copying the base root.
    pub copy: Duration,
    /// From starting nspawn until `systemctl is-system-running --wait` returned.
    pub boot: Duration,
}

/// A booted systemd-nspawn container; dropping it powers it off and deletes its copy.
pub struct Container {
    name: String,
    machine_id: String,
    /// Temp dir holding `root/`, `nspawn.log` and `owner`.
    dir: PathBuf,
    root: PathBuf,
    log: PathBuf,
    nspawn: Option<Child>,
    leader: u32,
    timings: BootTimings,
}

impl Container {
    /// Copy the base root to a fresh temp dir, prepare it, boot it with systemd-nspawn, wait until
    /// `systemctl is-system-running --wait` says running/degraded.
    ///
    /// `binds`: (host path, container path, read_only). The shared npm cache is always bound at
    /// `/root/.npm`. Paths must not contain `:`.
    pub fn boot(base: &Path, binds: &[(PathBuf, String, bool)]) -> Result<Container, String> {
        Container::boot_with(base, binds, false)
    }

    /// Like [`Container::boot`], with `private_network` a network namespace
    /// of its own (only loopback): ports inside collide with nothing on the
    /// host, and nothing inside reaches out.
    pub fn boot_with(
        base: &Path,
        binds: &[(PathBuf, String, bool)],
        private_network: bool,
    ) -> Result<Container, String> {
        require_prerequisites()?;
        if !base.join("usr/lib/systemd/systemd").exists() {
            return Err(format!(
                "{} is not a base root (no usr/lib/systemd/systemd); use ensure_base_root()",
                base.display()
            ));
        }
        static SWEEP: std::sync::Once = std::sync::Once::new();
        SWEEP.call_once(sweep_stale_copies);
        fs::create_dir_all(NPM_CACHE_DIR)
            .map_err(|e| format!("cannot create {NPM_CACHE_DIR}: {e}"))?;
        let mut all_binds = vec![(
            PathBuf::from(NPM_CACHE_DIR),
            "/root/.npm".to_string(),
            false,
        )];
        all_binds.extend(binds.iter().cloned());
        let mut bind_args = Vec::new();
        for (host, inside, read_only) in &all_binds {
            let host_str = host.to_str().unwrap_or(":");
            if host_str.contains(':') || inside.contains(':') || !inside.starts_with('/') {
                return Err(format!(
                    "bad bind {host:?} -> {inside:?}: paths must be UTF-8 without ':' and the container path absolute"
                ));
            }
            if !host.exists() {
                return Err(format!("bind source {} does not exist", host.display()));
            }
            let flag = if *read_only { "--bind-ro" } else { "--bind" };
            bind_args.push(format!("{flag}={host_str}:{inside}"));
        }

        let machine_id = random_id128()?;
        let dir = tempfile::Builder::new()
            .prefix(WORK_PREFIX)
            .tempdir_in(WORK_PARENT)
            .map_err(|e| format!("cannot create a temp dir in {WORK_PARENT}: {e}"))?
            .keep();
        let suffix: String = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .trim_start_matches(WORK_PREFIX)
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_ascii_lowercase();
        let mut container = Container {
            name: format!("ocu-{suffix}"),
            machine_id,
            root: dir.join("root"),
            log: dir.join("nspawn.log"),
            dir,
            nspawn: None,
            leader: 0,
            timings: BootTimings {
                copy: Duration::ZERO,
                boot: Duration::ZERO,
            },
        };
        // From here on, an error drops `container`, which cleans up.
        write_file(
            &container.dir.join("owner"),
            &format!(
                "{} {}\n",
                std::process::id(),
                start_time(std::process::id())
            ),
            0o644,
        )?;

        let started = Instant::now();
        let mut cp = Command::new("cp");
        cp.args(["-a", "--reflink=auto"])
            .arg(base)
            .arg(&container.root);
        run_checked(cp, Duration::from_secs(600))?;
        container.prepare_root()?;
        container.timings.copy = started.elapsed();

        let started = Instant::now();
        let log = File::create(&container.log)
            .map_err(|e| format!("cannot create {}: {e}", container.log.display()))?;
        let log2 = log
            .try_clone()
            .map_err(|e| format!("cannot dup the log fd: {e}"))?;
        let mut nspawn = Command::new("setpriv");
        nspawn
            // If the test binary dies, nspawn gets SIGTERM and powers the container off.
            .args(["--pdeathsig=TERM", "--", "systemd-nspawn"])
            .args(["--register=no", "--keep-unit", "--boot"])
            .arg(format!("--machine={}", container.name))
            .arg(format!("--uuid={}", container.machine_id))
            .arg("--console=read-only")
            .arg("--setenv=SYSTEMD_COLORS=0")
            .arg("--directory")
            .arg(&container.root)
            .args(&bind_args)
            .args(private_network.then_some("--private-network"))
            .env_clear()
            .env("PATH", PATH_ENV)
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            // Out of the terminal's process group: Ctrl-C reaches only the test binary, whose
            // death then shuts the container down through the parent-death signal.
            .process_group(0);
        let child = spawn_from_long_lived_thread(nspawn)
            .map_err(|e| format!("cannot start systemd-nspawn: {e}"))?;
        let nspawn_pid = child.id();
        container.nspawn = Some(child);
        let _ = fs::write(container.dir.join("nspawn.pid"), format!("{nspawn_pid}\n"));

        container.leader = container.find_leader(started + Duration::from_secs(60))?;
        container.wait_running(started + BOOT_TIMEOUT)?;
        container.timings.boot = started.elapsed();
        eprintln!(
            "[container] {} up: copy {:.1}s, boot to running {:.1}s (leader pid {}, root {})",
            container.name,
            container.timings.copy.as_secs_f64(),
            container.timings.boot.as_secs_f64(),
            container.leader,
            container.root.display()
        );
        Ok(container)
    }

    /// Run argv inside the container (all namespaces, as root, clean environment, cwd `/`).
    ///
    /// Never hangs: after `timeout` the whole process group is SIGKILLed, the status then reports
    /// the signal and stderr ends with a `[container] TIMEOUT` line. A failure to even start
    /// `nsenter` is reported as exit status 127 with the reason in stderr.
    pub fn exec(&self, argv: &[&str], timeout: Duration) -> Output {
        self.exec_env(argv, &[], timeout)
    }

    /// Like [`Container::exec`] with extra environment variables.
    pub fn exec_env(&self, argv: &[&str], env: &[(&str, &str)], timeout: Duration) -> Output {
        let mut cmd = Command::new("nsenter");
        cmd.arg("--target")
            .arg(self.leader.to_string())
            .args(["--all", "--root", "--wd", "--"])
            .args(argv)
            .env_clear()
            .env("PATH", PATH_ENV)
            .env("HOME", "/root")
            .env("LANG", "C.UTF-8")
            .env("NODE_EXTRA_CA_CERTS", CONTAINER_CA_BUNDLE)
            .envs(env.iter().copied());
        run_with_timeout(cmd, timeout)
    }

    /// `bash -c script` inside, as root, with [`DEFAULT_TIMEOUT`].
    pub fn sh(&self, script: &str) -> Output {
        self.exec(&["bash", "-c", script], DEFAULT_TIMEOUT)
    }

    /// [`Container::sh`] that returns stdout on exit status 0, else a message with the script,
    /// the status and the tails of stdout and stderr.
    pub fn sh_ok(&self, script: &str) -> Result<String, String> {
        check(
            &format!("in {}: bash -c {script:?}", self.name),
            self.sh(script),
        )
    }

    /// `bash -c script` inside as `user` (any login shell, e.g. nologin, is fine): uid, primary
    /// gid and supplementary groups of the user, `HOME`/`USER`/`LOGNAME` from passwd, cwd = home
    /// (or `/`), `XDG_RUNTIME_DIR` if `/run/user/UID` exists. [`DEFAULT_TIMEOUT`].
    pub fn sh_as(&self, user: &str, script: &str) -> Output {
        self.sh_as_timeout(user, script, DEFAULT_TIMEOUT)
    }

    /// [`Container::sh_as`] with a timeout.
    pub fn sh_as_timeout(&self, user: &str, script: &str, timeout: Duration) -> Output {
        const WRAPPER: &str = r#"
ent=$(getent passwd "$1") || { echo "sh_as: no such user in the container: $1" >&2; exit 125; }
IFS=: read -r _ _ uid gid _ home _ <<EOF
$ent
EOF
cd "$home" 2>/dev/null || cd /
if [ -d "/run/user/$uid" ]; then export XDG_RUNTIME_DIR="/run/user/$uid"; fi
export HOME="$home" USER="$1" LOGNAME="$1"
exec setpriv --reuid="$uid" --regid="$gid" --init-groups -- bash -c "$2"
"#;
        self.exec(&["bash", "-c", WRAPPER, "sh_as", user, script], timeout)
    }

    /// [`Container::sh_as`] that returns stdout on exit status 0, else a specific error.
    pub fn sh_as_ok(&self, user: &str, script: &str) -> Result<String, String> {
        check(
            &format!("in {} as {user}: bash -c {script:?}", self.name),
            self.sh_as(user, script),
        )
    }

    /// Host path of the container's root directory (to read files directly).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Host PID of the container's PID 1 (systemd).
    pub fn leader_pid(&self) -> u32 {
        self.leader
    }

    /// Machine name, also the container's hostname.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How long copying and booting took.
    pub fn timings(&self) -> BootTimings {
        self.timings
    }

    /// The last `lines` lines of nspawn's output (the container's console), escapes stripped.
    pub fn console_tail(&self, lines: usize) -> String {
        tail_of_file(&self.log, lines)
    }

    fn prepare_root(&self) -> Result<(), String> {
        let ca = fs::read(HOST_CA_BUNDLE)
            .map_err(|e| format!("cannot read the host CA bundle {HOST_CA_BUNDLE}: {e}"))?;
        let inside = self.root.join(CONTAINER_CA_BUNDLE.trim_start_matches('/'));
        fs::write(&inside, ca).map_err(|e| format!("cannot write {}: {e}", inside.display()))?;
        fs::set_permissions(&inside, fs::Permissions::from_mode(0o644))
            .map_err(|e| format!("cannot chmod {}: {e}", inside.display()))?;
        write_file(
            &self.root.join("root/.npmrc"),
            &format!("cafile={CONTAINER_CA_BUNDLE}\n"),
            0o600,
        )?;
        fs::create_dir_all(self.root.join("root/.npm"))
            .map_err(|e| format!("cannot create root/.npm in the copy: {e}"))?;
        // dpkg without fsync: installing npm's 634 packages takes ~90 s instead of ~230 s.
        write_file(
            &self
                .root
                .join("etc/dpkg/dpkg.cfg.d/ocusers-tests-unsafe-io"),
            "force-unsafe-io\n",
            0o644,
        )?;
        // A fresh machine-id per container (left empty, nspawn would give every container the
        // same one).
        write_file(
            &self.root.join("etc/machine-id"),
            &format!("{}\n", self.machine_id),
            0o444,
        )?;
        write_file(
            &self.root.join("etc/hostname"),
            &format!("{}\n", self.name),
            0o644,
        )?;
        Ok(())
    }

    fn nspawn_exited(&mut self) -> Option<ExitStatus> {
        self.nspawn
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    fn failure(&self, what: &str) -> String {
        format!(
            "container {} ({}): {what}\n--- last lines of {} ---\n{}",
            self.name,
            self.root.display(),
            self.log.display(),
            self.console_tail(40)
        )
    }

    /// The container's PID 1: the descendant of nspawn that is PID 1 in its own PID namespace
    /// and already runs systemd (not nspawn's code before the exec).
    fn find_leader(&mut self, deadline: Instant) -> Result<u32, String> {
        let nspawn_pid = self.nspawn.as_ref().map_or(0, Child::id);
        loop {
            if let Some(status) = self.nspawn_exited() {
                return Err(self.failure(&format!(
                    "systemd-nspawn exited with {status} before systemd started"
                )));
            }
            let children = children_map();
            let mut queue = vec![nspawn_pid];
            while let Some(pid) = queue.pop() {
                if pid != nspawn_pid && is_pid_ns_init(pid) {
                    let exe = fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
                    if exe.to_string_lossy().contains("systemd/systemd") {
                        return Ok(pid);
                    }
                }
                if let Some(kids) = children.get(&pid) {
                    queue.extend(kids);
                }
            }
            if Instant::now() > deadline {
                return Err(self.failure(&format!(
                    "no systemd running as PID 1 of a new PID namespace below nspawn (pid {nspawn_pid})"
                )));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_running(&mut self, deadline: Instant) -> Result<(), String> {
        let mut last;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let out = self.exec(
                &["systemctl", "is-system-running", "--wait"],
                left.max(Duration::from_secs(1)),
            );
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if state == "running" || state == "degraded" {
                if state == "degraded" {
                    let failed = self.exec(
                        &["systemctl", "--failed", "--no-legend", "--plain"],
                        Duration::from_secs(30),
                    );
                    eprintln!(
                        "[container] {} is degraded; failed units:\n{}",
                        self.name,
                        String::from_utf8_lossy(&failed.stdout)
                    );
                }
                return Ok(());
            }
            last = describe(&out);
            if let Some(status) = self.nspawn_exited() {
                return Err(self.failure(&format!(
                    "systemd-nspawn exited with {status} during boot; last `systemctl is-system-running --wait`: {last}"
                )));
            }
            if Instant::now() > deadline {
                return Err(self.failure(&format!(
                    "not running/degraded after {}s; last `systemctl is-system-running --wait`: {last}",
                    BOOT_TIMEOUT.as_secs()
                )));
            }
            thread::sleep(Duration::from_millis(200)); // bus not up yet ("offline"/"Failed to connect")
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let started = Instant::now();
        let mut stopped = true;
        if let Some(mut child) = self.nspawn.take() {
            let pid = child.id();
            stopped = false;
            if child.try_wait().ok().flatten().is_none() {
                // nspawn turns SIGTERM into SIGRTMIN+3 for systemd: an orderly poweroff.
                signal(pid, "TERM");
                if wait_child(&mut child, POWEROFF_TIMEOUT).is_none() {
                    eprintln!(
                        "[container] {}: no poweroff within {}s, SIGKILL",
                        self.name,
                        POWEROFF_TIMEOUT.as_secs()
                    );
                    // Killing the PID namespace's init kills every process in it.
                    if self.leader != 0 {
                        signal(self.leader, "KILL");
                    }
                    let _ = child.kill();
                }
            }
            match wait_child(&mut child, Duration::from_secs(30)) {
                Some(_) => stopped = true,
                None => eprintln!(
                    "[container] {}: systemd-nspawn (pid {pid}) did not exit; leaving {} in place",
                    self.name,
                    self.dir.display()
                ),
            }
        }
        let stop_secs = started.elapsed().as_secs_f64();
        if stopped && let Err(e) = remove_tree(&self.dir) {
            eprintln!("[container] {}: {e}", self.name);
        }
        eprintln!(
            "[container] {} down: poweroff {stop_secs:.1}s, removing the copy {:.1}s",
            self.name,
            started.elapsed().as_secs_f64() - stop_secs
        );
    }
}

/// Returns stdout if `out` succeeded, else a message naming `what` with status and output tails.
pub fn check(what: &str, out: Output) -> Result<String, String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("{what} failed: {}", describe(&out)))
    }
}

/// One-line status plus the tails of stdout and stderr of `out`.
pub fn describe(out: &Output) -> String {
    let mut s = format!("{}", out.status);
    for (name, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let text = String::from_utf8_lossy(bytes);
        let t = tail_lines(&text, 20);
        if !t.trim().is_empty() {
            let _ = write!(s, "\n--- {name} (tail) ---\n{t}");
        }
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Process helpers.

/// Runs `cmd` with stdout/stderr in unlinked temp files (so background processes that keep the
/// descriptors open cannot block us) in its own process group; kills the group on timeout.
fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Output {
    let program = format!("{:?}", cmd.get_program());
    let fail = |msg: String| Output {
        status: ExitStatus::from_raw(127 << 8),
        stdout: Vec::new(),
        stderr: msg.into_bytes(),
    };
    let (mut out_file, mut err_file) = match (tempfile::tempfile(), tempfile::tempfile()) {
        (Ok(o), Ok(e)) => (o, e),
        (Err(e), _) | (_, Err(e)) => {
            return fail(format!("[container] cannot create a temp file: {e}"));
        }
    };
    let (out_dup, err_dup) = match (out_file.try_clone(), err_file.try_clone()) {
        (Ok(o), Ok(e)) => (o, e),
        (Err(e), _) | (_, Err(e)) => {
            return fail(format!("[container] cannot dup a temp file: {e}"));
        }
    };
    cmd.stdin(Stdio::null())
        .stdout(out_dup)
        .stderr(err_dup)
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return fail(format!("[container] cannot start {program}: {e}")),
    };
    let mut timed_out = false;
    let status = match wait_child(&mut child, timeout) {
        Some(status) => status,
        None => {
            timed_out = true;
            signal_group(child.id(), "KILL");
            let _ = child.kill();
            child.wait().unwrap_or(ExitStatus::from_raw(9))
        }
    };
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let _ = out_file.seek(SeekFrom::Start(0));
    let _ = out_file.read_to_end(&mut stdout);
    let _ = err_file.seek(SeekFrom::Start(0));
    let _ = err_file.read_to_end(&mut stderr);
    if timed_out {
        stderr.extend_from_slice(
            format!(
                "\n[container] TIMEOUT after {:.1}s: killed the process group\n",
                timeout.as_secs_f64()
            )
            .as_bytes(),
        );
    }
    Output {
        status,
        stdout,
        stderr,
    }
}

/// Runs `cmd` on the host; Ok(stdout) on success, else a specific error.
fn run_checked(cmd: Command, timeout: Duration) -> Result<String, String> {
    let what = format!("host command {cmd:?}");
    check(&what, run_with_timeout(cmd, timeout))
}

/// Runs `cmd` on the host, appending its output to `log`; on failure the error has the log tail.
fn run_logged(cmd: Command, log: &Path, timeout: Duration) -> Result<(), String> {
    let what = format!("{cmd:?}");
    let started = Instant::now();
    let out = run_with_timeout(cmd, timeout);
    let mut text = format!("\n$ {what}\n");
    text.push_str(&String::from_utf8_lossy(&out.stdout));
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    let _ = write!(
        text,
        "\n[{} after {:.1}s]\n",
        out.status,
        started.elapsed().as_secs_f64()
    );
    let _ = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()));
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed with {} (full log: {})\n{}",
            out.status,
            log.display(),
            tail_lines(&text, 30)
        ))
    }
}

/// Spawns from one thread that lives as long as the process, so that a parent-death signal set
/// in the child fires when the test binary exits, not when some test thread ends.
fn spawn_from_long_lived_thread(cmd: Command) -> std::io::Result<Child> {
    type Request = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<mpsc::Sender<Request>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        thread::Builder::new()
            .name("container-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("cannot start the container spawner thread");
        tx
    });
    let (tx, rx) = mpsc::channel();
    spawner
        .send((cmd, tx))
        .map_err(|_| std::io::Error::other("container spawner thread is gone"))?;
    rx.recv()
        .map_err(|_| std::io::Error::other("container spawner thread is gone"))?
}

fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(2);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn signal_group(pgid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg("--")
        .arg(format!("-{pgid}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// parent pid -> child pids, from /proc/*/stat.
fn children_map() -> HashMap<u32, Vec<u32>> {
    let mut map: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(ppid) = stat_field(pid, 4) {
            map.entry(ppid as u32).or_default().push(pid);
        }
    }
    map
}

/// Field `n` (1-based, as in proc(5)) of /proc/PID/stat, for fields after the command name.
fn stat_field(pid: u32, n: usize) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    after.split_whitespace().nth(n - 3)?.parse().ok()
}

fn start_time(pid: u32) -> u64 {
    stat_field(pid, 22).unwrap_or(0)
}

/// Whether `pid` is PID 1 of a PID namespace below ours (`NSpid: <host pid> ... 1`).
fn is_pid_ns_init(pid: u32) -> bool {
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .map(|v| v.split_whitespace().collect::<Vec<_>>())
        .is_some_and(|ids| ids.len() >= 2 && ids.last() == Some(&"1"))
}

/// 32 lowercase hex digits from the kernel's random UUID source.
fn random_id128() -> Result<String, String> {
    let uuid = fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map_err(|e| format!("cannot read /proc/sys/kernel/random/uuid: {e}"))?;
    Ok(uuid.trim().replace('-', ""))
}

fn effective_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let uids = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    uids.split_whitespace().nth(1)?.parse().ok()
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
}

/// Deletes temp copies left by test runs that died (owner process gone, nspawn not running).
fn sweep_stale_copies() {
    let Ok(entries) = fs::read_dir(WORK_PARENT) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_ours = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(WORK_PREFIX));
        if !is_ours || !path.is_dir() {
            continue;
        }
        let Ok(owner) = fs::read_to_string(path.join("owner")) else {
            continue; // just being created, or not ours
        };
        let mut words = owner.split_whitespace();
        let pid: u32 = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
        let started: u64 = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
        let owner_alive = pid != 0 && start_time(pid) == started && started != 0;
        let nspawn_alive = fs::read_to_string(path.join("nspawn.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .and_then(|p| fs::read(format!("/proc/{p}/cmdline")).ok())
            .is_some_and(|cmdline| {
                String::from_utf8_lossy(&cmdline).contains(&*path.to_string_lossy())
            });
        if !owner_alive && !nspawn_alive {
            eprintln!(
                "[container] removing leftover {} of a dead test run",
                path.display()
            );
            if let Err(e) = remove_tree(&path) {
                eprintln!("[container] {e}");
            }
        }
    }
}

/// `rm -rf --one-file-system`: never follows a mount into a bound host directory.
fn remove_tree(path: &Path) -> Result<(), String> {
    let mut rm = Command::new("rm");
    rm.args(["-rf", "--one-file-system", "--"]).arg(path);
    run_checked(rm, Duration::from_secs(300)).map(drop)
}

fn write_file(path: &Path, content: &str, mode: u32) -> Result<(), String> {
    let _ = fs::remove_file(path); // replace symlinks instead of writing through them
    fs::write(path, content).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot chmod {}: {e}", path.display()))
}

fn du_mb(path: &Path) -> u64 {
    Command::new("du")
        .arg("-sm")
        .arg(path)
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Last `n` lines of a console log, with ANSI escape sequences and carriage returns removed.
fn tail_of_file(path: &Path, n: usize) -> String {
    let bytes = fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let mut clean = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if c.is_ascii_alphabetic() {
                            break;
                        }
                    }
                }
            }
            '\r' => {}
            c => clean.push(c),
        }
    }
    tail_lines(&clean, n)
}
