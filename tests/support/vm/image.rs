//! The guest image: a raw ext4 disk upgraded from the cached Debian 12 root, with its kernel
//! and initrd next to it (see [`super`]).
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::super::process::{require_tools, run_logged, symlink_force, write_file};
use super::super::rootfs::{self, CACHE_DIR, base_key, ensure_base_root};
/// Bump when the way the guest image is built changes (part of the cache key).
const GUEST_FORMAT: u32 = 1;
/// Debian suite the guest is upgraded to: the first with systemd built `+BPF_FRAMEWORK`.
pub const GUEST_SUITE: &str = "trixie";
/// Installed into the guest on top of the base root.
const GUEST_PACKAGES: &[&str] = &["linux-image-amd64", "nftables", "perl"];
const DISK_SIZE: &str = "4G";
pub(super) const QEMU: &str = "qemu-system-x86_64";

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
    rootfs::cache_key(&spec)
}

/// Fails (with how to fix it) unless the host can run the VM tier.
pub fn require_vm_prerequisites() -> Result<(), String> {
    rootfs::require_prerequisites()?;
    require_tools(
        "VM tier",
        &[
            (QEMU, "qemu-system-x86"),
            ("mkfs.ext4", "e2fsprogs"),
            ("systemd-nspawn", "systemd-container"),
        ],
        Vec::new(),
    )
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
    let _lock = crate::support::process::lock_exclusive(&lock_path)?;
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
    run_logged(cp, &log, Duration::from_secs(600))?;

    let mirror = rootfs::debian_mirror()?;
    write_file(
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
    run_logged(nspawn, &log, Duration::from_secs(1800))?;

    // Guest configuration.
    write_file(&root.join("etc/fstab"), FSTAB, 0o644)?;
    fs::create_dir_all(root.join("mnt/host")).map_err(|e| e.to_string())?;
    write_file(&root.join("etc/hostname"), "ocusers-vm\n", 0o644)?;
    // A fixed identity: an empty machine-id would make this a "first boot" every time.
    let id = fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map_err(|e| e.to_string())?
        .trim()
        .replace('-', "");
    write_file(&root.join("etc/machine-id"), &format!("{id}\n"), 0o444)?;
    write_file(
        &root.join("usr/local/sbin/ocusers-vm-runner"),
        RUNNER,
        0o755,
    )?;
    write_file(
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
    run_logged(mkfs, &log, Duration::from_secs(600))?;
    fs::remove_dir_all(&root).map_err(|e| format!("removing {}: {e}", root.display()))?;
    write_file(
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
