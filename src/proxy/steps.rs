//! The plan steps that keep the proxy in step with the registry; `add`,
//! `remove` and `proxy sync` put them into their plans.
use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::Path;

use anyhow::Result;

use super::{ProxyConfig, link_of, links};
use crate::error::Error;
use crate::fsutil;
use crate::identity;
use crate::paths::{self, Paths};
use crate::plan::Step;
use crate::systemd::Systemd;
use crate::tenant::{Record, TenantName};

/// The include and the owner of the tenants' sockets: written, checked with
/// the proxy's own checker and (if it changed) loaded by a reload, never a
/// restart. A failed check puts the previous include back, so the running
/// proxy and its files stay as they were.
pub fn global_steps<'a>(
    paths: &'a Paths,
    cfg: &'a ProxyConfig,
    sd: &'a dyn Systemd,
    extra: &[String],
) -> Vec<Step<'a>> {
    let dropin = paths.proxy_socket_dropin();
    let dropin_text = format!(
        "# Written by ocusers: the proxy ({}) connects to the tenants' sockets.\n[Socket]\nSocketUser={}\nSocketMode=0600\n",
        cfg.program(),
        cfg.user()
    );
    let dropin_before = std::fs::read(&dropin).ok();
    let dropin_step = {
        let (d1, d2, d3) = (dropin.clone(), dropin.clone(), dropin.clone());
        let (t1, t2) = (dropin_text.clone(), dropin_text);
        Step::new(
            format!(
                "let {} connect to the tenants' proxy sockets ({})",
                cfg.user(),
                dropin.display()
            ),
            move || Ok(std::fs::read(&d1).ok().as_deref() == Some(t1.as_bytes())),
            move || {
                fsutil::ensure_dir(d2.parent().expect("drop-in dir"), 0o755)?;
                fsutil::write_atomic(&d2, t2.as_bytes(), 0o644)?;
                sd.daemon_reload()
            },
        )
        .revert(move || {
            restore(&d3, dropin_before.as_deref(), 0o644)?;
            sd.daemon_reload()
        })
    };

    let include = paths.host_path(cfg.include());
    let text = cfg.render(extra);
    let before = std::fs::read(&include).ok();
    let stamp = paths.proxy_loaded_stamp();
    let include_step = {
        let (i1, i2, i3) = (include.clone(), include.clone(), include.clone());
        let (t1, t2) = (text.clone(), text);
        let (s1, s2, s3) = (stamp.clone(), stamp.clone(), stamp);
        let before_run = before.clone();
        Step::new(
            format!(
                "write {} and check it with {}; reload {} if it changed",
                include.display(),
                cfg.program(),
                cfg.unit()
            ),
            move || {
                let current = std::fs::read(&i1).ok();
                Ok(current.as_deref() == Some(t1.as_bytes())
                    && std::fs::read(&s1).ok().as_deref() == Some(t1.as_bytes()))
            },
            move || {
                let previous = std::fs::read(&i2).ok();
                if previous.as_deref() != Some(t2.as_bytes()) {
                    fsutil::ensure_dir(i2.parent().expect("include dir"), 0o755)?;
                    fsutil::write_atomic(&i2, t2.as_bytes(), 0o644)?;
                }
                if let Err(e) = load(cfg, sd, &s2, t2.as_bytes()) {
                    // Put back what the proxy was running with.
                    restore(&i2, previous.as_deref(), 0o644)?;
                    return Err(e);
                }
                Ok(())
            },
        )
        .revert(move || {
            restore(&i3, before_run.as_deref(), 0o644)?;
            match &before_run {
                Some(old) => load(cfg, sd, &s3, old),
                None => fsutil::remove_file(&s3),
            }
        })
    };
    vec![dropin_step, include_step]
}

/// Check the proxy's whole configuration, that it includes ours, and reload
/// the proxy if it runs; then remember what it loaded.
fn load(cfg: &ProxyConfig, sd: &dyn Systemd, stamp: &Path, text: &[u8]) -> Result<()> {
    cfg.validate()?;
    if !cfg.includes_ours()? {
        return Err(Error::ProxyNotIncluded {
            config: cfg.main_config(),
            line: cfg.include_line(),
        }
        .into());
    }
    let unit = cfg.unit();
    if sd.active_state(&unit)? == "active" {
        sd.reload(&unit)?;
    } else {
        tracing::warn!("{unit} is not running; it loads the tenants' routes when it starts");
    }
    fsutil::ensure_dir(stamp.parent().expect("stamp dir"), 0o755)?;
    fsutil::write_atomic(stamp, text, 0o644)
}

/// Put a file back as it was (`None`: it did not exist).
fn restore(path: &Path, content: Option<&[u8]>, mode: u32) -> Result<()> {
    match content {
        Some(c) => fsutil::write_atomic(path, c, mode),
        None => fsutil::remove_file(path),
    }
}

/// The host names that route to `name` now.
fn routed_hosts(paths: &Paths, name: &TenantName) -> Result<BTreeSet<String>> {
    Ok(links(paths)?
        .into_iter()
        .filter(|(_, t)| t == name.as_str())
        .map(|(h, _)| h)
        .collect())
}

fn socket_owned_by(paths: &Paths, name: &TenantName, user: &str) -> bool {
    let uid = identity::lookup(user).map(|a| a.uid);
    std::fs::symlink_metadata(paths.proxy_socket(name)).is_ok_and(|m| Some(m.uid()) == uid)
}

/// Route a tenant's host names to it: the host links and its proxy socket.
pub fn route_step<'a>(
    paths: &'a Paths,
    cfg: &'a ProxyConfig,
    sd: &'a dyn Systemd,
    record: &'a Record,
) -> Step<'a> {
    let name = &record.name;
    let hosts: BTreeSet<String> = cfg.hosts_of(record).into_iter().collect();
    let socket = paths::proxy_socket_unit(name);
    let shown = hosts.iter().cloned().collect::<Vec<_>>().join(", ");
    let (h1, h2) = (hosts.clone(), hosts);
    let (u1, u2, u3) = (socket.clone(), socket.clone(), socket.clone());
    // A tenant routed before (a changed domain) gets its earlier links
    // back when a later step fails, not its routes taken away.
    let before = routed_hosts(paths, name).unwrap_or_default();
    Step::new(
        format!("route {shown} to {name} through {socket}"),
        move || {
            Ok(routed_hosts(paths, name)? == h1
                && sd.unit_file_state(&u1)? == "enabled"
                && sd.active_state(&u1)? == "active"
                && socket_owned_by(paths, name, cfg.user()))
        },
        move || {
            fsutil::ensure_dir(&paths.proxy_hosts_dir(), 0o755)?;
            for host in routed_hosts(paths, name)?.difference(&h2) {
                fsutil::remove_file(&link_of(paths, host))?;
            }
            link_hosts(paths, name, &h2)?;
            sd.enable(&u2)?;
            if sd.active_state(&u2)? == "active" && !socket_owned_by(paths, name, cfg.user()) {
                // The proxy changed: the socket is made anew for its user.
                sd.stop(&u2)?;
            }
            sd.start(&u2)
        },
    )
    .revert(move || {
        if before.is_empty() {
            return unroute(paths, sd, name, &u3);
        }
        for host in routed_hosts(paths, name)?.difference(&before) {
            fsutil::remove_file(&link_of(paths, host))?;
        }
        link_hosts(paths, name, &before)
    })
}

/// Point each host's link at the tenant's socket directory (atomically).
fn link_hosts(paths: &Paths, name: &TenantName, hosts: &BTreeSet<String>) -> Result<()> {
    let target = paths::proxy_socket_dir(name);
    for host in hosts {
        let link = link_of(paths, host);
        let tmp = link.with_extension(format!("tmp{}", std::process::id()));
        fsutil::remove_file(&tmp)?;
        symlink(&target, &tmp)?;
        std::fs::rename(&tmp, &link)?;
    }
    Ok(())
}

fn unroute(paths: &Paths, sd: &dyn Systemd, name: &TenantName, socket: &str) -> Result<()> {
    for host in routed_hosts(paths, name)? {
        fsutil::remove_file(&link_of(paths, &host))?;
    }
    let service = socket.replace(".socket", ".service");
    sd.stop(socket)?;
    sd.stop(&service)?;
    sd.disable(socket)?;
    sd.reset_failed(socket)?;
    sd.reset_failed(&service)?;
    // The socket's directory, empty once the socket is gone.
    let _ =
        std::fs::remove_dir(paths.host_path(std::path::Path::new(&paths::proxy_socket_dir(name))));
    Ok(())
}

/// Take a tenant's public routes away (also when public access is off now).
pub fn route_removal_step<'a>(
    paths: &'a Paths,
    sd: &'a dyn Systemd,
    name: &'a TenantName,
) -> Step<'a> {
    let socket = paths::proxy_socket_unit(name);
    let (u1, u2) = (socket.clone(), socket.clone());
    Step::new(
        format!("remove the public routes of {name} and stop {socket}"),
        move || {
            let service = u1.replace(".socket", ".service");
            Ok(routed_hosts(paths, name)?.is_empty()
                && sd.unit_file_state(&u1)? != "enabled"
                && !matches!(sd.active_state(&u1)?.as_str(), "active" | "deactivating")
                && !matches!(
                    sd.active_state(&service)?.as_str(),
                    "active" | "deactivating"
                ))
        },
        move || unroute(paths, sd, name, &u2),
    )
}

/// Links for host names no registered tenant has (a tenant removed by hand,
/// a changed domain).
pub fn stale_links_step<'a>(
    paths: &'a Paths,
    cfg: &'a ProxyConfig,
    records: &'a [Record],
) -> Step<'a> {
    let wanted: BTreeSet<(String, String)> = if cfg.enabled() {
        records
            .iter()
            .flat_map(|r| cfg.hosts_of(r).into_iter().map(|h| (h, r.name.to_string())))
            .collect()
    } else {
        BTreeSet::new()
    };
    let (w1, w2) = (wanted.clone(), wanted);
    let stale = move |w: &BTreeSet<(String, String)>| -> Result<Vec<String>> {
        Ok(links(paths)?
            .into_iter()
            .filter(|l| !w.contains(l))
            .map(|(h, _)| h)
            .collect())
    };
    Step::new(
        format!(
            "remove host links in {} that route to no tenant",
            paths.proxy_hosts_dir().display()
        ),
        move || Ok(stale(&w1)?.is_empty()),
        move || {
            for host in stale(&w2)? {
                fsutil::remove_file(&link_of(paths, &host))?;
            }
            Ok(())
        },
    )
}
