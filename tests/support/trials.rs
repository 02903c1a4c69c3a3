//! Which trials of a heavy tier (tests/system, tests/vm) run: libtest's own
//! filter (one pattern, `--exact`) and `OCUSERS_TRIALS=a,b,c`, which keeps
//! only the trials whose names contain one of these (list the trials they
//! build on too); the others are ignored, not failed.
use libtest_mimic::Arguments;

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
