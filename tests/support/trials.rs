//! Which trials of a heavy tier (tests/system, tests/vm) run: libtest's own
//! filter (one pattern, `--exact`) and `OCUSERS_TRIALS=a,b,c`, which keeps
//! only the trials whose names contain one of these (list the trials they
//! build on too); the others are ignored, not failed. [`run`] is the whole `main` of such a
//! tier: one shared fixture, booted only when a trial will run, the trials in order, the
//! figures printed at the end.
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use libtest_mimic::{Arguments, Failed, Trial};

/// The one machine a tier's trials share, with the figures they record.
pub trait Figures: Send + Sync + 'static {
    fn figures(&self) -> &Mutex<BTreeMap<String, String>>;

    /// Records a figure: `[figure] KEY: VALUE` now, and again under `[figures]` at the end.
    fn figure(&self, key: impl Into<String>, value: String) {
        let key = key.into();
        eprintln!("[figure] {key}: {value}");
        self.figures().lock().unwrap().insert(key, value);
    }
}

/// A trial's check against the shared fixture.
pub type Check<F> = fn(&F) -> Result<(), String>;

/// How a tier names itself in [`run`]'s lines.
pub struct Tier {
    /// In a setup failure: "{name} setup failed: ...".
    pub name: &'static str,
    /// "[setup] {setup} in N s".
    pub setup: &'static str,
    /// "[teardown] fixture still shared; {leftover}".
    pub leftover: &'static str,
}

/// Runs a heavy tier: the trials one at a time, in order, against one fixture from `boot`
/// (booted only if a selected trial will run, dropped at the end); prints `[figures]`.
pub fn run<F: Figures>(
    tier: &Tier,
    trials: &'static [(&'static str, Check<F>)],
    boot: impl FnOnce() -> Result<F, String>,
) -> ! {
    let mut args = Arguments::from_args();
    // The trials share one machine and build on each other.
    args.test_threads = Some(1);
    let selection = Selection::new(&args);
    let wanted = !args.list && trials.iter().any(|(n, _)| selection.selected(n));

    let fixture: Result<Arc<F>, String> = if wanted {
        let t = Instant::now();
        let fx = boot().map(Arc::new);
        eprintln!(
            "[setup] {} in {:.1} s",
            tier.setup,
            t.elapsed().as_secs_f64()
        );
        fx
    } else {
        Err("not booted".into())
    };

    let name_of_tier = tier.name;
    let list = trials
        .iter()
        .map(|&(name, check)| {
            let fx = fixture.clone();
            let ignored = !selection.in_list(name);
            Trial::test(name, move || match &fx {
                Ok(fx) => timed(name, || check(fx)).map_err(Failed::from),
                Err(e) => Err(Failed::from(format!("{name_of_tier} setup failed: {e}"))),
            })
            .with_ignored_flag(ignored)
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, list);

    if let Ok(fx) = fixture {
        eprintln!("\n[figures]");
        for (k, v) in fx.figures().lock().unwrap().iter() {
            eprintln!("  {k}: {v}");
        }
        match Arc::try_unwrap(fx) {
            Ok(fx) => drop(fx),
            Err(_) => eprintln!("[teardown] fixture still shared; {}", tier.leftover),
        }
    }
    conclusion.exit();
}

pub struct Selection {
    listed: Option<Vec<String>>,
    filter: Option<String>,
    exact: bool,
}

impl Selection {
    pub fn new(args: &Arguments) -> Selection {
        Selection::from_list(std::env::var("OCUSERS_TRIALS").ok().as_deref(), args)
    }

    fn from_list(list: Option<&str>, args: &Arguments) -> Selection {
        Selection {
            listed: list.map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            }),
            filter: args.filter.clone(),
            exact: args.exact,
        }
    }

    /// In OCUSERS_TRIALS (or no list given): not ignored.
    pub fn in_list(&self, name: &str) -> bool {
        self.listed
            .as_ref()
            .is_none_or(|l| l.iter().any(|p| name.contains(p.as_str())))
    }

    /// In the list and through libtest's filter: it will run.
    pub fn selected(&self, name: &str) -> bool {
        self.in_list(name)
            && match &self.filter {
                None => true,
                Some(f) if self.exact => name == f,
                Some(f) => name.contains(f.as_str()),
            }
    }
}

/// Run one trial and say how long it took (`[time] NAME: N s` on stderr),
/// so a run's log shows where a tier's minutes go.
pub fn timed<T>(name: &str, check: impl FnOnce() -> T) -> T {
    let t = std::time::Instant::now();
    let out = check();
    eprintln!("[time] {name}: {:.1} s", t.elapsed().as_secs_f64());
    out
}
