//! Live probes: one tenant tries to reach another the way its agent's shell
//! tools would, and the OS must say no. Each probe is a fresh process of
//! `ocusers audit-probe`, started as the tenant's user (no supplementary
//! groups) inside the tenant's unit cgroup when its gateway runs, so the
//! unit's cgroup filters (the bind restriction) apply to it as they apply to
//! the gateway.
use std::ffi::CString;
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

/// Exit status of `audit-probe` when the OS refused.
pub const DENIED: i32 = 10;
/// Exit status when the probe could not even try.
pub const BROKEN: i32 = 11;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// List a directory.
    ReadDir,
    /// Open a file for reading.
    ReadFile,
    /// kill(PID, 0): the permission check of sending a signal.
    Signal,
    /// bind() a TCP port on 127.0.0.1.
    Bind,
    /// connect() to a TCP port on 127.0.0.1 (3 s timeout).
    Connect,
    /// connect() to ADDRESS:PORT (IPv6 in brackets) over TCP; a refusal
    /// must come at once, so a timeout (2 s) is an error, not a denial.
    Tcp,
    /// Send a datagram to ADDRESS:PORT and wait 2 s for the echo.
    Udp,
}

/// Arguments of the hidden `ocusers audit-probe` (run by `ocusers audit`).
#[derive(Debug, Args)]
pub struct ProbeArgs {
    #[arg(value_enum)]
    pub kind: Kind,
    /// Path, PID or port.
    pub target: String,
}

/// Run one probe in this process: exit 0 if allowed, [`DENIED`] if the OS
/// refused, [`BROKEN`] otherwise; one line on stdout says what happened.
pub fn run_probe(args: &ProbeArgs) -> i32 {
    let result: std::io::Result<()> = match args.kind {
        Kind::ReadDir => std::fs::read_dir(&args.target).map(|_| ()),
        Kind::ReadFile => std::fs::File::open(&args.target).map(|_| ()),
        Kind::Signal => match args.target.parse::<i32>() {
            Ok(pid) => nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
                .map_err(std::io::Error::from),
            Err(e) => Err(std::io::Error::new(ErrorKind::InvalidInput, e)),
        },
        Kind::Bind => match args.target.parse::<u16>() {
            Ok(port) => TcpListener::bind(("127.0.0.1", port)).map(|_| ()),
            Err(e) => Err(std::io::Error::new(ErrorKind::InvalidInput, e)),
        },
        Kind::Tcp => match args.target.parse::<SocketAddr>() {
            Ok(addr) => TcpStream::connect_timeout(&addr, FAST).map(|_| ()),
            Err(e) => Err(std::io::Error::new(ErrorKind::InvalidInput, e)),
        },
        Kind::Udp => match args.target.parse::<SocketAddr>() {
            Ok(addr) => udp_echo(addr),
            Err(e) => Err(std::io::Error::new(ErrorKind::InvalidInput, e)),
        },
        Kind::Connect => match args.target.parse::<u16>() {
            Ok(port) => TcpStream::connect_timeout(
                &SocketAddr::from(([127, 0, 0, 1], port)),
                Duration::from_secs(3),
            )
            .map(|_| ()),
            Err(e) => Err(std::io::Error::new(ErrorKind::InvalidInput, e)),
        },
    };
    let fast = matches!(args.kind, Kind::Tcp | Kind::Udp);
    match result {
        Ok(()) => {
            println!("allowed");
            0
        }
        Err(e) if fast && is_timeout(&e) => {
            println!(
                "error: no answer and no refusal within {} s",
                FAST.as_secs()
            );
            BROKEN
        }
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::PermissionDenied | ErrorKind::ConnectionRefused | ErrorKind::TimedOut
            ) || matches!(
                e.raw_os_error(),
                Some(libc::EPERM | libc::ENETUNREACH | libc::EHOSTUNREACH)
            ) =>
        {
            println!("denied: {e}");
            DENIED
        }
        Err(e) => {
            println!("error: {e}");
            BROKEN
        }
    }
}

/// How long a fast probe waits.
const FAST: Duration = Duration::from_secs(2);

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock)
}

/// One datagram to `addr` and its echo back; a refusal shows as an error
/// of the send (the firewall drops it: EPERM) or of the receive (an ICMP
/// port unreachable: ECONNREFUSED).
fn udp_echo(addr: SocketAddr) -> std::io::Result<()> {
    let bind: SocketAddr = if addr.is_ipv6() {
        "[::]:0".parse().expect("address")
    } else {
        "0.0.0.0:0".parse().expect("address")
    };
    let s = std::net::UdpSocket::bind(bind)?;
    s.set_read_timeout(Some(FAST))?;
    s.connect(addr)?;
    s.send(b"ocusers audit probe")?;
    let mut buf = [0u8; 64];
    s.recv(&mut buf).map(|_| ())
}

/// What a probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Denied(String),
    Allowed,
    Broken(String),
}

/// Run `ocusers audit-probe KIND TARGET` as `uid`/`gid`, inside `cgroup`
/// (a directory under /sys/fs/cgroup) if given.
pub fn probe_as(
    uid: u32,
    gid: u32,
    cgroup: Option<&std::path::Path>,
    kind: Kind,
    target: &str,
) -> Result<Outcome> {
    let exe = std::env::current_exe().context("finding ocusers' own executable")?;
    let procs = cgroup
        .map(|c| CString::new(c.join("cgroup.procs").as_os_str().as_encoded_bytes()))
        .transpose()
        .context("cgroup path")?;
    let kind_arg = kind
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default();
    let mut cmd = Command::new(exe);
    cmd.args(["audit-probe", &kind_arg, target])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .current_dir("/")
        .stdin(Stdio::null())
        .stderr(Stdio::null());
    // After fork, before exec: join the cgroup while still root, then drop
    // to the tenant (groups, gid, uid, in that order). Only async-signal-
    // safe calls here; the path was allocated before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(procs) = &procs {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let zero = b"0\n";
                let n = libc::write(fd, zero.as_ptr().cast(), zero.len());
                libc::close(fd);
                if n < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(gid) != 0
                || libc::setuid(uid) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd
        .output()
        .with_context(|| format!("starting a probe as uid {uid}"))?;
    let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Ok(match out.status.code() {
        Some(0) => Outcome::Allowed,
        Some(DENIED) => Outcome::Denied(said.trim_start_matches("denied: ").to_string()),
        _ => Outcome::Broken(if said.is_empty() {
            format!("probe ended with {}", out.status)
        } else {
            said
        }),
    })
}

/// [`probe_as`] as the tenant, in its unit's cgroup when given; a host that
/// will not let us join the cgroup gets the probe as the user alone, and the
/// outcome says so.
pub fn probe_as_tenant(
    account: &crate::identity::Account,
    cgroup: Option<&std::path::Path>,
    kind: Kind,
    target: &str,
) -> Result<Outcome> {
    match probe_as(account.uid, account.gid, cgroup, kind, target) {
        Err(e) if cgroup.is_some() => {
            probe_as(account.uid, account.gid, None, kind, target).map(|o| match o {
                Outcome::Denied(why) => Outcome::Denied(format!(
                    "{why}; outside the unit: could not join its cgroup: {e:#}"
                )),
                other => other,
            })
        }
        other => other,
    }
}
