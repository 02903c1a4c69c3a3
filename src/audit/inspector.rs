//! Node's inspector stays off in every tenant's gateway. SIGUSR1, which the
//! tenant (or its prompt-injected agent) can send to its own gateway, opens
//! the inspector on 127.0.0.1:9229 unless Node runs with
//! `--disable-sigusr1`: code execution inside the gateway for anyone who
//! reaches the port. The audit does not send the signal (without the
//! inspector, Node's default action for SIGUSR1 ends the process); it checks
//! what decides the outcome: the flag in the environment file ocusers
//! writes, the flag in the running gateway's own environment (a gateway
//! started before the file changed lacks it), and that nothing in the
//! tenant's unit listens on the inspector's port. The system tier sends the
//! signal for real.
use super::{Check, Tenant};
use crate::paths;
use crate::ports;
use crate::secrets;

/// Node's default inspector port.
pub const INSPECTOR_PORT: u16 = 9229;

/// The NODE_OPTIONS of process `pid`, from /proc (root reads any).
fn process_node_options(root: &std::path::Path, pid: u32) -> Option<String> {
    let env = std::fs::read(root.join(format!("proc/{pid}/environ"))).ok()?;
    env.split(|b| *b == 0).find_map(|kv| {
        kv.strip_prefix(b"NODE_OPTIONS=")
            .map(|v| String::from_utf8_lossy(v).into_owned())
    })
}

pub(super) fn check(paths: &paths::Paths, t: &Tenant, listeners: &[ports::Listener]) -> Check {
    let name = t.record.name.as_str();
    let fix_file = format!("run `ocusers add {name}` again (or `ocusers apply`) to rewrite it");
    let file = t
        .env
        .as_ref()
        .and_then(|e| e.get(secrets::NODE_OPTIONS_KEY));
    let mut problems = Vec::new();
    if !file.is_some_and(secrets::inspector_off) {
        problems.push(format!(
            "NODE_OPTIONS in {} lacks {}: {fix_file}",
            paths.secrets_file(&t.record.name).display(),
            secrets::INSPECTOR_OFF
        ));
    }
    if t.main_pid != 0 {
        match process_node_options(paths.root(), t.main_pid) {
            Some(v) if secrets::inspector_off(&v) => {}
            Some(_) | None => problems.push(format!(
                "the running gateway (pid {}) was started without {}: `ocusers restart {name}`",
                t.main_pid,
                secrets::INSPECTOR_OFF
            )),
        }
    }
    let cgroup = crate::cgroup::unit_path(&paths::unit_name(&t.record.name));
    if let Some(l) = listeners
        .iter()
        .find(|l| l.port == INSPECTOR_PORT && l.cgroups.contains(&cgroup))
    {
        problems.push(format!(
            "Node's inspector listens on port {} (pid {:?}): `ocusers restart {name}`",
            l.port, l.pids
        ));
    }
    Check {
        check: "inspector",
        ok: problems.is_empty(),
        detail: if problems.is_empty() {
            format!(
                "SIGUSR1 opens no inspector: {} in the env file{}",
                secrets::INSPECTOR_OFF,
                if t.main_pid != 0 {
                    " and in the running gateway"
                } else {
                    ""
                }
            )
        } else {
            problems.join("; ")
        },
    }
}
