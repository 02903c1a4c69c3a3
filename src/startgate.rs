//! The start gate: a few gateways start at a time, however many are asked
//! to start at once (a boot, `systemctl start openclaw.target`, `ocusers
//! start --all`, crash restarts). A gateway spends its first seconds
//! loading modules at full CPU, and one whose event loop starves misses
//! its 5 s state-lease heartbeat (openclaw#135717); twenty tenants starting
//! together on two cores is exactly that.
//!
//! Every start of `openclaw@NAME.service` first runs `ocusers start-gate
//! NAME` (`ExecStartPre=+`, as root, before the tenant's process exists).
//! It waits while `[tenants] start_batch` other tenants have started and
//! do not answer ready yet, first come first served, then lets its own
//! start go on. The board of who waits and who starts is one small JSON
//! file beside the host lock (`/run/ocusers-start-gate.json`), changed under
//! a lock.
//!
//! The gate never fails a start: anything it cannot read lets the start
//! go on (and says why in the journal). A line that moves is waited out
//! however long it is; one that has not moved for `ready_timeout` is
//! jumped.
//!
//! A tenant controls how its own gateway starts (its config, its state),
//! so a hostile one can make it hang before ready, spin at full CPU without
//! ever getting ready, or exit and be restarted before ready, in a loop.
//! None of that may hold the others back for long:
//! - a started tenant counts only while it uses the CPU (at least a tenth
//!   of one, over windows of [`WINDOW`] s): starting is loading modules at
//!   full CPU, and one that waits on a FIFO or sleeps costs the others
//!   nothing, so it does not keep them waiting;
//! - its starts count for `ready_timeout` in all, from its first start not
//!   yet seen ready: a restart before ready keeps that time, it does not
//!   buy a new turn;
//! - after that it is *spent*: its starts go at once and count for no one,
//!   until it is seen ready or stopped.
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::config::HostConfig;
use crate::health::{self, Readiness};
use crate::paths::{self, Paths};
use crate::systemd::Systemd;
use crate::tenant::{self, TenantName};

/// A waiting gate that has not looked at the board for this long has died
/// (its unit was stopped while it waited).
const WAITER_GONE: u64 = 10;
/// A starting tenant's CPU use is judged over windows of at least this
/// many seconds.
pub const WINDOW: u64 = 2;
/// A spent tenant is looked at (still not ready?) at most this often.
const SPENT_RECHECK: u64 = 5;
/// How often a waiting gate looks again.
const POLL: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// In the gate, since `since`.
    Waiting,
    /// Let through at `since`; counts until ready, while it uses the CPU,
    /// for `ready_timeout` from `first` at most.
    Starting,
    /// Started for `ready_timeout` from `first` and never seen ready:
    /// counts for no one and goes at once, until seen ready or stopped.
    Spent,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub phase: Phase,
    /// Unix seconds: when it came to the gate (waiting) or went through it.
    pub since: u64,
    /// Unix seconds: when its gate last looked (waiting), or when it was
    /// last looked at (spent).
    pub seen: u64,
    /// Unix seconds: its first start not yet seen ready or stopped. A
    /// restart before ready keeps it.
    #[serde(default)]
    pub first: Option<u64>,
    /// Its last CPU reading while starting: (unix seconds, CPU nanoseconds).
    #[serde(default)]
    pub cpu: Option<(u64, u64)>,
    /// Whether it used the CPU over its last window (true until judged).
    #[serde(default = "yes")]
    pub busy: bool,
}

fn yes() -> bool {
    true
}

impl Entry {
    fn waiting(now: u64, first: Option<u64>) -> Entry {
        Entry {
            phase: Phase::Waiting,
            since: now,
            seen: now,
            first,
            cpu: None,
            busy: true,
        }
    }

    /// When its streak of starts not yet seen ready began.
    fn streak(&self) -> u64 {
        self.first.unwrap_or(self.since)
    }
}

/// What the gate sees of another tenant that went through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Look {
    /// Its unit runs (or is about to be restarted) and its gateway does
    /// not answer ready.
    pub starting: bool,
    /// The CPU time its gateway has used, if this host tells.
    pub cpu_nsec: Option<u64>,
}

/// Who waits and who starts, by tenant name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Board {
    pub tenants: BTreeMap<String, Entry>,
    /// Unix seconds: when a gate last let a start through (the line moves).
    #[serde(default)]
    pub last_go: u64,
}

/// What the gate decided for one look at the board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Turn {
    /// Fewer than the batch start or wait ahead: go.
    Go,
    /// The line has not moved for the longest allowed: go anyway.
    Overdue,
    /// Wait, behind these (starting, then waiting ahead).
    Wait(Vec<String>),
}

/// The number of tenants that start together: `[tenants] start_batch`, or
/// with 0 (the default) one per two online CPUs, at least 1. A starting
/// gateway keeps more than one core busy (V8's compiler and GC threads):
/// measured on 2 cores, two real gateways starting together took 40 s
/// each, 1.8 x one alone (22.7 s).
pub fn batch_size(configured: u32) -> usize {
    if configured > 0 {
        return configured as usize;
    }
    // Not available_parallelism(): the gate runs in the tenant's cgroup,
    // whose CPUQuota= says nothing about the host.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    (usize::try_from(online).unwrap_or(1) / 2).max(1)
}

/// One look at the board for tenant `me` at `now`: drop the entries that
/// no longer count (`look` says what a started tenant is doing), put `me`
/// in line, and decide.
pub fn decide(
    board: &mut Board,
    me: &str,
    now: u64,
    batch: usize,
    max_wait: u64,
    look: &mut dyn FnMut(&str) -> Look,
) -> Turn {
    board.tenants.retain(|name, e| {
        if name == me {
            return true;
        }
        match e.phase {
            Phase::Waiting => now.saturating_sub(e.seen) <= WAITER_GONE,
            Phase::Spent if now.saturating_sub(e.seen) < SPENT_RECHECK => true,
            Phase::Starting | Phase::Spent => {
                let l = look(name);
                if !l.starting {
                    // Ready, stopped or gone: its streak is over.
                    return false;
                }
                e.seen = now;
                if e.phase == Phase::Starting && now.saturating_sub(e.streak()) >= max_wait {
                    e.phase = Phase::Spent;
                }
                if e.phase == Phase::Starting {
                    judge_cpu(e, now, l.cpu_nsec);
                }
                true
            }
        }
    });
    // A gate of ours at the board means our last start is over: in line
    // again, from now, but a start not yet seen ready keeps its first
    // start's time, and a spent one stays spent.
    let mine = board
        .tenants
        .entry(me.to_string())
        .and_modify(|e| match e.phase {
            Phase::Starting => {
                *e = Entry::waiting(now, Some(e.streak()));
            }
            Phase::Waiting | Phase::Spent => e.seen = now,
        })
        .or_insert_with(|| Entry::waiting(now, None))
        .clone();
    if mine.phase == Phase::Spent {
        return Turn::Go;
    }
    let mut ahead: Vec<(u8, u64, &String)> = board
        .tenants
        .iter()
        .filter(|(name, _)| name.as_str() != me)
        .filter_map(|(name, e)| match e.phase {
            Phase::Starting if e.busy => Some((0, e.since, name)),
            Phase::Waiting if (e.since, name.as_str()) < (mine.since, me) => {
                Some((1, e.since, name))
            }
            Phase::Starting | Phase::Waiting | Phase::Spent => None,
        })
        .collect();
    ahead.sort();
    // A long line that moves is waited out, however long; only a line that
    // has not moved for max_wait (no start let through since) is jumped.
    let turn = if ahead.len() < batch {
        Turn::Go
    } else if now.saturating_sub(mine.since.max(board.last_go)) >= max_wait {
        Turn::Overdue
    } else {
        return Turn::Wait(ahead.into_iter().map(|(_, _, n)| n.clone()).collect());
    };
    if let Some(e) = board.tenants.get_mut(me) {
        e.phase = Phase::Starting;
        e.since = now;
        e.first.get_or_insert(now);
        e.cpu = None;
        e.busy = true;
    }
    board.last_go = now;
    turn
}

/// Whether starting tenant `e` used at least a tenth of a CPU over its last
/// window of [`WINDOW`] s or more. Without a reading it counts as busy.
fn judge_cpu(e: &mut Entry, now: u64, cpu_nsec: Option<u64>) {
    let Some(cur) = cpu_nsec else {
        e.cpu = None;
        e.busy = true;
        return;
    };
    match e.cpu {
        Some((at, before)) if now.saturating_sub(at) >= WINDOW => {
            let spent = cur.saturating_sub(before);
            let window = now.saturating_sub(at).saturating_mul(1_000_000_000);
            e.busy = spent.saturating_mul(10) >= window;
            e.cpu = Some((now, cur));
        }
        Some(_) => {}
        None => e.cpu = Some((now, cur)),
    }
}

/// What the gate did, for its line in the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passed {
    pub turn: Turn,
    pub waited: Duration,
    pub batch: usize,
    /// Whom it waited behind first (empty: went at once).
    pub behind: Vec<String>,
}

/// Wait for tenant `name`'s turn to start. `sd` (None: no D-Bus) tells
/// whether a started tenant still runs.
pub fn wait_turn(paths: &Paths, name: &TenantName, sd: Option<&dyn Systemd>) -> Result<Passed> {
    let cfg = HostConfig::load(paths)?;
    let batch = batch_size(cfg.tenants.start_batch);
    let max_wait = cfg.tenants.ready_timeout;
    let ports: BTreeMap<String, u16> = tenant::list(paths)?
        .into_iter()
        .map(|r| (r.name.to_string(), r.port))
        .collect();
    let started = std::time::Instant::now();
    let mut behind = Vec::new();
    loop {
        let turn = {
            let _lock = lock(paths)?;
            let mut board = load(paths);
            let mut look = |other: &str| look_at(sd, &ports, other);
            let turn = decide(
                &mut board,
                name.as_str(),
                unix_now(),
                batch,
                max_wait,
                &mut look,
            );
            save(paths, &board)?;
            turn
        };
        match turn {
            Turn::Wait(ahead) => {
                if behind.is_empty() {
                    behind = ahead;
                }
                std::thread::sleep(POLL);
            }
            turn => {
                return Ok(Passed {
                    turn,
                    waited: started.elapsed(),
                    batch,
                    behind,
                });
            }
        }
    }
}

/// What a tenant that went through the gate is doing: still starting while
/// its unit runs and its gateway does not answer ready (one that left the
/// registry is not); its CPU time from its cgroup, or from its main
/// process where the host's cgroups do not tell (cgroup v1).
fn look_at(sd: Option<&dyn Systemd>, ports: &BTreeMap<String, u16>, name: &str) -> Look {
    let gone = Look {
        starting: false,
        cpu_nsec: None,
    };
    let Some(port) = ports.get(name) else {
        return gone;
    };
    let mut cpu_nsec = None;
    if let (Some(sd), Ok(n)) = (sd, TenantName::parse(name)) {
        match sd.unit(&paths::unit_name(&n)) {
            Ok(u)
                if matches!(
                    u.active_state.as_str(),
                    "active" | "activating" | "reloading"
                ) =>
            {
                cpu_nsec = u.cpu_usage_nsec.or_else(|| process_cpu_nsec(u.main_pid));
            }
            Ok(_) => return gone,
            Err(_) => {}
        }
    }
    Look {
        starting: health::probe(*port, Duration::from_secs(1)) != Readiness::Ready,
        cpu_nsec,
    }
}

/// The CPU time (user and system, all threads) of process `pid` from
/// /proc/PID/stat, in nanoseconds; None for no process.
fn process_cpu_nsec(pid: u32) -> Option<u64> {
    if pid == 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    cpu_of_stat(&stat, unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
}

/// utime + stime + cutime + cstime of a /proc/PID/stat line (fields 14 to
/// 17: its own threads and its children it waited for, such as the `npm`
/// a gateway runs at start; counted after the command name, which may hold
/// spaces and parentheses), in ns.
fn cpu_of_stat(stat: &str, ticks_per_sec: libc::c_long) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let mut ticks = 0u64;
    for i in 11..15 {
        ticks = ticks.saturating_add(fields.get(i)?.parse::<u64>().ok()?);
    }
    let per_sec = u64::try_from(ticks_per_sec).ok().filter(|&t| t > 0)?;
    Some(ticks.saturating_mul(1_000_000_000) / per_sec)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn lock(paths: &Paths) -> Result<Flock<std::fs::File>> {
    let path = paths.start_gate_lock();
    Flock::lock(crate::lock::open(&path)?, FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .with_context(|| format!("locking {}", path.display()))
}

/// The board; an unreadable one is an empty one (it only ever delays).
fn load(paths: &Paths) -> Board {
    std::fs::read(paths.start_gate_board())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save(paths: &Paths, board: &Board) -> Result<()> {
    let text = serde_json::to_vec(board)?;
    crate::fsutil::write_atomic(&paths.start_gate_board(), &text, 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn look(board: &mut Board, me: &str, now: u64, batch: usize, busy: &[&str]) -> Turn {
        decide(board, me, now, batch, 180, &mut |n| Look {
            starting: busy.contains(&n),
            cpu_nsec: None,
        })
    }

    /// A look where `cpu` gives each starting tenant's CPU time so far.
    fn look_cpu(
        board: &mut Board,
        me: &str,
        now: u64,
        starting: &[&str],
        cpu: &dyn Fn(&str) -> u64,
    ) -> Turn {
        decide(board, me, now, 1, 180, &mut |n| Look {
            starting: starting.contains(&n),
            cpu_nsec: Some(cpu(n)),
        })
    }

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn a_start_that_hangs_without_cpu_stops_holding_the_line() {
        // hung went at 0 and blocks (a FIFO for a config): its CPU time
        // stays at 1 s. x waits one window, then goes.
        let mut b = Board::default();
        let cpu = |_: &str| SEC;
        assert_eq!(look_cpu(&mut b, "hung", 0, &["hung"], &cpu), Turn::Go);
        assert!(matches!(
            look_cpu(&mut b, "x", 1, &["hung", "x"], &cpu),
            Turn::Wait(_)
        ));
        assert!(matches!(
            look_cpu(&mut b, "x", 2, &["hung", "x"], &cpu),
            Turn::Wait(_)
        ));
        assert_eq!(look_cpu(&mut b, "x", 3, &["hung", "x"], &cpu), Turn::Go);
    }

    #[test]
    fn a_start_at_full_cpu_holds_the_line_until_ready() {
        let mut b = Board::default();
        // busy uses a full CPU: its CPU time is the clock.
        let now = std::cell::Cell::new(0u64);
        let cpu = |_: &str| now.get() * SEC;
        assert_eq!(look_cpu(&mut b, "busy", 0, &["busy"], &cpu), Turn::Go);
        for t in 1..60 {
            now.set(t);
            assert!(
                matches!(
                    look_cpu(&mut b, "x", t, &["busy", "x"], &cpu),
                    Turn::Wait(_)
                ),
                "x went at {t}"
            );
        }
        now.set(60);
        assert_eq!(look_cpu(&mut b, "x", 60, &["x"], &cpu), Turn::Go);
    }

    #[test]
    fn restarts_before_ready_do_not_buy_new_turns_and_a_spent_tenant_counts_for_no_one() {
        // loop spins at full CPU and exits every 50 s, never ready; systemd
        // restarts it and its gate runs again (no one waits: it goes).
        let mut b = Board::default();
        let now = std::cell::Cell::new(0u64);
        let cpu = |_: &str| now.get() * SEC;
        let mut y_went = None;
        for t in 0..260u64 {
            now.set(t);
            if t % 50 == 0 {
                assert_eq!(look_cpu(&mut b, "loop", t, &["loop", "y"], &cpu), Turn::Go);
            }
            if y_went.is_none()
                && t >= 160
                && look_cpu(&mut b, "y", t, &["loop", "y"], &cpu) == Turn::Go
            {
                y_went = Some(t);
            }
        }
        // y waited out loop's 180 s from its first start, not 180 s from
        // its latest (150).
        assert_eq!(y_went, Some(180));
        // Spent: its restart at 200 went at once, and it holds no one.
        assert_eq!(b.tenants["loop"].phase, Phase::Spent);
        assert_eq!(look_cpu(&mut b, "z", 260, &["loop", "z"], &cpu), Turn::Go);
        // Once seen ready (or stopped), its next start counts again.
        now.set(300);
        assert_eq!(look_cpu(&mut b, "w", 300, &["w"], &cpu), Turn::Go);
        assert!(!b.tenants.contains_key("loop"));
        assert_eq!(
            look_cpu(&mut b, "loop", 301, &["loop", "w"], &cpu),
            Turn::Wait(vec!["w".into()])
        );
    }

    #[test]
    fn cpu_time_of_a_proc_stat_line_with_an_odd_command_name() {
        let stat =
            "4242 (node) 1 2) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 60 40 20 0 16 0 100 0 0";
        assert_eq!(cpu_of_stat(stat, 100), Some(4 * SEC));
        assert_eq!(cpu_of_stat("garbage", 100), None);
    }

    #[test]
    fn batch_of_two_lets_two_through_then_the_next_in_order_of_arrival() {
        let mut b = Board::default();
        let busy = ["a", "b", "c", "d"];
        // a, b, c, d arrive in that order, one second apart.
        assert_eq!(look(&mut b, "a", 100, 2, &busy), Turn::Go);
        assert_eq!(look(&mut b, "b", 101, 2, &busy), Turn::Go);
        assert_eq!(
            look(&mut b, "c", 102, 2, &busy),
            Turn::Wait(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            look(&mut b, "d", 103, 2, &busy),
            Turn::Wait(vec!["a".into(), "b".into(), "c".into()])
        );
        // b is ready: c (first in line) goes, d still waits.
        let busy = ["a", "c", "d"];
        assert_eq!(
            look(&mut b, "d", 104, 2, &busy),
            Turn::Wait(vec!["a".into(), "c".into()])
        );
        assert_eq!(look(&mut b, "c", 104, 2, &busy), Turn::Go);
        assert_eq!(
            look(&mut b, "d", 105, 2, &busy),
            Turn::Wait(vec!["a".into(), "c".into()])
        );
        // a is ready too: d goes.
        assert_eq!(look(&mut b, "d", 106, 2, &["c", "d"]), Turn::Go);
    }

    #[test]
    fn a_tenant_that_never_gets_ready_holds_the_line_for_max_wait_at_most() {
        let mut b = Board::default();
        assert_eq!(look(&mut b, "stuck", 0, 1, &["stuck", "x"]), Turn::Go);
        assert!(matches!(
            look(&mut b, "x", 1, 1, &["stuck", "x"]),
            Turn::Wait(_)
        ));
        assert!(matches!(
            look(&mut b, "x", 179, 1, &["stuck", "x"]),
            Turn::Wait(_)
        ));
        // stuck's start is 180 s old: no longer counted.
        assert_eq!(look(&mut b, "x", 180, 1, &["stuck", "x"]), Turn::Go);
    }

    #[test]
    fn a_waiter_goes_when_it_has_waited_max_wait() {
        let mut b = Board::default();
        for (i, n) in ["a", "b", "c"].iter().enumerate() {
            b.tenants.insert(
                n.to_string(),
                Entry {
                    phase: Phase::Starting,
                    since: 1000 + i as u64,
                    ..Entry::waiting(0, None)
                },
            );
        }
        let busy = ["a", "b", "c", "me"];
        assert!(matches!(look(&mut b, "me", 1100, 1, &busy), Turn::Wait(_)));
        // a, b, c started over 180 s ago by 1183; me has waited 180 s at 1280.
        assert!(matches!(look(&mut b, "me", 1179, 1, &busy), Turn::Wait(_)));
        let mut b2 = b.clone();
        b2.tenants.get_mut("a").unwrap().since = 1200;
        assert!(matches!(look(&mut b2, "me", 1279, 1, &busy), Turn::Wait(_)));
        assert_eq!(look(&mut b2, "me", 1280, 1, &busy), Turn::Overdue);
    }

    #[test]
    fn a_long_line_that_moves_is_waited_out_past_max_wait() {
        // Ten arrive at 0, one at a time, each ready 25 s after it went: the
        // last goes at 225 s, past max_wait (180), in its turn, not early.
        let names: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
        let mut b = Board::default();
        let mut went = BTreeMap::new();
        for now in 0..400u64 {
            for n in &names {
                if went.contains_key(n) {
                    continue;
                }
                let busy: Vec<&str> = names
                    .iter()
                    .filter(|m| went.get(*m).is_none_or(|&t: &u64| now < t + 25))
                    .map(String::as_str)
                    .collect();
                match look(&mut b, n, now, 1, &busy) {
                    Turn::Go => {
                        went.insert(n.clone(), now);
                    }
                    Turn::Overdue => panic!("{n} jumped a moving line at {now}"),
                    Turn::Wait(_) => {}
                }
            }
        }
        assert_eq!(went.len(), 10);
        let mut times: Vec<u64> = went.values().copied().collect();
        times.sort();
        assert!(times.windows(2).all(|w| w[1] - w[0] >= 25), "{times:?}");
        assert!(times[9] >= 225, "{times:?}");
    }

    #[test]
    fn a_dead_waiter_and_a_stopped_or_ready_tenant_do_not_count() {
        let mut b = Board::default();
        assert_eq!(look(&mut b, "a", 0, 1, &["a"]), Turn::Go);
        assert!(matches!(look(&mut b, "w", 1, 1, &["a"]), Turn::Wait(_)));
        // a stopped (or got ready): w goes, though it arrived after a.
        assert_eq!(look(&mut b, "w", 2, 1, &["w"]), Turn::Go);
        // A waiter whose gate stopped looking is dropped after 10 s.
        let mut b = Board::default();
        assert_eq!(look(&mut b, "s", 0, 1, &["s"]), Turn::Go);
        assert!(matches!(look(&mut b, "gone", 1, 1, &["s"]), Turn::Wait(_)));
        assert!(matches!(look(&mut b, "late", 2, 1, &["s"]), Turn::Wait(_)));
        // s ready at 20; "gone" last looked at 1: late goes first.
        assert_eq!(look(&mut b, "late", 20, 1, &[]), Turn::Go);
        assert!(!b.tenants.contains_key("gone"));
    }

    #[test]
    fn my_own_earlier_start_does_not_hold_me_back() {
        let mut b = Board::default();
        assert_eq!(look(&mut b, "a", 0, 1, &["a"]), Turn::Go);
        // a crashed and is restarted: its gate runs again at once.
        assert_eq!(look(&mut b, "a", 5, 1, &["a"]), Turn::Go);
        assert_eq!(b.tenants["a"].since, 5);
    }

    #[test]
    fn batch_size_configured_or_cpus() {
        assert_eq!(batch_size(3), 3);
        assert!(batch_size(0) >= 1);
    }
}
