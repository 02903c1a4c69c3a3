//! Port blocks: each tenant owns `block` consecutive ports starting at its
//! gateway port. A block is free when no registered tenant's block overlaps
//! it and nothing on the live system listens inside it.
use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result};

use crate::config::PortsConfig;
use crate::error::Error;
use crate::tenant::Record;

/// Ports with a TCP listener right now (IPv4 and IPv6), read from
/// `/proc/net/tcp{,6}` under `root`.
pub fn live_listeners(root: &Path) -> Result<BTreeSet<u16>> {
    let mut ports = BTreeSet::new();
    for file in ["proc/net/tcp", "proc/net/tcp6"] {
        let path = root.join(file);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        ports.extend(parse_proc_net_tcp(&text));
    }
    Ok(ports)
}

/// Local ports of sockets in state LISTEN (0A) in a `/proc/net/tcp` table.
pub fn parse_proc_net_tcp(text: &str) -> impl Iterator<Item = u16> + '_ {
    text.lines().skip(1).filter_map(|line| {
        let mut fields = line.split_whitespace();
        let local = fields.nth(1)?;
        let state = fields.nth(1)?;
        if state != "0A" {
            return None;
        }
        let port_hex = local.rsplit(':').next()?;
        u16::from_str_radix(port_hex, 16).ok()
    })
}

/// A listening TCP socket and the processes holding it, with their cgroup
/// (v2 path, like `/openclaw.slice/openclaw@alice.service`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub port: u16,
    pub pids: Vec<u32>,
    pub cgroups: Vec<String>,
}

/// Every listening TCP socket (IPv4 and IPv6) with its owners, found by
/// matching socket inodes in `/proc/net/tcp{,6}` to `/proc/PID/fd`.
pub fn listener_owners(root: &Path) -> Vec<Listener> {
    let mut by_inode: std::collections::BTreeMap<u64, u16> = Default::default();
    for file in ["proc/net/tcp", "proc/net/tcp6"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && f[3] == "0A" {
                let port = f[1]
                    .rsplit(':')
                    .next()
                    .and_then(|h| u16::from_str_radix(h, 16).ok());
                if let (Some(port), Ok(inode)) = (port, f[9].parse::<u64>()) {
                    by_inode.insert(inode, port);
                }
            }
        }
    }
    let mut owners: std::collections::BTreeMap<u64, BTreeSet<u32>> = Default::default();
    for entry in std::fs::read_dir(root.join("proc"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        for fd in std::fs::read_dir(entry.path().join("fd"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let inode = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<u64>().ok());
            if let Some(inode) = inode.filter(|i| by_inode.contains_key(i)) {
                owners.entry(inode).or_default().insert(pid);
            }
        }
    }
    let mut out: Vec<Listener> = by_inode
        .iter()
        .map(|(inode, port)| {
            let pids: Vec<u32> = owners.get(inode).into_iter().flatten().copied().collect();
            let cgroups: BTreeSet<String> = pids
                .iter()
                .filter_map(|pid| {
                    let text =
                        std::fs::read_to_string(root.join(format!("proc/{pid}/cgroup"))).ok()?;
                    text.lines()
                        .find_map(|l| l.strip_prefix("0::"))
                        .map(str::to_string)
                })
                .collect();
            Listener {
                port: *port,
                pids,
                cgroups: cgroups.into_iter().collect(),
            }
        })
        .collect();
    out.sort_by_key(|l| l.port);
    out
}

fn overlaps(a_start: u16, b_start: u16, block: u16) -> bool {
    let (a, b, n) = (u32::from(a_start), u32::from(b_start), u32::from(block));
    a < b + n && b < a + n
}

/// Why the block at `port` cannot be used, if it cannot.
fn conflict(
    port: u16,
    pool: &PortsConfig,
    tenants: &[Record],
    live: &BTreeSet<u16>,
) -> Option<String> {
    let last = u32::from(port) + u32::from(pool.block) - 1;
    if let Some(t) = tenants
        .iter()
        .find(|t| overlaps(t.port, port, pool.block.max(t.block)))
    {
        return Some(format!(
            "tenant {} has ports {}-{}",
            t.name,
            t.port,
            t.last_port()
        ));
    }
    live.range(port..=last.min(u32::from(u16::MAX)) as u16)
        .next()
        .map(|p| format!("a process is listening on port {p}"))
}

/// The first free block in the pool.
pub fn allocate(
    pool: &PortsConfig,
    tenants: &[Record],
    live: &BTreeSet<u16>,
) -> Result<u16, Error> {
    let mut port = u32::from(pool.start);
    while port + u32::from(pool.block) - 1 <= u32::from(pool.end) {
        let p = port as u16;
        if conflict(p, pool, tenants, live).is_none() {
            return Ok(p);
        }
        port += u32::from(pool.block);
    }
    Err(Error::PoolExhausted {
        start: pool.start,
        end: pool.end,
        block: pool.block,
    })
}

/// Check a port the operator asked for with `--port`.
pub fn check_requested(
    port: u16,
    pool: &PortsConfig,
    tenants: &[Record],
    live: &BTreeSet<u16>,
) -> Result<(), Error> {
    if port < pool.start || u32::from(port) + u32::from(pool.block) - 1 > u32::from(pool.end) {
        return Err(Error::PortOutsidePool {
            port,
            start: pool.start,
            end: pool.end - (pool.block - 1),
        });
    }
    match conflict(port, pool, tenants, live) {
        Some(by) => Err(Error::PortTaken { port, by }),
        None => Ok(()),
    }
}

/// How many blocks the pool has room for.
pub fn pool_blocks(pool: &PortsConfig) -> u32 {
    let span = u32::from(pool.end) + 1 - u32::from(pool.start).min(u32::from(pool.end) + 1);
    span / u32::from(pool.block.max(1))
}

/// How many of the pool's blocks [`allocate`] could still hand out.
pub fn free_blocks(pool: &PortsConfig, tenants: &[Record], live: &BTreeSet<u16>) -> u32 {
    (0..pool_blocks(pool))
        .map(|i| u32::from(pool.start) + i * u32::from(pool.block))
        .filter(|&port| conflict(port as u16, pool, tenants, live).is_none())
        .count() as u32
}

/// `/proc/sys/net/ipv4/ip_local_port_range` ("32768\t60999\n"): the
/// kernel's ephemeral range, which connect() takes source ports from.
pub fn parse_local_port_range(text: &str) -> Option<(u16, u16)> {
    let mut it = text.split_whitespace().map(|w| w.parse::<u16>().ok());
    match (it.next()??, it.next()??) {
        (a, b) if a <= b => Some((a, b)),
        _ => None,
    }
}

/// The part of the pool inside the ephemeral range `range`, if any: a
/// gateway could find its port taken by some process's outgoing connection.
pub fn ephemeral_overlap(pool: &PortsConfig, range: (u16, u16)) -> Option<(u16, u16)> {
    let lo = pool.start.max(range.0);
    let hi = pool.end.min(range.1);
    (lo <= hi).then_some((lo, hi))
}

/// Linux's default `ip_local_port_range`.
pub const LINUX_EPHEMERAL: (u16, u16) = (32768, 60999);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::TenantName;

    const POOL: PortsConfig = PortsConfig {
        start: 20000,
        end: 20511,
        block: 128,
    };

    fn t(name: &str, port: u16) -> Record {
        Record {
            name: TenantName::parse(name).unwrap(),
            port,
            block: 128,
            tier: "standard".into(),
            runtime: "1".into(),
            created: String::new(),
            domains: Vec::new(),
            limits: Default::default(),
        }
    }

    #[test]
    fn parses_listeners_v4_and_v6() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:4E20 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 1 1 0 10 0\n   1: 0100007F:4E21 0100007F:9C40 01 00000000:00000000 00:00000000 00000000   999        0 2 1 0 10 0\n";
        let v6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 00000000000000000000000001000000:4E84 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1 0 10 0\n";
        assert_eq!(parse_proc_net_tcp(v4).collect::<Vec<_>>(), [20000]);
        assert_eq!(parse_proc_net_tcp(v6).collect::<Vec<_>>(), [20100]);
    }

    #[test]
    fn allocates_first_free_block_spaced_by_block() {
        let none = BTreeSet::new();
        assert_eq!(allocate(&POOL, &[], &none).unwrap(), 20000);
        let tenants = [t("alice", 20000)];
        assert_eq!(allocate(&POOL, &tenants, &none).unwrap(), 20128);
        // A stranger listening inside the second block skips it.
        let live = BTreeSet::from([20200]);
        assert_eq!(allocate(&POOL, &tenants, &live).unwrap(), 20256);
    }

    #[test]
    fn exhausted_pool_says_so() {
        let tenants = [t("a", 20000), t("b", 20128), t("c", 20256), t("d", 20384)];
        let err = allocate(&POOL, &tenants, &BTreeSet::new()).unwrap_err();
        assert!(matches!(err, Error::PoolExhausted { .. }), "{err}");
    }

    #[test]
    fn requested_ports_are_checked() {
        let none = BTreeSet::new();
        let tenants = [t("alice", 20000)];
        assert!(check_requested(20128, &POOL, &tenants, &none).is_ok());
        let err = check_requested(20050, &POOL, &tenants, &none).unwrap_err();
        assert!(
            err.to_string()
                .contains("tenant alice has ports 20000-20127"),
            "{err}"
        );
        assert!(matches!(
            check_requested(19999, &POOL, &[], &none),
            Err(Error::PortOutsidePool { .. })
        ));
        assert!(matches!(
            check_requested(20400, &POOL, &[], &none),
            Err(Error::PortOutsidePool { .. })
        ));
        let live = BTreeSet::from([20130]);
        let err = check_requested(20128, &POOL, &[], &live).unwrap_err();
        assert!(err.to_string().contains("listening on port 20130"), "{err}");
    }

    #[test]
    fn counts_free_blocks() {
        // 20000..=20511 holds four blocks of 128.
        assert_eq!(pool_blocks(&POOL), 4);
        let none = BTreeSet::new();
        assert_eq!(free_blocks(&POOL, &[], &none), 4);
        let tenants = [t("alice", 20000), t("bob", 20256)];
        assert_eq!(free_blocks(&POOL, &tenants, &none), 2);
        // A listener inside a block takes it; one past the pool does not.
        let live: BTreeSet<u16> = [20130, 20600].into();
        assert_eq!(free_blocks(&POOL, &tenants, &live), 1);
        // A tenant off the grid (an older pool's) blocks the two it overlaps.
        assert_eq!(free_blocks(&POOL, &[t("old", 20064)], &none), 2);
        // A remainder shorter than a block is not a block.
        let odd = PortsConfig { end: 20510, ..POOL };
        assert_eq!(pool_blocks(&odd), 3);
    }

    #[test]
    fn shipped_pool_holds_200_below_the_ephemeral_range() {
        let text = include_str!("../policy/ocusers.toml");
        let v: toml::Value = toml::from_str(text).unwrap();
        let p = &v["ports"];
        let get = |k: &str| p[k].as_integer().unwrap() as u16;
        let pool = PortsConfig {
            start: get("start"),
            end: get("end"),
            block: get("block"),
        };
        assert!(
            pool_blocks(&pool) >= 200,
            "{pool:?}: {}",
            pool_blocks(&pool)
        );
        assert_eq!(ephemeral_overlap(&pool, LINUX_EPHEMERAL), None);
        // On the old pool's grid (20000 + k*128): tenants allocated before
        // the pool grew sit on whole blocks of the new one.
        assert_eq!((20000 - u32::from(pool.start)) % u32::from(pool.block), 0);
        assert_eq!(
            free_blocks(&pool, &[t("alice", 20000)], &BTreeSet::new()),
            pool_blocks(&pool) - 1
        );
    }

    #[test]
    fn reads_the_kernels_range() {
        assert_eq!(
            parse_local_port_range("32768\t60999\n"),
            Some((32768, 60999))
        );
        assert_eq!(parse_local_port_range("1024 65535"), Some((1024, 65535)));
        assert_eq!(parse_local_port_range("x"), None);
        assert_eq!(parse_local_port_range("9 3"), None);
        assert_eq!(
            ephemeral_overlap(&POOL, (20500, 60999)),
            Some((20500, 20511))
        );
        assert_eq!(ephemeral_overlap(&POOL, (20512, 60999)), None);
        assert_eq!(ephemeral_overlap(&POOL, (1024, 19999)), None);
    }
}
