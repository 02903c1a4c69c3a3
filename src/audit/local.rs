//! The host-local probes of `ocusers audit` (threat model rule 3): each
//! tenant, as its user inside its unit, tries what its agent's tools would
//! try against the host itself, and the firewall must refuse at once:
//!
//! * TCP to a root listener on 127.0.0.1, on ::1 and on one of the host's
//!   own non-loopback addresses (a stand-in for every host service: a
//!   database, the proxy's admin API, an inspector);
//! * UDP to a root echo socket on 127.0.0.1 and ::1;
//! * TCP to the cloud metadata addresses (169.254.169.254, fd00:ec2::254),
//!   only where ocusers' table is loaded, so the packet never leaves the
//!   host (the output hook refuses it, or there is no route at all);
//! * TCP to every listener another tenant's unit runs outside its block
//!   (a dev server on 3000), on 127.0.0.1 and ::1.
//!
//! The bait sockets are root's, on ports the kernel picks (outside every
//! block); targets are named without those ports, so two audits of an
//! unchanged host say the same thing.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::pairs::probed_as;
use super::probe::{self, Kind, Outcome};
use super::{ProbeResult, Tenant};
use crate::config::{AllowLocal, Proto};
use crate::paths;
use crate::ports;

/// What the probes aim at: a probe name, a stable description, the address.
struct Target {
    probe: &'static str,
    what: String,
    kind: Kind,
    addr: SocketAddr,
}

/// Root's listeners and echo sockets for one audit; dropped at its end.
pub(super) struct Bait {
    targets: Vec<Target>,
    _tcp: Vec<TcpListener>,
    stop: Arc<AtomicBool>,
    echoes: Vec<JoinHandle<()>>,
}

/// Where the metadata probes go.
const METADATA_TARGETS: [(&str, &str); 2] = [
    ("metadata", "169.254.169.254:80"),
    ("metadata6", "[fd00:ec2::254]:80"),
];

impl Bait {
    /// Open the bait; `metadata`: also probe the metadata addresses (only
    /// where ocusers' table is loaded).
    pub(super) fn open(metadata: bool, allow: &[AllowLocal]) -> Bait {
        let mut targets = Vec::new();
        let mut tcp = Vec::new();
        let stop = Arc::new(AtomicBool::new(false));
        let mut echoes = Vec::new();
        let mut tcp_bait = |probe: &'static str, ip: IpAddr, what: String| {
            if let Ok(l) = TcpListener::bind((ip, 0))
                && let Ok(addr) = l.local_addr()
            {
                targets.push(Target {
                    probe,
                    what,
                    kind: Kind::Tcp,
                    addr,
                });
                tcp.push(l);
            }
        };
        tcp_bait(
            "local-tcp",
            Ipv4Addr::LOCALHOST.into(),
            "a root listener on 127.0.0.1".into(),
        );
        tcp_bait(
            "local-tcp6",
            Ipv6Addr::LOCALHOST.into(),
            "a root listener on ::1".into(),
        );
        if let Some(ip) = host_address() {
            tcp_bait(
                "host-address-tcp",
                ip,
                format!("a root listener on the host's address {ip}"),
            );
        }
        for (probe, ip) in [
            ("local-udp", IpAddr::from(Ipv4Addr::LOCALHOST)),
            ("local-udp6", IpAddr::from(Ipv6Addr::LOCALHOST)),
        ] {
            let Ok(sock) = UdpSocket::bind((ip, 0)) else {
                continue;
            };
            let Ok(addr) = sock.local_addr() else {
                continue;
            };
            let _ = sock.set_read_timeout(Some(Duration::from_millis(100)));
            let stop = stop.clone();
            echoes.push(std::thread::spawn(move || {
                let mut buf = [0u8; 512];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = sock.recv_from(&mut buf) {
                        let _ = sock.send_to(&buf[..n], from);
                    }
                }
            }));
            targets.push(Target {
                probe,
                what: format!("a root UDP socket on {ip}"),
                kind: Kind::Udp,
                addr,
            });
        }
        if metadata {
            for (probe, addr) in METADATA_TARGETS {
                let addr: SocketAddr = addr.parse().expect("metadata address");
                let opened = allow.iter().any(|a| {
                    a.addr == addr.ip() && a.port == addr.port() && a.protos().contains(&Proto::Tcp)
                });
                if !opened {
                    targets.push(Target {
                        probe,
                        what: format!("the cloud metadata service {addr}"),
                        kind: Kind::Tcp,
                        addr,
                    });
                }
            }
        }
        Bait {
            targets,
            _tcp: tcp,
            stop,
            echoes,
        }
    }
}

impl Drop for Bait {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.echoes.drain(..) {
            let _ = t.join();
        }
    }
}

/// One of the host's own addresses that is not loopback or link-local
/// (IPv4 first), if it has one.
fn host_address() -> Option<IpAddr> {
    let mut found: Vec<IpAddr> = Vec::new();
    // SAFETY: getifaddrs fills a list we only read and then free.
    unsafe {
        let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
        if libc::getifaddrs(&mut head) != 0 {
            return None;
        }
        let mut cur = head;
        while !cur.is_null() {
            let ifa = &*cur;
            cur = ifa.ifa_next;
            let up = ifa.ifa_flags & libc::IFF_UP as u32 != 0;
            if !up || ifa.ifa_addr.is_null() {
                continue;
            }
            match i32::from((*ifa.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                    if !ip.is_loopback() && !ip.is_link_local() && !ip.is_unspecified() {
                        found.push(ip.into());
                    }
                }
                libc::AF_INET6 => {
                    let sin6 = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                    let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                    let link_local = ip.segments()[0] & 0xffc0 == 0xfe80;
                    if !ip.is_loopback() && !link_local && !ip.is_unspecified() {
                        found.push(ip.into());
                    }
                }
                _ => {}
            }
        }
        libc::freeifaddrs(head);
    }
    found.sort_by_key(|ip| ip.is_ipv6());
    found.into_iter().next()
}

/// The host-local probes of `from`: against the bait, and against the
/// listeners the other tenants' units run outside their blocks.
pub(super) fn probe_host(
    from: &Tenant,
    all: &[Tenant],
    bait: &Bait,
    listeners: &[ports::Listener],
) -> Vec<ProbeResult> {
    let fname = from.record.name.to_string();
    let Some(account) = &from.account else {
        return Vec::new();
    };
    let cg = from.cgroup.as_deref();
    let where_ = probed_as(from);
    let one = |to: &str, probe: &'static str, what: String, kind: Kind, addr: SocketAddr| {
        let (result, ok, detail) = match probe::probe_as_tenant(
            account,
            cg,
            kind,
            &addr.to_string(),
        ) {
            Ok(Outcome::Denied(why)) => ("denied", true, format!("{why} ({where_})")),
            Ok(Outcome::Allowed) => (
                "allowed",
                false,
                format!(
                    "the firewall let it through ({where_}): only the tenant's own block, [isolation] allow_local and a local resolver are open to it"
                ),
            ),
            Ok(Outcome::Broken(e)) => ("error", false, format!("{e} ({where_})")),
            Err(e) => ("error", false, format!("{e:#}")),
        };
        ProbeResult {
            from: fname.clone(),
            to: to.to_string(),
            probe,
            target: what,
            result,
            ok,
            detail,
        }
    };
    let mut out: Vec<ProbeResult> = bait
        .targets
        .iter()
        .map(|t| one("the host", t.probe, t.what.clone(), t.kind, t.addr))
        .collect();
    // Another tenant's listeners outside its block.
    for to in all.iter().filter(|t| t.record.name != from.record.name) {
        let unit = crate::cgroup::unit_path(&paths::unit_name(&to.record.name));
        let r = &to.record;
        let mut seen = std::collections::BTreeSet::new();
        for l in listeners
            .iter()
            .filter(|l| l.port < r.port || l.port > r.last_port())
            .filter(|l| l.cgroups.contains(&unit))
            .filter(|l| seen.insert(l.port))
        {
            for (probe, ip) in [
                ("connect-other", IpAddr::from(Ipv4Addr::LOCALHOST)),
                ("connect-other6", IpAddr::from(Ipv6Addr::LOCALHOST)),
            ] {
                out.push(one(
                    r.name.as_str(),
                    probe,
                    format!("{ip} port {} (outside its block)", l.port),
                    Kind::Tcp,
                    SocketAddr::new(ip, l.port),
                ));
            }
        }
    }
    out
}
