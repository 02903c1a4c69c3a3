//! A systemd for tests: units' states in memory, every call that changes
//! something recorded as one line named after its D-Bus method
//! (`StartUnit openclaw@alice.service`), and the files systemd itself
//! would write under the root (the `set-property` drop-ins in
//! `system.control/`, the `openclaw.target.wants/` link of an enabled unit),
//! so a plan's checks see what they would see on a host. Reads (`GetUnit`,
//! `GetUnitFileState`, properties) are answered from the state and not
//! recorded.
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;

use super::{Limits, SocketBind, Systemd, UnitInfo};
use crate::paths::Paths;

#[derive(Default, Clone)]
struct Unit {
    active: String,
    enabled: bool,
    limits: Option<Limits>,
    bind: Option<SocketBind>,
    active_enter_usec: u64,
}

pub struct FakeSystemd {
    paths: Paths,
    units: RefCell<BTreeMap<String, Unit>>,
    calls: RefCell<Vec<String>>,
    /// A call that fails (its method name, e.g. `StartUnit`).
    fail: RefCell<Option<String>>,
}

impl FakeSystemd {
    /// No unit loaded, enabled or running; files go under `paths`' root.
    pub fn new(paths: &Paths) -> FakeSystemd {
        FakeSystemd {
            paths: paths.clone(),
            units: RefCell::default(),
            calls: RefCell::default(),
            fail: RefCell::default(),
        }
    }

    /// The calls so far, one line each, and forget them.
    pub fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut self.calls.borrow_mut())
    }

    /// Let `secs` pass for the running units: they became active that much
    /// earlier (file times are coarser than the clock, so a file written
    /// just after a start may look older than it).
    pub fn age_units(&self, secs: u64) {
        for u in self.units.borrow_mut().values_mut() {
            u.active_enter_usec = u.active_enter_usec.saturating_sub(secs * 1_000_000);
        }
    }

    /// Make every later call of `method` fail (after recording it).
    pub fn fail_on(&self, method: &str) {
        *self.fail.borrow_mut() = Some(method.to_string());
    }

    fn call(&self, line: String) -> Result<()> {
        let method = line.split(' ').next().unwrap_or_default().to_string();
        self.calls.borrow_mut().push(line);
        if self.fail.borrow().as_deref() == Some(method.as_str()) {
            anyhow::bail!("{method} failed (FakeSystemd::fail_on)");
        }
        Ok(())
    }

    fn with<T>(&self, unit: &str, f: impl FnOnce(&mut Unit) -> T) -> T {
        let mut units = self.units.borrow_mut();
        let u = units.entry(unit.to_string()).or_insert_with(|| Unit {
            active: "inactive".into(),
            ..Unit::default()
        });
        f(u)
    }

    fn wants_link(&self, unit: &str) -> PathBuf {
        self.paths
            .root()
            .join("etc/systemd/system/openclaw.target.wants")
            .join(unit)
    }

    fn set_active(&self, unit: &str) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as u64;
        self.with(unit, |u| {
            u.active = "active".into();
            u.active_enter_usec = now;
        });
    }
}

fn ranges(r: &[super::PortRange]) -> String {
    r.iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

const DROP_IN_HEAD: &str = "# This is a drop-in unit file extension, created via \"systemctl set-property\"\n# or an equivalent operation. Do not edit.\n[Service]\n";

impl Systemd for FakeSystemd {
    fn unit(&self, unit: &str) -> Result<UnitInfo> {
        Ok(self.with(unit, |u| UnitInfo {
            load_state: "loaded".into(),
            active_state: u.active.clone(),
            sub_state: if u.active == "active" {
                "running".into()
            } else {
                "dead".into()
            },
            unit_file_state: if u.enabled { "enabled" } else { "disabled" }.into(),
            active_enter_usec: u.active_enter_usec,
            memory_high: u.limits.map(|l| l.memory_high),
            memory_max: u.limits.map(|l| l.memory_max),
            cpu_quota_per_sec_usec: u.limits.map(|l| l.cpu_quota_per_sec_usec),
            tasks_max: u.limits.map(|l| l.tasks_max),
            ..UnitInfo::default()
        }))
    }
    fn unit_file_state(&self, unit: &str) -> Result<String> {
        Ok(self
            .with(unit, |u| if u.enabled { "enabled" } else { "disabled" })
            .into())
    }
    fn enable(&self, unit: &str) -> Result<()> {
        self.call(format!("EnableUnitFiles {unit}"))?;
        let link = self.wants_link(unit);
        std::fs::create_dir_all(link.parent().unwrap())?;
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("/usr/lib/systemd/system/openclaw@.service", &link)?;
        self.with(unit, |u| u.enabled = true);
        Ok(())
    }
    fn disable(&self, unit: &str) -> Result<()> {
        self.call(format!("DisableUnitFiles {unit}"))?;
        crate::fsutil::remove_file(&self.wants_link(unit))?;
        self.with(unit, |u| u.enabled = false);
        Ok(())
    }
    fn start(&self, unit: &str) -> Result<()> {
        self.call(format!("StartUnit {unit} replace"))?;
        self.set_active(unit);
        Ok(())
    }
    fn stop(&self, unit: &str) -> Result<()> {
        self.call(format!("StopUnit {unit} replace"))?;
        self.with(unit, |u| u.active = "inactive".into());
        Ok(())
    }
    fn restart(&self, unit: &str) -> Result<()> {
        self.call(format!("RestartUnit {unit} replace"))?;
        self.set_active(unit);
        Ok(())
    }
    fn set_limits_and_bind(&self, unit: &str, l: &Limits, bind: &SocketBind) -> Result<()> {
        self.call(format!(
            "SetUnitProperties {unit} runtime=false CPUQuotaPerSecUSec={} MemoryHigh={} MemoryMax={} SocketBindAllow=[{}] SocketBindDeny=[{}] TasksMax={}",
            l.cpu_quota_per_sec_usec,
            l.memory_high,
            l.memory_max,
            ranges(&bind.allow),
            ranges(&bind.deny),
            l.tasks_max
        ))?;
        // What `systemctl set-property` leaves (tests/golden has the real
        // drop-ins of the limits).
        let dir = self.paths.unit_control_dir(unit);
        std::fs::create_dir_all(&dir)?;
        let list = |key: &str, r: &[super::PortRange]| {
            let mut s = format!("{DROP_IN_HEAD}{key}=\n");
            for r in r {
                s.push_str(&format!("{key}={r}\n"));
            }
            s
        };
        for (file, text) in [
            (
                "50-CPUQuota.conf",
                format!(
                    "{DROP_IN_HEAD}CPUQuota={}%\n",
                    l.cpu_quota_per_sec_usec / 10_000
                ),
            ),
            (
                "50-MemoryHigh.conf",
                format!("{DROP_IN_HEAD}MemoryHigh={}\n", l.memory_high),
            ),
            (
                "50-MemoryMax.conf",
                format!("{DROP_IN_HEAD}MemoryMax={}\n", l.memory_max),
            ),
            (
                "50-SocketBindAllow.conf",
                list("SocketBindAllow", &bind.allow),
            ),
            ("50-SocketBindDeny.conf", list("SocketBindDeny", &bind.deny)),
            (
                "50-TasksMax.conf",
                format!("{DROP_IN_HEAD}TasksMax={}\n", l.tasks_max),
            ),
        ] {
            std::fs::write(dir.join(file), text)?;
        }
        self.with(unit, |u| {
            u.limits = Some(*l);
            u.bind = Some(bind.clone());
        });
        Ok(())
    }
    fn reset_failed(&self, unit: &str) -> Result<()> {
        self.call(format!("ResetFailedUnit {unit}"))?;
        self.with(unit, |u| {
            if u.active == "failed" {
                u.active = "inactive".into();
            }
        });
        Ok(())
    }
    fn active_state(&self, unit: &str) -> Result<String> {
        Ok(self.with(unit, |u| u.active.clone()))
    }
    fn reload(&self, unit: &str) -> Result<()> {
        self.call(format!("ReloadUnit {unit} replace"))
    }
    fn daemon_reload(&self) -> Result<()> {
        self.call("Reload".into())
    }
    fn socket_bind(&self, unit: &str) -> Result<SocketBind> {
        Ok(self.with(unit, |u| u.bind.clone().unwrap_or_default()))
    }
}
