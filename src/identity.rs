//! Tenant identities: one system user and group per tenant (`oc-NAME`), no
//! login shell, no password, home = the tenant's state directory.
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::process;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// The account as the owner root gives what it makes below a state
/// directory (here, so that `safefs` needs nothing of this module).
impl From<&Account> for crate::safefs::Owner {
    fn from(a: &Account) -> crate::safefs::Owner {
        crate::safefs::Owner {
            uid: a.uid,
            gid: a.gid,
        }
    }
}

/// Look a user up in the system's user database (NSS).
pub fn lookup(user: &str) -> Option<Account> {
    let u = uzers::get_user_by_name(user)?;
    Some(Account {
        uid: u.uid(),
        gid: u.primary_group_id(),
        home: uzers::os::unix::UserExt::home_dir(&u).to_path_buf(),
    })
}

/// Every user's uid by name, in one pass over the user database: for all
/// tenants at once, where a [`lookup`] each would read /etc/passwd once per
/// tenant.
pub fn uids_by_name() -> std::collections::HashMap<String, u32> {
    // SAFETY: getpwent(3) iterates with state global to the process; this is
    // ocusers' only user enumeration, so no other iteration runs meanwhile
    // (getpwnam_r, which the lookups use, keeps no such state).
    unsafe { uzers::all_users() }
        .map(|u| (u.name().to_string_lossy().into_owned(), u.uid()))
        .collect()
}

pub fn group_exists(group: &str) -> bool {
    uzers::get_group_by_name(group).is_some()
}

/// `useradd --system --user-group`: a system user with its own group, no
/// home created (ocusers makes the state directory), no login shell.
pub fn create_user(user: &str, home: &Path, comment: &str) -> Result<()> {
    process::run(
        Command::new("useradd")
            .args(["--system", "--user-group", "--no-create-home"])
            .args(["--shell", "/usr/sbin/nologin"])
            .arg("--home-dir")
            .arg(home)
            .args(["--comment", comment])
            .arg(user),
    )?;
    Ok(())
}

/// Delete the user and its group; both already gone is success.
pub fn delete_user(user: &str) -> Result<()> {
    if lookup(user).is_some() {
        process::run(Command::new("userdel").arg(user))?;
    }
    // userdel removes the user's private group when USERGROUPS_ENAB is set;
    // make sure of it either way.
    if group_exists(user) {
        process::run(Command::new("groupdel").arg(user))?;
    }
    Ok(())
}

/// What the plans ask of the user database and of the tenant's processes:
/// the seam through which a test applies a plan without creating a system
/// user (see `FakeAccounts` in the tests). [`SYSTEM`] is the host's.
pub trait Accounts {
    fn lookup(&self, user: &str) -> Option<Account>;
    fn group_exists(&self, group: &str) -> bool;
    /// See [`uids_by_name`].
    fn uids_by_name(&self) -> std::collections::HashMap<String, u32>;
    /// See [`create_user`].
    fn create_user(&self, user: &str, home: &Path, comment: &str) -> Result<()>;
    /// See [`delete_user`].
    fn delete_user(&self, user: &str) -> Result<()>;
    fn processes_of(&self, uid: u32) -> Vec<i32>;
    /// See [`wait_no_processes`].
    fn wait_no_processes(&self, uid: u32) -> Result<()>;
}

/// The host's user database (`useradd`, `userdel`, NSS) and `/proc`.
pub struct SystemAccounts;

/// The host's accounts, what every command uses.
pub static SYSTEM: SystemAccounts = SystemAccounts;

impl Accounts for SystemAccounts {
    fn lookup(&self, user: &str) -> Option<Account> {
        lookup(user)
    }
    fn group_exists(&self, group: &str) -> bool {
        group_exists(group)
    }
    fn uids_by_name(&self) -> std::collections::HashMap<String, u32> {
        uids_by_name()
    }
    fn create_user(&self, user: &str, home: &Path, comment: &str) -> Result<()> {
        create_user(user, home, comment)
    }
    fn delete_user(&self, user: &str) -> Result<()> {
        delete_user(user)
    }
    fn processes_of(&self, uid: u32) -> Vec<i32> {
        processes_of(uid)
    }
    fn wait_no_processes(&self, uid: u32) -> Result<()> {
        wait_no_processes(uid)
    }
}

/// Write a file directly in a tenant's state directory (`path` is
/// `/var/lib/openclaw/NAME/FILE`), owned by the account, with `mode`: through
/// descriptors (see [`crate::safefs`]), so a link or FIFO the tenant put at
/// `path` is replaced, never followed, and the owner and mode are set on the
/// new file's descriptor.
pub fn write_owned_file(path: &Path, data: &[u8], account: &Account, mode: u32) -> Result<()> {
    let (Some(state), Some(name)) = (path.parent(), path.file_name()) else {
        anyhow::bail!("{} is not a file in a state directory", path.display());
    };
    let dir = crate::safefs::Dir::open_state_path(state)?;
    dir.write_file(name, data, account.into(), mode)?;
    Ok(())
}

/// PIDs of every process running as `uid` (from `/proc`).
pub fn processes_of(uid: u32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let meta = std::fs::metadata(e.path()).ok()?;
            (meta.uid() == uid).then_some(pid)
        })
        .collect()
}

/// After the stop job, the kernel may still be reaping; a straggler outside
/// the unit (none should exist) is killed so userdel can proceed.
pub fn wait_no_processes(uid: u32) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        let pids = processes_of(uid);
        if pids.is_empty() {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(10) {
            for pid in pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    anyhow::bail!("processes of uid {uid} are still running after 30 s")
}

/// Accounts for tests: every user a test creates gets one uid and gid,
/// [`fake::TENANT_UID`] when the tests run as root (CI does: chowns to it
/// work, so a tree shows root's files apart from the tenant's), else this
/// process's (so chowns to it work without privileges), and a home under
/// `/var/lib/openclaw/`; each change is recorded as the command the host's
/// [`SystemAccounts`] would run. No process belongs to them.
#[cfg(test)]
pub mod fake {
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    use anyhow::Result;

    use super::{Account, Accounts};

    /// The uid and gid of every fake user when the tests run as root.
    pub const TENANT_UID: u32 = 4242;

    #[derive(Default)]
    pub struct FakeAccounts {
        users: RefCell<BTreeMap<String, PathBuf>>,
        calls: RefCell<Vec<String>>,
    }

    impl FakeAccounts {
        /// The uid (and gid) every user of these accounts gets.
        pub fn uid(&self) -> u32 {
            if nix::unistd::geteuid().is_root() {
                TENANT_UID
            } else {
                nix::unistd::geteuid().as_raw()
            }
        }

        /// The calls so far, one line each, and forget them.
        pub fn take_calls(&self) -> Vec<String> {
            std::mem::take(&mut self.calls.borrow_mut())
        }
    }

    impl Accounts for FakeAccounts {
        fn lookup(&self, user: &str) -> Option<Account> {
            let home = self.users.borrow().get(user)?.clone();
            Some(Account {
                uid: self.uid(),
                gid: if nix::unistd::geteuid().is_root() {
                    TENANT_UID
                } else {
                    nix::unistd::getegid().as_raw()
                },
                home,
            })
        }
        fn group_exists(&self, group: &str) -> bool {
            self.users.borrow().contains_key(group)
        }
        fn uids_by_name(&self) -> std::collections::HashMap<String, u32> {
            let uid = self.uid();
            self.users
                .borrow()
                .keys()
                .map(|u| (u.clone(), uid))
                .collect()
        }
        fn create_user(&self, user: &str, home: &Path, comment: &str) -> Result<()> {
            self.calls.borrow_mut().push(format!(
                "useradd --system --user-group --no-create-home --shell /usr/sbin/nologin --home-dir {} --comment '{comment}' {user}",
                home.display()
            ));
            if self.users.borrow().contains_key(user) {
                anyhow::bail!("useradd: user '{user}' already exists");
            }
            self.users
                .borrow_mut()
                .insert(user.to_string(), home.to_path_buf());
            Ok(())
        }
        fn delete_user(&self, user: &str) -> Result<()> {
            if self.users.borrow_mut().remove(user).is_some() {
                self.calls.borrow_mut().push(format!("userdel {user}"));
            }
            Ok(())
        }
        fn processes_of(&self, _uid: u32) -> Vec<i32> {
            Vec::new()
        }
        fn wait_no_processes(&self, uid: u32) -> Result<()> {
            let uid = if uid == self.uid() {
                "TENANT".to_string()
            } else {
                uid.to_string()
            };
            self.calls
                .borrow_mut()
                .push(format!("wait until no process of uid {uid} runs"));
            Ok(())
        }
    }
}
