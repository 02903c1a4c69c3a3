//! Default deny on the host's own addresses: nftables rules that keep each
//! tenant's sockets to its own port block on loopback and on every address
//! of the host, and close each block to everyone else. One table of
//! ocusers' own, `table inet ocusers`, regenerated from the registry and
//! `[isolation]` by `add` and `remove`, written to
//! `/var/lib/ocusers/firewall.nft` and loaded from there at boot by
//! `ocusers-firewall.service`.
//!
//! Everything is in the output hook, where the kernel knows the sending
//! socket and its owner (`meta skuid`, the file owner of the socket), and
//! the per-tenant facts are set elements, so the rules do not grow with the
//! tenants (threat model rule 3):
//!
//! * **answer** (every packet, any conntrack state): a packet *from* a port
//!   of a tenant's block sent by a socket of anyone but that tenant or root is
//!   dropped. A process of another user that binds the port while the tenant
//!   is stopped (which the socket-bind filter prevents only where systemd has
//!   its BPF framework) can then never complete a TCP handshake, so it never
//!   receives a request, a token or a cookie meant for the tenant.
//! * **tenant, first packet to a host-local address** (`ct state new`;
//!   127.0.0.0/8, ::1 and `fib daddr type local`): allowed only to the
//!   tenant's own block, the operator's `[isolation] allow_local` and the
//!   host's resolver on port 53 when /etc/resolv.conf names a local
//!   nameserver; anything else is refused at once (TCP reset, ICMP port
//!   unreachable), so a tool fails fast. Later packets of a connection (the
//!   answers of the tenant's own listeners) are not affected.
//! * **tenant, first packet to link-local or cloud metadata addresses**
//!   ([`METADATA`]): refused unless allow-listed.
//! * **connect** (anyone else, to a host-local address): a packet to a
//!   tenant's block from a socket of anyone but the tenant or root is refused
//!   (TCP reset). There is no exemption for the proxy: `systemd-socket-proxyd`
//!   relays as the tenant (`openclaw-proxy@.service`).
//!
//! What stays reachable: root reaches everything; a tenant reaches its own
//! ports, the allow-list, the local resolver and every other host; other
//! users reach everything but the tenants' blocks. Sockets without an owner
//! (the kernel's own replies, such as a reset from a closed port) are left
//! alone.
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::process::Command;
use std::sync::OnceLock;

use anyhow::Result;
use serde::Serialize;

use crate::config::{AllowLocal, FirewallMode, HostConfig, Proto};
use crate::error::Error;
use crate::fsutil;
use crate::identity::Accounts;
use crate::paths::{self, Paths};
use crate::process;
use crate::tenant::{self, Record, TenantName};

/// The nftables table ocusers owns (family inet: IPv4 and IPv6).
pub const TABLE: &str = "ocusers";
/// The unit that loads the rules at boot.
pub const UNIT: &str = "ocusers-firewall.service";

/// Link-local ranges and the cloud providers' metadata addresses (AWS,
/// GCP, OCI over IPv6; Alibaba's 100.100.100.200): instance credentials
/// and user-data for any local process. Tenants reach them only through
/// `allow_local`.
pub const METADATA: [&str; 6] = [
    "169.254.0.0/16",
    "100.100.100.200",
    "fe80::/10",
    "fd00:ec2::254",
    "fd20:ce::254",
    "fd00:c1::a9fe:a9fe",
];

/// Comments of the fixed rules (the loaded table is compared by comments).
const ANSWER: &str = "answer: from a tenant's block only its tenant or root (any state)";
const CONNECT_TCP: &str = "connect: a tenant's block only from its tenant or root (tcp)";
const CONNECT_UDP: &str = "connect: a tenant's block only from its tenant or root (udp)";
const LOCAL_TCP: &str = "tenant to a host-local address outside its block (tcp)";
const LOCAL_OTHER: &str = "tenant to a host-local address outside its block (udp, other)";
const META_TCP: &str = "tenant to link-local or cloud metadata (tcp)";
const META_OTHER: &str = "tenant to link-local or cloud metadata (udp, other)";

/// One tenant's rule inputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantRule {
    pub name: String,
    pub first_port: u16,
    pub last_port: u16,
    pub uid: u32,
}

/// Everything the ruleset is made from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inputs {
    pub tenants: Vec<TenantRule>,
    /// `[isolation] allow_local`.
    pub allow: Vec<AllowLocal>,
    /// Local nameservers of /etc/resolv.conf (port 53, TCP and UDP).
    pub resolvers: Vec<IpAddr>,
}

/// The rule set for these tenants: tenants whose user does not exist in
/// `ids` (yet, or any more) get no rules.
pub fn tenant_rules(records: &[Record], ids: &dyn Accounts) -> Vec<TenantRule> {
    let uids = ids.uids_by_name();
    records
        .iter()
        .filter_map(|r| {
            let uid = *uids.get(&paths::user_name(&r.name))?;
            Some(TenantRule {
                name: r.name.to_string(),
                first_port: r.port,
                last_port: r.last_port(),
                uid,
            })
        })
        .collect()
}

/// The nameservers of `resolv_conf` that are this host's own: loopback, or
/// an address a socket can bind (only the host's own addresses bind).
pub fn local_resolvers(resolv_conf: &std::path::Path) -> Vec<IpAddr> {
    let Ok(text) = std::fs::read_to_string(resolv_conf) else {
        return Vec::new();
    };
    let mut out: Vec<IpAddr> = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        // An IPv6 nameserver may carry a scope (fe80::1%eth0): not local.
        let Some(addr) = words.next().and_then(|w| w.parse::<IpAddr>().ok()) else {
            continue;
        };
        let local = addr.is_loopback()
            || addr.is_unspecified()
            || std::net::UdpSocket::bind((addr, 0)).is_ok();
        if local && !out.contains(&addr) {
            out.push(addr);
        }
    }
    out
}

fn q(comment: &str) -> String {
    // Comments are ocusers' own words, tenant names and validated
    // addresses; nft keeps at most 128 bytes of a comment.
    let c: String = comment.chars().filter(|c| *c != '"').take(120).collect();
    format!("comment \"{c}\"")
}

/// A set: its elements one a line, each with its comment.
fn set(out: &mut String, name: &str, typeof_: &str, interval: bool, elems: &[(String, String)]) {
    out.push_str(&format!("\tset {name} {{\n\t\ttypeof {typeof_}\n"));
    if interval {
        out.push_str("\t\tflags interval\n");
    }
    if !elems.is_empty() {
        out.push_str("\t\telements = {\n");
        let n = elems.len();
        for (i, (e, c)) in elems.iter().enumerate() {
            let sep = if i + 1 < n { "," } else { "" };
            out.push_str(&format!("\t\t\t{e} {}{sep}\n", q(c)));
        }
        out.push_str("\t\t}\n");
    }
    out.push_str("\t}\n\n");
}

fn addr_elem(a: IpAddr) -> String {
    a.to_string()
}

/// The ruleset file: creating and deleting the table first makes loading it
/// replace ocusers' table atomically (one nft transaction) and touch nothing
/// else.
pub fn render(inputs: &Inputs) -> String {
    let mut out = String::from(
        "#!/usr/sbin/nft -f\n\
         # Generated by ocusers from /var/lib/ocusers/tenants and [isolation] in\n\
         # /etc/ocusers/ocusers.toml: do not edit, `ocusers add` and `ocusers remove`\n\
         # rewrite it. Loaded at boot by ocusers-firewall.service.\n\
         # A tenant's sockets reach the host's own addresses only in the tenant's port\n\
         # block, the allow-list and the local resolver; a tenant's block takes\n\
         # connections only from its tenant and root, and only they can answer from it.\n",
    );
    out.push_str(&format!(
        "table inet {TABLE}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n"
    ));
    let mut tenants = inputs.tenants.clone();
    tenants.sort_by_key(|t| (t.first_port, t.uid));

    let uids: Vec<(String, String)> = {
        let mut seen = BTreeSet::new();
        tenants
            .iter()
            .filter(|t| seen.insert(t.uid))
            .map(|t| (t.uid.to_string(), format!("{} uid {}", t.name, t.uid)))
            .collect()
    };
    set(&mut out, "tenant_uids", "meta skuid", false, &uids);

    // Blocks never overlap in a sound registry (`audit` fails if they do);
    // overlapping ones are merged so the set still loads.
    let mut blocks: Vec<(u16, u16, String)> = Vec::new();
    for t in &tenants {
        let c = format!("{} block {}-{}", t.name, t.first_port, t.last_port);
        match blocks.last_mut() {
            Some(last) if t.first_port <= last.1 => {
                last.1 = last.1.max(t.last_port);
                last.2 = format!("{}; {c}", last.2);
            }
            _ => blocks.push((t.first_port, t.last_port, c)),
        }
    }
    let blocks: Vec<(String, String)> = blocks
        .into_iter()
        .map(|(a, b, c)| (format!("{a}-{b}"), c))
        .collect();
    set(&mut out, "blocks", "th dport", true, &blocks);

    let own: Vec<(String, String)> = tenants
        .iter()
        .map(|t| {
            (
                format!("{} . {}-{}", t.uid, t.first_port, t.last_port),
                own_comment(&t.name, t.first_port, t.last_port, t.uid),
            )
        })
        .collect();
    set(&mut out, "own_ports", "meta skuid . th dport", true, &own);

    // Allow-list and resolvers: address . protocol . port.
    let mut allow: Vec<(IpAddr, Proto, u16, String)> = Vec::new();
    for a in &inputs.allow {
        for p in a.protos() {
            allow.push((a.addr, p, a.port, format!("allow_local {a} {}", p.as_str())));
        }
    }
    for r in &inputs.resolvers {
        for p in [Proto::Udp, Proto::Tcp] {
            allow.push((*r, p, 53, format!("resolver {r} {}", p.as_str())));
        }
    }
    let mut seen = BTreeSet::new();
    allow.retain(|(a, p, port, _)| seen.insert((*a, *p, *port)));
    let family = |v6: bool| -> Vec<(String, String)> {
        allow
            .iter()
            .filter(|(a, ..)| a.is_ipv6() == v6)
            .map(|(a, p, port, c)| {
                (
                    format!("{} . {} . {port}", addr_elem(*a), p.as_str()),
                    c.clone(),
                )
            })
            .collect()
    };
    set(
        &mut out,
        "allow4",
        "ip daddr . meta l4proto . th dport",
        false,
        &family(false),
    );
    set(
        &mut out,
        "allow6",
        "ip6 daddr . meta l4proto . th dport",
        false,
        &family(true),
    );
    let meta = |v6: bool| -> Vec<(String, String)> {
        METADATA
            .iter()
            .filter(|m| m.contains(':') == v6)
            .map(|m| (m.to_string(), format!("metadata {m}")))
            .collect()
    };
    set(&mut out, "metadata4", "ip daddr", true, &meta(false));
    set(&mut out, "metadata6", "ip6 daddr", true, &meta(true));

    let rules = [
        "\tchain output {",
        "\t\ttype filter hook output priority filter; policy accept;",
        "\t\tmeta skuid 0 accept",
        &format!(
            "\t\tmeta l4proto {{ tcp, udp }} th sport @blocks meta skuid . th sport != @own_ports counter drop {}",
            q(ANSWER)
        ),
        "\t\tip daddr 127.0.0.0/8 goto to_local",
        "\t\tip6 daddr ::1 goto to_local",
        "\t\tfib daddr type local goto to_local",
        "\t\tmeta skuid @tenant_uids ct state new ip daddr @metadata4 goto tenant_metadata",
        "\t\tmeta skuid @tenant_uids ct state new ip6 daddr @metadata6 goto tenant_metadata",
        "\t}",
        "",
        "\tchain to_local {",
        "\t\tmeta skuid @tenant_uids ct state new goto tenant_local",
        // A host whose own rules exempt loopback from conntrack (`notrack`)
        // gives no state: judge each packet, so the deny still holds.
        "\t\tmeta skuid @tenant_uids ct state untracked goto tenant_untracked",
        &format!(
            "\t\ttcp dport @blocks meta skuid . tcp dport != @own_ports counter reject with tcp reset {}",
            q(CONNECT_TCP)
        ),
        &format!(
            "\t\tudp dport @blocks meta skuid . udp dport != @own_ports counter reject {}",
            q(CONNECT_UDP)
        ),
        "\t}",
        "",
        "\tchain tenant_untracked {",
        "\t\tmeta l4proto { tcp, udp } meta skuid . th sport @own_ports return",
        "\t\ttcp flags & (syn | ack) != syn return",
        "\t\tgoto tenant_local",
        "\t}",
        "",
        "\tchain tenant_local {",
        "\t\tmeta l4proto { tcp, udp } meta skuid . th dport @own_ports accept",
        "\t\tmeta l4proto { tcp, udp } ip daddr . meta l4proto . th dport @allow4 accept",
        "\t\tmeta l4proto { tcp, udp } ip6 daddr . meta l4proto . th dport @allow6 accept",
        &format!(
            "\t\tmeta l4proto tcp counter reject with tcp reset {}",
            q(LOCAL_TCP)
        ),
        &format!("\t\tcounter reject {}", q(LOCAL_OTHER)),
        "\t}",
        "",
        "\tchain tenant_metadata {",
        "\t\tmeta l4proto { tcp, udp } ip daddr . meta l4proto . th dport @allow4 accept",
        "\t\tmeta l4proto { tcp, udp } ip6 daddr . meta l4proto . th dport @allow6 accept",
        &format!(
            "\t\tmeta l4proto tcp counter reject with tcp reset {}",
            q(META_TCP)
        ),
        &format!("\t\tcounter reject {}", q(META_OTHER)),
        "\t}",
        "}",
    ];
    for r in rules {
        out.push_str(r);
        out.push('\n');
    }
    out
}

fn own_comment(name: &str, first: u16, last: u16, uid: u32) -> String {
    format!("{name} own {first}-{last} uid {uid}")
}

/// Does the loaded table close this tenant's block (its own-ports and block
/// elements and the answer and connect rules are there)?
pub fn closes_block(table: &str, name: &str, first: u16, last: u16) -> bool {
    let have: BTreeSet<&str> = comments(table).collect();
    have.contains(format!("{name} block {first}-{last}").as_str())
        && have
            .iter()
            .any(|c| c.starts_with(&format!("{name} own {first}-{last} uid ")))
        && have.contains(ANSWER)
        && have.contains(CONNECT_TCP)
}

/// The ruleset the registry asks for now, leaving out `exclude` (a tenant
/// being removed, or whose `add` is being rolled back); the tenants' uids
/// from `ids` (`&identity::SYSTEM` but in tests).
pub fn desired(
    paths: &Paths,
    cfg: &HostConfig,
    exclude: Option<&TenantName>,
    ids: &dyn Accounts,
) -> Result<String> {
    let records: Vec<Record> = tenant::list(paths)?
        .into_iter()
        .filter(|r| Some(&r.name) != exclude)
        .collect();
    Ok(render(&Inputs {
        tenants: tenant_rules(&records, ids),
        allow: cfg.isolation.allow_local(),
        resolvers: local_resolvers(&paths.root().join("etc/resolv.conf")),
    }))
}

/// Can this host load nftables rules? `Err(why)` when nft is missing or the
/// kernel refuses (a container without CAP_NET_ADMIN).
pub fn availability() -> &'static Result<(), String> {
    static AVAILABLE: OnceLock<Result<(), String>> = OnceLock::new();
    AVAILABLE.get_or_init(|| {
        if process::which("nft").is_none() && !std::path::Path::new("/usr/sbin/nft").exists() {
            return Err("nft is not installed (apt install nftables)".into());
        }
        match process::run(Command::new(nft()).args(["list", "tables"])) {
            Ok(_) => Ok(()),
            Err(e) => Err(format!("nft cannot read the ruleset here: {e}")),
        }
    })
}

/// Is this a container (systemd-nspawn, docker, ...)? A container usually
/// shares the host's network namespace, where rules would change the host's
/// firewall, so mode `auto` leaves nftables alone there.
pub fn in_container() -> bool {
    if std::fs::read_to_string("/run/systemd/container").is_ok_and(|s| !s.trim().is_empty()) {
        return true;
    }
    std::fs::read("/proc/1/environ").is_ok_and(|env| {
        env.split(|b| *b == 0)
            .any(|kv| kv.starts_with(b"container=") && kv.len() > "container=".len())
    })
}

/// Will ocusers load rules here under this configuration? `Err(why)` if not.
pub fn usable(cfg: &HostConfig) -> Result<(), String> {
    #[cfg(test)]
    if NO_NFT.get() {
        return Err("this test thread loads no nftables rules".into());
    }
    match cfg.isolation.firewall {
        FirewallMode::Off => Err("[isolation] firewall = \"off\" in /etc/ocusers/ocusers.toml".into()),
        FirewallMode::Auto if in_container() => Err(
            "running in a container, which may share the host's network namespace: ocusers leaves nftables alone (set [isolation] firewall = \"required\" if this container has its own network)".into(),
        ),
        _ => availability().clone(),
    }
}

#[cfg(test)]
thread_local! {
    static NO_NFT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// From now on in this thread, this host cannot load rules ([`usable`]
/// says why): mode `auto` then writes the ruleset file and loads nothing,
/// whoever runs the test.
#[cfg(test)]
pub(crate) fn load_no_rules_in_this_thread() {
    NO_NFT.set(true);
}

fn nft() -> &'static str {
    if std::path::Path::new("/usr/sbin/nft").exists() {
        "/usr/sbin/nft"
    } else {
        "nft"
    }
}

/// The table as the kernel has it, or None.
pub fn loaded_table() -> Option<String> {
    let out = Command::new(nft())
        .args(["list", "table", "inet", TABLE])
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What the loaded table must show for `text`: every rule's comment.
fn loaded_matches(text: &str, loaded: &str) -> bool {
    let want: BTreeSet<&str> = comments(text).collect();
    let have: BTreeSet<&str> = comments(loaded).collect();
    want == have
}

fn comments(text: &str) -> impl Iterator<Item = &str> {
    text.split("comment \"")
        .skip(1)
        .filter_map(|rest| rest.split_once('"').map(|(c, _)| c))
}

/// Is the host's firewall what the registry asks for? The file must match;
/// the loaded table too, unless the firewall is off or (mode `auto`) this
/// host cannot have one.
pub fn is_current(
    paths: &Paths,
    cfg: &HostConfig,
    exclude: Option<&TenantName>,
    ids: &dyn Accounts,
) -> Result<bool> {
    let want = desired(paths, cfg, exclude, ids)?;
    if cfg.isolation.firewall == FirewallMode::Off {
        return Ok(true);
    }
    let file_ok = std::fs::read_to_string(paths.firewall_file())
        .ok()
        .as_deref()
        == Some(&want);
    if !file_ok {
        return Ok(false);
    }
    match usable(cfg) {
        Err(_) if cfg.isolation.firewall == FirewallMode::Auto => Ok(true),
        _ => Ok(loaded_table().is_some_and(|t| loaded_matches(&want, &t))),
    }
}

/// Write the ruleset file and load it. In mode `auto`, a host that cannot
/// load rules gets a warning (and `ocusers audit` fails on it); in mode
/// `required` that is an error.
pub fn sync(
    paths: &Paths,
    cfg: &HostConfig,
    exclude: Option<&TenantName>,
    ids: &dyn Accounts,
) -> Result<()> {
    if cfg.isolation.firewall == FirewallMode::Off {
        return Ok(());
    }
    if !cfg.isolation.proxy_users.is_empty() {
        tracing::warn!(
            "[isolation] proxy_users in /etc/ocusers/ocusers.toml is ignored: the proxy reaches each tenant through systemd-socket-proxyd, which connects as the tenant; delete the key"
        );
    }
    let want = desired(paths, cfg, exclude, ids)?;
    let file = paths.firewall_file();
    if let Some(dir) = file.parent() {
        fsutil::ensure_dir(dir, 0o755)?;
    }
    fsutil::write_atomic(&file, want.as_bytes(), 0o644)?;
    if let Err(why) = usable(cfg) {
        if cfg.isolation.firewall == FirewallMode::Auto {
            tracing::warn!(
                "tenant ports are not firewalled on this host ({why}); `ocusers audit` reports it. \
                 Set [isolation] firewall = \"required\" to make this an error."
            );
            return Ok(());
        }
        return Err(Error::FirewallUnavailable { why }.into());
    }
    process::run(Command::new(nft()).arg("-f").arg(&file))?;
    Ok(())
}

#[cfg(test)]
mod tests;
