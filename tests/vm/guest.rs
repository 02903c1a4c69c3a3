//! The VM tier's machine: a qemu guest (TCG; `/dev/kvm` hangs guests on these hosts) with a real
//! kernel and cgroup v2, where memory, task and CPU limits, systemd's BPF socket-bind filter and
//! nftables are enforced — none of which a systemd-nspawn container on this host can show.
//!
//! * [`ensure_guest_image`] builds (once, cached under [`CACHE_DIR`], keyed, flock-guarded) a raw
//!   ext4 disk from the system tier's cached Debian 12 root ([`ensure_base_root`], reused, not
//!   copied): upgraded in place to Debian 13 ("trixie", systemd 257 built with `+BPF_FRAMEWORK`,
//!   kernel 6.12) — Debian 12's systemd 252 is built without the BPF framework, so
//!   `SocketBindAllow=` is accepted there but not enforced — plus nftables, the kernel and a
//!   command runner. The kernel and initrd are kept next to the disk and booted directly.
//! * [`Vm::boot`] starts qemu on that disk with `snapshot=on` (the cached disk is never written),
//!   no network card (`-nic none`) and a 9p share as the command channel: the host drops
//!   `q/N.sh`, the guest's runner executes it as root and writes `q/N.out`, `q/N.err`, `q/N.rc`.
//! * Dropping a [`Vm`] powers the guest off (bounded wait), kills qemu if needed and deletes the
//!   share; qemu also gets a parent-death signal, so no VM outlives the test binary.
#![allow(dead_code)]

use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::container::{self, CACHE_DIR, base_key, describe, ensure_base_root};

/// Bump when the way the guest image is built changes (part of the cache key).
const GUEST_FORMAT: u32 = 1;
/// Debian suite the guest is upgraded to: the first with systemd built `+BPF_FRAMEWORK`.
pub const GUEST_SUITE: &str = "trixie";
/// Installed into the guest on top of the base root.
const GUEST_PACKAGES: &[&str] = &["linux-image-amd64", "nftables", "perl"];
const DISK_SIZE: &str = "4G";
const BOOT_TIMEOUT: Duration = Duration::from_secs(600);
const QEMU: &str = "qemu-system-x86_64";

/// The runner inside the guest: executes the host's scripts one at a time, in name order.
const RUNNER: &str = r#"#!/bin/bash
# ocusers VM tier: run the scripts the host drops in /mnt/host/q, one at a time.
q=/mnt/host/q
systemctl is-system-running --wait >/mnt/host/boot-state 2>&1
uname -r >/mnt/host/kernel
touch /mnt/host/booted
while :; do
    for f in "$q"/*.sh; do
        [ -e "$f" ] || continue
        n=${f%.sh}
        mv "$f" "$n.run"
        bash "$n.run" >"$n.out" 2>"$n.err" </dev/null
        echo $? >"$n.rc.tmp"
        mv "$n.rc.tmp" "$n.rc"
    done
    sleep 0.1
done
"#;

const RUNNER_UNIT: &str = "[Unit]
Description=ocusers VM tier command runner
Requires=mnt-host.mount
After=mnt-host.mount

[Service]
ExecStart=/usr/local/sbin/ocusers-vm-runner

[Install]
WantedBy=multi-user.target
";

const FSTAB: &str = "/dev/vda / ext4 rw,errors=remount-ro 0 1
host0 /mnt/host 9p trans=virtio,version=9p2000.L,msize=262144 0 0
";

/// Timers and services that only cost boot time in a throwaway guest.
const MASK: &[&str] = &[
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
    "man-db.timer",
    "systemd-tmpfiles-clean.timer",
    "getty@tty1.service",
    "systemd-firstboot.service",
];

/// A cached guest: disk, kernel and initrd.
#[derive(Debug, Clone)]
pub struct GuestImage {
    pub dir: PathBuf,
    pub disk: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

/// Cache key: the base root's key plus everything that shapes the guest.
pub fn guest_key() -> String {
    let spec = format!(
        "base={};format={GUEST_FORMAT};suite={GUEST_SUITE};packages={};mask={};runner={RUNNER};unit={RUNNER_UNIT};fstab={FSTAB}",
        base_key(),
        GUEST_PACKAGES.join(","),
        MASK.join(",")
    );
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in spec.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:012x}", hash >> 16)
}

/// Fails (with how to fix it) unless the host can run the VM tier.
pub fn require_vm_prerequisites() -> Result<(), String> {
    container::require_prerequisites()?;
    let mut problems = Vec::new();
    for (tool, package) in [
        (QEMU, "qemu-system-x86"),
        ("mkfs.ext4", "e2fsprogs"),
        ("systemd-nspawn", "systemd-container"),
    ] {
        if which(tool).is_none() {
            problems.push(format!(
                "`{tool}` is missing on the host: install it with `apt-get install {package}`"
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "VM tier prerequisites are missing (this tier never skips):\n  - {}",
            problems.join("\n  - ")
        ))
    }
}

/// The cached guest image (built on first use; see the module docs).
pub fn ensure_guest_image() -> Result<GuestImage, String> {
    require_vm_prerequisites()?;
    let cache = Path::new(CACHE_DIR);
    let key = guest_key();
    let final_dir = cache.join(format!("vm-{key}"));
    let image = |dir: &Path| GuestImage {
        dir: dir.to_path_buf(),
        disk: dir.join("disk.img"),
        kernel: dir.join("vmlinuz"),
        initrd: dir.join("initrd.img"),
    };
    if final_dir.join("disk.img").is_file() {
        return Ok(image(&final_dir));
    }
    let base = ensure_base_root()?;
    let lock_path = cache.join("vm.lock");
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("cannot flock {}: {e}", lock_path.display()))?;
    if final_dir.join("disk.img").is_file() {
        return Ok(image(&final_dir));
    }
    let tmp = cache.join(format!(".build-vm-{key}"));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| format!("removing {}: {e}", tmp.display()))?;
    }
    fs::create_dir_all(&tmp).map_err(|e| format!("creating {}: {e}", tmp.display()))?;
    let log = cache.join(format!(".build-vm-{key}.log"));
    let started = Instant::now();
    eprintln!(
        "[vm] building guest image {} (once: Debian {GUEST_SUITE} on the cached root, kernel, nftables; a few minutes)",
        final_dir.display()
    );
    let root = tmp.join("root");
    let mut cp = Command::new("cp");
    cp.args(["-a", "--reflink=auto"]).arg(&base).arg(&root);
    logged(cp, &log, Duration::from_secs(600))?;

    let mirror = container::debian_mirror()?;
    write(
        &root.join("etc/apt/sources.list"),
        &format!("deb {mirror} {GUEST_SUITE} main\n"),
        0o644,
    )?;
    let script = format!(
        "set -e
export DEBIAN_FRONTEND=noninteractive
opts='-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold -o APT::Install-Recommends=false'
apt-get update
apt-get -y $opts full-upgrade
apt-get -y $opts install {}
apt-get -y autoremove --purge
apt-get clean
rm -rf /var/lib/apt/lists/*
",
        GUEST_PACKAGES.join(" ")
    );
    let mut nspawn = Command::new("systemd-nspawn");
    nspawn
        .args(["--register=no", "--keep-unit", "--quiet", "--pipe"])
        .arg("--directory")
        .arg(&root)
        .args(["--setenv=LANG=C.UTF-8", "bash", "-c", &script]);
    logged(nspawn, &log, Duration::from_secs(1800))?;

    // Guest configuration.
    write(&root.join("etc/fstab"), FSTAB, 0o644)?;
    fs::create_dir_all(root.join("mnt/host")).map_err(|e| e.to_string())?;
    write(&root.join("etc/hostname"), "ocusers-vm\n", 0o644)?;
    // A fixed identity: an empty machine-id would make this a "first boot" every time.
    let id = fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map_err(|e| e.to_string())?
        .trim()
        .replace('-', "");
    write(&root.join("etc/machine-id"), &format!("{id}\n"), 0o444)?;
    write(
        &root.join("usr/local/sbin/ocusers-vm-runner"),
        RUNNER,
        0o755,
    )?;
    write(
        &root.join("etc/systemd/system/ocusers-vm-runner.service"),
        RUNNER_UNIT,
        0o644,
    )?;
    let wants = root.join("etc/systemd/system/multi-user.target.wants");
    fs::create_dir_all(&wants).map_err(|e| e.to_string())?;
    symlink_force(
        Path::new("/etc/systemd/system/ocusers-vm-runner.service"),
        &wants.join("ocusers-vm-runner.service"),
    )?;
    for unit in MASK {
        symlink_force(
            Path::new("/dev/null"),
            &root.join("etc/systemd/system").join(unit),
        )?;
    }

    let boot = root.join("boot");
    let find = |prefix: &str| -> Result<PathBuf, String> {
        let mut found: Vec<PathBuf> = fs::read_dir(&boot)
            .map_err(|e| format!("{}: {e}", boot.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(prefix))
            })
            .collect();
        found.sort();
        found.pop().ok_or_else(|| {
            format!(
                "no {prefix}* in {} after installing the kernel",
                boot.display()
            )
        })
    };
    fs::copy(find("vmlinuz-")?, tmp.join("vmlinuz")).map_err(|e| e.to_string())?;
    fs::copy(find("initrd.img-")?, tmp.join("initrd.img")).map_err(|e| e.to_string())?;

    let disk = tmp.join("disk.img");
    let mut mkfs = Command::new("mkfs.ext4");
    mkfs.args(["-q", "-F", "-L", "ocusers-vm", "-d"])
        .arg(&root)
        .arg(&disk)
        .arg(DISK_SIZE);
    logged(mkfs, &log, Duration::from_secs(600))?;
    fs::remove_dir_all(&root).map_err(|e| format!("removing {}: {e}", root.display()))?;
    write(
        &tmp.join("info"),
        &format!(
            "key={key}\nbase={}\nsuite={GUEST_SUITE}\npackages={}\nbuild_seconds={:.1}\n",
            base.display(),
            GUEST_PACKAGES.join(","),
            started.elapsed().as_secs_f64()
        ),
        0o644,
    )?;
    fs::rename(&tmp, &final_dir)
        .map_err(|e| format!("renaming {} to {}: {e}", tmp.display(), final_dir.display()))?;
    let _ = fs::remove_file(&log);
    eprintln!(
        "[vm] guest image built in {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        final_dir.display()
    );
    Ok(image(&final_dir))
}

/// Output of one command in the guest.
#[derive(Debug)]
pub struct GuestOutput {
    pub rc: i32,
    pub stdout: String,
    pub stderr: String,
}

impl GuestOutput {
    pub fn ok(&self) -> bool {
        self.rc == 0
    }
    /// stdout if `script` succeeded, else an error that quotes it.
    pub fn stdout_of(self, script: &str) -> Result<String, String> {
        if self.ok() {
            Ok(self.stdout)
        } else {
            Err(format!(
                "in the guest:\n{}\nfailed: {}",
                script.trim(),
                self.describe()
            ))
        }
    }
    pub fn describe(&self) -> String {
        format!(
            "exit {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.rc,
            tail(&self.stdout, 30),
            tail(&self.stderr, 30)
        )
    }
}

/// A running guest; dropping it powers it off and deletes its share.
pub struct Vm {
    qemu: Option<Child>,
    dir: PathBuf,
    share: PathBuf,
    console: PathBuf,
    seq: AtomicU32,
    pub boot_time: Duration,
    pub kernel: String,
}

impl Vm {
    /// Boot the guest with `files` (host path, name) copied into its share (`/mnt/host/NAME`).
    ///
    /// A guest kernel that panics while booting gets one more try, said loudly: under
    /// multi-threaded TCG a Debian 13 kernel was seen (once, in a CI run) to die 1.8 s into boot
    /// on an `int3` Oops in `enqueue_timer`, the emulator racing the kernel's own code patching;
    /// the same image booted before and after. A second panic fails the tier.
    pub fn boot(image: &GuestImage, files: &[(PathBuf, &str)]) -> Result<Vm, String> {
        match Vm::boot_once(image, files) {
            Err(e) if e.contains("Kernel panic") => {
                eprintln!(
                    "[vm] RETRY: the guest kernel panicked while booting (an emulator fault, not a test result); booting a fresh guest once more. First boot: {e}"
                );
                Vm::boot_once(image, files)
            }
            other => other,
        }
    }

    fn boot_once(image: &GuestImage, files: &[(PathBuf, &str)]) -> Result<Vm, String> {
        sweep_stale_dirs();
        let dir = tempfile::Builder::new()
            .prefix("ocusers-vm-")
            .tempdir_in("/var/tmp")
            .map_err(|e| format!("cannot create a temp dir in /var/tmp: {e}"))?
            .keep();
        let share = dir.join("share");
        fs::create_dir_all(share.join("q")).map_err(|e| e.to_string())?;
        write(
            &dir.join("owner"),
            &format!("{}\n", std::process::id()),
            0o644,
        )?;
        for (src, name) in files {
            let dst = share.join(name);
            if src.is_dir() {
                let mut cp = Command::new("cp");
                cp.args(["-a"]).arg(src).arg(&dst);
                run(cp, Duration::from_secs(120))?;
            } else {
                fs::copy(src, &dst).map_err(|e| format!("copying {}: {e}", src.display()))?;
            }
        }
        let console = dir.join("console.log");
        let mut vm = Vm {
            qemu: None,
            dir,
            share,
            console,
            seq: AtomicU32::new(0),
            boot_time: Duration::ZERO,
            kernel: String::new(),
        };
        let mut qemu = Command::new(QEMU);
        qemu.args(["-accel", "tcg,thread=multi", "-cpu", "max", "-smp", "2"])
            // No default devices (VGA, floppy, CD-ROM, parallel port): less to boot under TCG.
            .args(["-nodefaults", "-vga", "none"])
            .args(["-m", "2048", "-display", "none", "-monitor", "none"])
            .args(["-nic", "none", "-no-reboot"])
            .arg("-serial")
            .arg(format!("file:{}", vm.console.display()))
            .arg("-kernel")
            .arg(&image.kernel)
            .arg("-initrd")
            .arg(&image.initrd)
            .args([
                "-append",
                "root=/dev/vda rw console=ttyS0 panic=-1 net.ifnames=0 systemd.show_status=0",
            ])
            .arg("-drive")
            .arg(format!(
                "file={},format=raw,if=virtio,snapshot=on",
                image.disk.display()
            ))
            .arg("-virtfs")
            .arg(format!(
                "local,path={},mount_tag=host0,security_model=none",
                vm.share.display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                File::create(vm.dir.join("qemu.err"))
                    .map(Stdio::from)
                    .unwrap_or(Stdio::null()),
            );
        // qemu dies with the test binary (SIGKILL on parent death).
        unsafe {
            qemu.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let started = Instant::now();
        vm.qemu = Some(
            qemu.spawn()
                .map_err(|e| format!("cannot start {QEMU}: {e}"))?,
        );
        let booted = vm.share.join("booted");
        while !booted.exists() {
            if let Some(status) = vm.qemu.as_mut().and_then(|q| q.try_wait().ok().flatten()) {
                return Err(format!(
                    "qemu exited with {status} before the guest booted; {}",
                    vm.console_tail(40)
                ));
            }
            if started.elapsed() > BOOT_TIMEOUT {
                return Err(format!(
                    "the guest did not boot within {} s; {}",
                    BOOT_TIMEOUT.as_secs(),
                    vm.console_tail(40)
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        vm.boot_time = started.elapsed();
        vm.kernel = fs::read_to_string(vm.share.join("kernel"))
            .unwrap_or_default()
            .trim()
            .to_string();
        let state = fs::read_to_string(vm.share.join("boot-state")).unwrap_or_default();
        eprintln!(
            "[vm] guest up in {:.1} s (kernel {}, system {}), share {}",
            vm.boot_time.as_secs_f64(),
            vm.kernel,
            state.trim(),
            vm.share.display()
        );
        Ok(vm)
    }

    /// The guest's path of a file put in the share.
    pub fn shared(&self, name: &str) -> String {
        format!("/mnt/host/{name}")
    }

    /// The host's path of the share.
    pub fn share_dir(&self) -> &Path {
        &self.share
    }

    /// Run a bash script as root in the guest.
    pub fn sh_timeout(&self, script: &str, timeout: Duration) -> GuestOutput {
        let n = self.seq.fetch_add(1, Ordering::SeqCst);
        let q = self.share.join("q");
        let base = q.join(format!("{n:05}"));
        let tmp = q.join(format!(".{n:05}.tmp"));
        let fail = |msg: String| GuestOutput {
            rc: -1,
            stdout: String::new(),
            stderr: msg,
        };
        if let Err(e) =
            fs::write(&tmp, script).and_then(|_| fs::rename(&tmp, base.with_extension("sh")))
        {
            return fail(format!("cannot queue a script in {}: {e}", q.display()));
        }
        let rc_path = base.with_extension("rc");
        let started = Instant::now();
        loop {
            if let Ok(text) = fs::read_to_string(&rc_path) {
                let rc = text.trim().parse().unwrap_or(-1);
                let read =
                    |ext: &str| fs::read_to_string(base.with_extension(ext)).unwrap_or_default();
                return GuestOutput {
                    rc,
                    stdout: read("out"),
                    stderr: read("err"),
                };
            }
            if started.elapsed() > timeout {
                return fail(format!(
                    "TIMEOUT: the guest did not finish script {n:05} within {} s; {}",
                    timeout.as_secs(),
                    self.console_tail(20)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn sh(&self, script: &str) -> GuestOutput {
        self.sh_timeout(script, Duration::from_secs(600))
    }

    /// stdout of a script that must succeed.
    pub fn sh_ok(&self, script: &str) -> Result<String, String> {
        let out = self.sh(script);
        if out.ok() {
            Ok(out.stdout)
        } else {
            Err(format!(
                "in the guest: `{}` failed: {}",
                first_line(script),
                out.describe()
            ))
        }
    }

    pub fn console_tail(&self, lines: usize) -> String {
        format!(
            "console ({}) tail:\n{}",
            self.console.display(),
            tail(
                &fs::read_to_string(&self.console).unwrap_or_default(),
                lines
            )
        )
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Some(mut qemu) = self.qemu.take() {
            let _ = fs::write(
                self.share.join("q/99999.sh"),
                "systemctl poweroff --no-block\n",
            );
            let deadline = Instant::now() + Duration::from_secs(40);
            let mut status = None;
            while Instant::now() < deadline {
                if let Ok(Some(s)) = qemu.try_wait() {
                    status = Some(s);
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            if status.is_none() {
                eprintln!("[vm] guest did not power off within 40 s: killing qemu");
                let _ = qemu.kill();
                let _ = qemu.wait();
            }
        }
        if std::env::var_os("OCUSERS_TEST_KEEP_VM").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("[vm] kept {}", self.dir.display());
        }
    }
}

/// Deletes the directories of VMs whose test process is gone (qemu died with it).
fn sweep_stale_dirs() {
    for entry in fs::read_dir("/var/tmp").into_iter().flatten().flatten() {
        let path = entry.path();
        let ours = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with("ocusers-vm-"));
        let owner = fs::read_to_string(path.join("owner")).unwrap_or_default();
        let alive = owner
            .trim()
            .parse::<u32>()
            .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if ours && !owner.is_empty() && !alive {
            let _ = fs::remove_dir_all(&path);
        }
    }
}

fn first_line(s: &str) -> &str {
    s.trim().lines().next().unwrap_or("")
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn write(path: &Path, content: &str, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    fs::write(path, content).map_err(|e| format!("writing {}: {e}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

fn symlink_force(target: &Path, link: &Path) -> Result<(), String> {
    let _ = fs::remove_file(link);
    std::os::unix::fs::symlink(target, link).map_err(|e| format!("symlink {}: {e}", link.display()))
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
}

/// Run on the host with a timeout; Err names the command and its output.
pub fn run(mut cmd: Command, timeout: Duration) -> Result<Output, String> {
    let what = format!("{cmd:?}");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start {what}: {e}"))?;
    let pid = child.id();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    let watchdog = std::thread::spawn(move || {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if flag.load(Ordering::SeqCst) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        unsafe {
            libc::kill(-(pid as i32), libc::SIGKILL);
        }
        true
    });
    let out = child.wait_with_output();
    done.store(true, Ordering::SeqCst);
    let timed_out = watchdog.join().unwrap_or(false);
    let out = out.map_err(|e| format!("{what}: {e}"))?;
    if timed_out {
        return Err(format!("{what} timed out after {} s", timeout.as_secs()));
    }
    if !out.status.success() {
        return Err(format!("{what} failed: {}", describe(&out)));
    }
    Ok(out)
}

/// Like [`run`], appending the output to `log`; the error carries the log's tail.
fn logged(cmd: Command, log: &Path, timeout: Duration) -> Result<(), String> {
    let what = format!("{cmd:?}");
    let started = Instant::now();
    let result = run(cmd, timeout);
    let text = match &result {
        Ok(out) => format!(
            "\n$ {what}\n{}{}\n[ok after {:.1}s]\n",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            started.elapsed().as_secs_f64()
        ),
        Err(e) => format!("\n$ {what}\n{e}\n"),
    };
    let _ = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()));
    result
        .map(|_| ())
        .map_err(|e| format!("{e}\n(full log: {})", log.display()))
}
