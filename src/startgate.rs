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
//! file under `/run/ocusers`, changed under a lock.
//!
//! The gate never fails a start: anything it cannot read lets the start
//! go on (and says why in the journal). A started tenant counts for
//! `[tenants] ready_timeout` seconds at most, so one that never becomes
//! ready delays the others by that much at most, once per start of its own
//! (and a start loop ends at the unit's start limit). A line that moves is
//! waited out however long it is; one that has not moved for
//! `ready_timeout` is jumped.
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
/// How often a waiting gate looks again.
const POLL: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// In the gate, since `since`.
    Waiting,
    /// Let through at `since`; counts until ready.
    Starting,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub phase: Phase,
    /// Unix seconds: when it came to the gate (waiting) or went through it.
    pub since: u64,
    /// Unix seconds: when its gate last looked (waiting).
    pub seen: u64,
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
/// no longer count (`still_starting` says whether a started tenant still
/// counts: running and not ready), put `me` in line, and decide.
pub fn decide(
    board: &mut Board,
    me: &str,
    now: u64,
    batch: usize,
    max_wait: u64,
    still_starting: &mut dyn FnMut(&str) -> bool,
) -> Turn {
    board.tenants.retain(|name, e| {
        name == me
            || match e.phase {
                Phase::Waiting => now.saturating_sub(e.seen) <= WAITER_GONE,
                Phase::Starting => now.saturating_sub(e.since) < max_wait && still_starting(name),
            }
    });
    // A gate of ours at the board means our last start is over: in line
    // again, from now.
    let mine = board
        .tenants
        .entry(me.to_string())
        .and_modify(|e| {
            if e.phase == Phase::Starting {
                e.phase = Phase::Waiting;
                e.since = now;
            }
            e.seen = now;
        })
        .or_insert(Entry {
            phase: Phase::Waiting,
            since: now,
            seen: now,
        })
        .clone();
    let mut ahead: Vec<(u8, u64, &String)> = board
        .tenants
        .iter()
        .filter(|(name, _)| name.as_str() != me)
        .filter_map(|(name, e)| match e.phase {
            Phase::Starting => Some((0, e.since, name)),
            Phase::Waiting if (e.since, name.as_str()) < (mine.since, me) => {
                Some((1, e.since, name))
            }
            Phase::Waiting => None,
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
    }
    board.last_go = now;
    turn
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
            let mut still_starting = |other: &str| still_starting(sd, &ports, other);
            let turn = decide(
                &mut board,
                name.as_str(),
                unix_now(),
                batch,
                max_wait,
                &mut still_starting,
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

/// A tenant let through still counts while its unit runs and its gateway
/// does not answer ready; one that left the registry does not.
fn still_starting(sd: Option<&dyn Systemd>, ports: &BTreeMap<String, u16>, name: &str) -> bool {
    let Some(port) = ports.get(name) else {
        return false;
    };
    if let (Some(sd), Ok(n)) = (sd, TenantName::parse(name)) {
        match sd.active_state(&paths::unit_name(&n)) {
            Ok(s) if s == "active" || s == "activating" || s == "reloading" => {}
            Ok(_) => return false,
            Err(_) => {}
        }
    }
    health::probe(*port, Duration::from_secs(1)) != Readiness::Ready
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
        decide(board, me, now, batch, 180, &mut |n| busy.contains(&n))
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
                    seen: 0,
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
