//! Container harness for the system tier and the bench: a real systemd (PID 1), D-Bus,
//! `useradd` and npm inside a `systemd-nspawn` container booted from the cached Debian 12 root
//! ([`super::rootfs::ensure_base_root`]).
//!
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
use std::collections::HashMap;
use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::process::{
    check, describe, remove_tree, run_checked, run_with_timeout, signal,
    spawn_from_long_lived_thread, start_time, stat_field, tail_of_file, wait_child, write_file,
};
use super::rootfs::{HOST_CA_BUNDLE, NPM_CACHE_DIR, PATH_ENV, require_prerequisites};

/// Where the containers' temporary copies live (not /tmp, which may be a small tmpfs).
pub const WORK_PARENT: &str = "/var/tmp";
const WORK_PREFIX: &str = "ocusers-ct-";
/// Where the host's CA bundle is copied inside each container.
pub const CONTAINER_CA_BUNDLE: &str = "/etc/ssl/host-ca-bundle.crt";
/// Default timeout of [`Container::sh`] and [`Container::sh_as`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(30);

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
