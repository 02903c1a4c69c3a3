//! A running guest (see [`super`]): qemu on the cached image, the 9p share as the command
//! channel.
use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::super::process::{first_line, run, tail_lines, write_file};
use super::image::{GuestImage, QEMU};

const BOOT_TIMEOUT: Duration = Duration::from_secs(600);

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
            tail_lines(&self.stdout, 30),
            tail_lines(&self.stderr, 30)
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
        write_file(
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
            tail_lines(
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
