//! Host processes and their output: run with a timeout (never hangs), log, signal, read
//! `/proc`, describe a failure. Used by every tier; nothing here knows about containers or VMs.
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

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

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `cmd` with stdout/stderr in unlinked temp files (so background processes that keep the
/// descriptors open cannot block us) in its own process group; kills the group on timeout, and
/// then stderr ends with a `[container] TIMEOUT` line. A failure to even start `cmd` is
/// reported as exit status 127 with the reason in stderr.
pub fn run_with_timeout(cmd: Command, timeout: Duration) -> Output {
    run_timed(cmd, timeout).0
}

/// [`run_with_timeout`], and whether the timeout killed it.
fn run_timed(mut cmd: Command, timeout: Duration) -> (Output, bool) {
    let program = format!("{:?}", cmd.get_program());
    let fail = |msg: String| {
        let out = Output {
            status: ExitStatus::from_raw(127 << 8),
            stdout: Vec::new(),
            stderr: msg.into_bytes(),
        };
        (out, false)
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
    let out = Output {
        status,
        stdout,
        stderr,
    };
    (out, timed_out)
}

/// Run on the host with a timeout; Err names the command and its output (or the timeout).
pub fn run(cmd: Command, timeout: Duration) -> Result<Output, String> {
    let what = format!("{cmd:?}");
    let (out, timed_out) = run_timed(cmd, timeout);
    if timed_out {
        return Err(format!("{what} timed out after {} s", timeout.as_secs()));
    }
    if !out.status.success() {
        return Err(format!("{what} failed: {}", describe(&out)));
    }
    Ok(out)
}

/// Runs `cmd` on the host; Ok(stdout) on success, else a specific error.
pub fn run_checked(cmd: Command, timeout: Duration) -> Result<String, String> {
    let what = format!("host command {cmd:?}");
    check(&what, run_with_timeout(cmd, timeout))
}

/// Runs `cmd` on the host, appending its output to `log`; on failure the error has the log tail.
pub fn run_logged(cmd: Command, log: &Path, timeout: Duration) -> Result<(), String> {
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
pub fn spawn_from_long_lived_thread(cmd: Command) -> std::io::Result<Child> {
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

pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
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

pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

pub fn signal_group(pgid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg("--")
        .arg(format!("-{pgid}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Field `n` (1-based, as in proc(5)) of /proc/PID/stat, for fields after the command name.
pub fn stat_field(pid: u32, n: usize) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    after.split_whitespace().nth(n - 3)?.parse().ok()
}

pub fn start_time(pid: u32) -> u64 {
    stat_field(pid, 22).unwrap_or(0)
}

pub fn effective_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let uids = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    uids.split_whitespace().nth(1)?.parse().ok()
}

pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
}

/// A tier's prerequisite check: one line per `(tool, Debian package)` missing on the host, plus
/// the `extra` problems; Err says "`tier` prerequisites are missing (this tier never skips)".
pub fn require_tools(tier: &str, tools: &[(&str, &str)], extra: Vec<String>) -> Result<(), String> {
    let mut problems = extra;
    for (tool, package) in tools {
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
            "{tier} prerequisites are missing (this tier never skips):\n  - {}",
            problems.join("\n  - ")
        ))
    }
}

/// `rm -rf --one-file-system`: never follows a mount into a bound host directory.
pub fn remove_tree(path: &Path) -> Result<(), String> {
    let mut rm = Command::new("rm");
    rm.args(["-rf", "--one-file-system", "--"]).arg(path);
    run_checked(rm, Duration::from_secs(300)).map(drop)
}

/// Writes `content` with `mode`, creating the parent directories; replaces a symlink at `path`
/// instead of writing through it.
pub fn write_file(path: &Path, content: &str, mode: u32) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let _ = fs::remove_file(path);
    fs::write(path, content).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot chmod {}: {e}", path.display()))
}

pub fn symlink_force(target: &Path, link: &Path) -> Result<(), String> {
    let _ = fs::remove_file(link);
    std::os::unix::fs::symlink(target, link).map_err(|e| format!("symlink {}: {e}", link.display()))
}

pub fn du_mb(path: &Path) -> u64 {
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

pub fn first_line(s: &str) -> &str {
    s.trim().lines().next().unwrap_or("")
}

/// The last `n` lines of `text`.
pub fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Last `n` lines of a console log, with ANSI escape sequences and carriage returns removed.
pub fn tail_of_file(path: &Path, n: usize) -> String {
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

/// Open `path` (made if missing) and hold an exclusive flock on it until
/// the returned file is dropped: one builder of a shared cache at a time.
pub fn lock_exclusive(path: &Path) -> Result<fs::File, String> {
    let lock = fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    lock.lock()
        .map_err(|e| format!("cannot flock {}: {e}", path.display()))?;
    Ok(lock)
}
