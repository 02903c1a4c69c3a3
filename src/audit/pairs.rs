//! The live probes of `ocusers audit` between two tenants: what `from` may
//! do to `to`, each tried by a process of `from`'s user (see probe.rs).
use std::collections::BTreeSet;

use super::probe::{self, Kind, Outcome};
use super::{ProbeResult, Tenant};
use crate::paths::{self, Paths};
use crate::ports;

pub(super) fn probe_pair(
    paths: &Paths,
    from: &Tenant,
    to: &Tenant,
    loaded: Option<&str>,
    listeners: &[ports::Listener],
) -> Vec<ProbeResult> {
    let mut out = Vec::new();
    let (fname, tname) = (from.record.name.to_string(), to.record.name.to_string());
    let result =
        |probe: &'static str, target: String, result: &'static str, ok: bool, detail: String| {
            ProbeResult {
                from: fname.clone(),
                to: tname.clone(),
                probe,
                target,
                result,
                ok,
                detail,
            }
        };
    let Some(account) = &from.account else {
        out.push(result(
            "all",
            String::new(),
            "not_run",
            false,
            format!("user of {fname} is missing"),
        ));
        return out;
    };
    let cg = from.cgroup.as_deref();
    let where_ = probed_as(from);
    // In the tenant's unit cgroup if it runs (where its cgroup filters
    // apply); a host that will not let us join it gets the probe as the user
    // alone, and says so.
    let run = |kind: Kind, target: &str| match probe::probe_as(
        account.uid,
        account.gid,
        cg,
        kind,
        target,
    ) {
        Err(e) if cg.is_some() => probe::probe_as(account.uid, account.gid, None, kind, target)
            .map(|o| match o {
                Outcome::Denied(why) => Outcome::Denied(format!(
                    "{why}; outside the unit: could not join its cgroup: {e:#}"
                )),
                other => other,
            }),
        other => other,
    };
    let mut simple = |probe: &'static str, kind: Kind, target: String| {
        let r = match run(kind, &target) {
            Ok(Outcome::Denied(why)) => {
                result(probe, target, "denied", true, format!("{why} ({where_})"))
            }
            Ok(Outcome::Allowed) => result(
                probe,
                target,
                "allowed",
                false,
                format!("the OS allowed it ({where_})"),
            ),
            Ok(Outcome::Broken(e)) => result(probe, target, "error", false, e),
            Err(e) => result(probe, target, "error", false, format!("{e:#}")),
        };
        out.push(r);
    };
    simple(
        "read-state",
        Kind::ReadDir,
        paths.state_dir(&to.record.name).display().to_string(),
    );
    simple(
        "read-secrets",
        Kind::ReadFile,
        paths.secrets_file(&to.record.name).display().to_string(),
    );
    if to.main_pid > 0 {
        simple(
            "read-environ",
            Kind::ReadFile,
            format!("/proc/{}/environ", to.main_pid),
        );
        simple("signal", Kind::Signal, to.main_pid.to_string());
    } else {
        out.push(result(
            "read-environ",
            String::new(),
            "not_run",
            true,
            format!("{tname} is not running"),
        ));
        out.push(result(
            "signal",
            String::new(),
            "not_run",
            true,
            format!("{tname} is not running"),
        ));
    }
    // bind: a port of the target's block nothing listens on.
    let busy: BTreeSet<u16> = listeners.iter().map(|l| l.port).collect();
    let r = &to.record;
    match (r.port..=r.last_port()).rev().find(|p| !busy.contains(p)) {
        Some(port) => {
            let contained = loaded
                .is_some_and(|t| crate::firewall::closes_block(t, &tname, r.port, r.last_port()));
            let pr = match run(Kind::Bind, &port.to_string()) {
                Ok(Outcome::Denied(why)) => result(
                    "bind",
                    port.to_string(),
                    "denied",
                    true,
                    format!("{why} ({where_})"),
                ),
                Ok(Outcome::Allowed) if contained => result(
                    "bind",
                    port.to_string(),
                    "contained",
                    true,
                    format!(
                        "bind allowed ({where_}; systemd does not enforce SocketBindAllow= here), but the firewall drops every answer from it"
                    ),
                ),
                Ok(Outcome::Allowed) => result(
                    "bind",
                    port.to_string(),
                    "allowed",
                    false,
                    format!("bind allowed ({where_}) and no firewall rule drops answers from it"),
                ),
                Ok(Outcome::Broken(e)) => result("bind", port.to_string(), "error", false, e),
                Err(e) => result("bind", port.to_string(), "error", false, format!("{e:#}")),
            };
            out.push(pr);
        }
        None => out.push(result(
            "bind",
            String::new(),
            "not_run",
            true,
            format!("every port of {tname} is in use"),
        )),
    }
    // connect: the target's gateway port, if it listens.
    if busy.contains(&r.port) {
        let port = r.port.to_string();
        let pr = match run(Kind::Connect, &port) {
            Ok(Outcome::Denied(why)) => {
                result("connect", port, "denied", true, format!("{why} ({where_})"))
            }
            Ok(Outcome::Allowed) => result(
                "connect",
                port,
                "allowed",
                false,
                format!("connected to {tname}'s gateway ({where_})"),
            ),
            Ok(Outcome::Broken(e)) => result("connect", port, "error", false, e),
            Err(e) => result("connect", port, "error", false, format!("{e:#}")),
        };
        out.push(pr);
    } else {
        out.push(result(
            "connect",
            r.port.to_string(),
            "not_run",
            true,
            format!("nothing listens on {tname}'s gateway port"),
        ));
    }
    out
}

/// Where a tenant's probes run, as the results say it: in its unit's cgroup
/// when it runs, else as its user outside the unit.
pub(super) fn probed_as(from: &Tenant) -> String {
    let user = paths::user_name(&from.record.name);
    if from.cgroup.is_some() {
        format!("as {user} in its unit")
    } else {
        format!(
            "as {user} outside its unit ({} is not running)",
            from.record.name
        )
    }
}
