//! Plan, then apply. A change is a list of steps; each step can tell whether
//! it is already done, so applying a plan twice changes nothing the second
//! time and re-running a command after a crash picks up where it stopped.
//! When a step fails, the steps this run applied are reverted in reverse
//! order, so a failed command leaves nothing half-made.
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

type Check<'a> = Box<dyn Fn() -> Result<bool> + 'a>;
type Action<'a> = Box<dyn Fn() -> Result<()> + 'a>;

pub struct Step<'a> {
    what: String,
    done: Check<'a>,
    apply: Action<'a>,
    revert: Option<Action<'a>>,
    tag: Option<&'static str>,
}

impl<'a> Step<'a> {
    pub fn new(
        what: impl Into<String>,
        done: impl Fn() -> Result<bool> + 'a,
        apply: impl Fn() -> Result<()> + 'a,
    ) -> Step<'a> {
        Step {
            what: what.into(),
            done: Box::new(done),
            apply: Box::new(apply),
            revert: None,
            tag: None,
        }
    }

    /// Name the step so the outcome says how long applying it took.
    pub fn tag(mut self, tag: &'static str) -> Step<'a> {
        self.tag = Some(tag);
        self
    }

    /// Is the step done already (its check, as a plan runs it)?
    pub fn is_done(&self) -> Result<bool> {
        (self.done)().with_context(|| format!("checking: {}", self.what))
    }

    /// How to undo `apply` if a later step fails.
    pub fn revert(mut self, revert: impl Fn() -> Result<()> + 'a) -> Step<'a> {
        self.revert = Some(Box::new(revert));
        self
    }
}

#[derive(Default)]
pub struct Plan<'a> {
    /// What the plan is about, for the journal (`tenant=alice action=add`).
    tenant: String,
    action: String,
    steps: Vec<Step<'a>>,
}

/// What applying a plan did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub applied: Vec<String>,
    pub already_done: Vec<String>,
    /// How long each applied tagged step took.
    pub timings: Vec<(&'static str, Duration)>,
}

impl Outcome {
    pub fn changed(&self) -> bool {
        !self.applied.is_empty()
    }

    /// Total time of the applied steps with one of these tags.
    pub fn time_of(&self, tags: &[&str]) -> Duration {
        self.timings
            .iter()
            .filter(|(t, _)| tags.contains(t))
            .map(|(_, d)| *d)
            .sum()
    }
}

impl<'a> Plan<'a> {
    pub fn new(tenant: &str, action: &str) -> Plan<'a> {
        Plan {
            tenant: tenant.to_string(),
            action: action.to_string(),
            steps: Vec::new(),
        }
    }

    /// Record the plan's steps under another action (`ocusers history`
    /// shows `set` for the add plan that `ocusers set` runs).
    pub fn recorded_as(mut self, action: &str) -> Plan<'a> {
        self.action = action.to_string();
        self
    }

    pub fn push(&mut self, step: Step<'a>) {
        self.steps.push(step);
    }

    /// Take the last step off, and say what it was (a test that cannot run
    /// it, such as a restart that waits for a gateway).
    #[cfg(test)]
    pub(crate) fn pop(&mut self) -> Option<String> {
        self.steps.pop().map(|s| s.what)
    }

    pub fn len(&self) -> usize {
        self.steps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The plan as `--dry-run` prints it: one line a step, marked done or to do.
    pub fn describe(&self) -> Result<String> {
        let mut out = String::new();
        for (i, step) in self.steps.iter().enumerate() {
            let done = (step.done)().with_context(|| format!("checking: {}", step.what))?;
            let mark = if done { "done" } else { "todo" };
            writeln!(out, "  {:>2}. [{mark}] {}", i + 1, step.what).unwrap();
        }
        Ok(out)
    }

    /// What applying now would do: the steps not done yet, in order.
    pub fn todo(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for step in &self.steps {
            if !(step.done)().with_context(|| format!("checking: {}", step.what))? {
                out.push(step.what.clone());
            }
        }
        Ok(out)
    }

    pub fn apply(self) -> Result<Outcome> {
        let mut outcome = Outcome::default();
        let mut applied: Vec<&Step<'a>> = Vec::new();
        for step in &self.steps {
            let result = (step.done)()
                .with_context(|| format!("checking: {}", step.what))
                .and_then(|done| {
                    if done {
                        outcome.already_done.push(step.what.clone());
                        Ok(())
                    } else {
                        tracing::info!(tenant = %self.tenant, action = %self.action, step = %step.what, "applying");
                        let started = Instant::now();
                        (step.apply)().with_context(|| format!("failed to {}", step.what))?;
                        if let Some(tag) = step.tag {
                            outcome.timings.push((tag, started.elapsed()));
                        }
                        crate::logging::record(&self.tenant, &self.action, &step.what);
                        outcome.applied.push(step.what.clone());
                        applied.push(step);
                        Ok(())
                    }
                });
            if let Err(err) = result {
                let mut reverted = 0;
                let mut failed = Vec::new();
                for done in applied.iter().rev() {
                    if let Some(revert) = &done.revert {
                        tracing::info!(step = %done.what, "rolling back");
                        if let Err(e) = revert() {
                            tracing::error!(step = %done.what, "rollback failed: {e:#}");
                            failed.push(done.what.clone());
                        } else {
                            reverted += 1;
                            crate::logging::record(
                                &self.tenant,
                                &format!("{}-rollback", self.action),
                                &done.what,
                            );
                        }
                    }
                }
                // One line for the operator: what failed and what was undone.
                return Err(if failed.is_empty() {
                    err.context(format!(
                        "{} ({reverted} completed steps rolled back)",
                        self.action
                    ))
                } else {
                    err.context(format!(
                        "{} (rollback incomplete: could not undo {}; re-run the command to repair)",
                        self.action,
                        failed.join(", ")
                    ))
                });
            }
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn skips_done_steps_and_is_idempotent() {
        let cell = RefCell::new(Vec::<&str>::new());
        let state = &cell;
        let build = || {
            let mut plan = Plan::new("t", "test");
            for name in ["a", "b"] {
                plan.push(Step::new(
                    format!("make {name}"),
                    move || Ok(state.borrow().contains(&name)),
                    move || {
                        state.borrow_mut().push(name);
                        Ok(())
                    },
                ));
            }
            plan
        };
        assert!(build().describe().unwrap().contains("[todo] make a"));
        let first = build().apply().unwrap();
        assert_eq!(first.applied, ["make a", "make b"]);
        let second = build().apply().unwrap();
        assert!(!second.changed());
        assert_eq!(second.time_of(&["any"]), Duration::ZERO);
        assert_eq!(second.already_done.len(), 2);
        assert!(build().describe().unwrap().contains("[done] make b"));
    }

    #[test]
    fn failure_reverts_what_this_run_applied_in_reverse() {
        let log = RefCell::new(Vec::<String>::new());
        let mut plan = Plan::new("t", "test");
        plan.push(
            Step::new("pre-existing", || Ok(true), || unreachable!()).revert(|| {
                log.borrow_mut().push("revert pre-existing".into());
                Ok(())
            }),
        );
        for name in ["one", "two"] {
            let log = &log;
            plan.push(
                Step::new(
                    name,
                    || Ok(false),
                    move || {
                        log.borrow_mut().push(format!("apply {name}"));
                        Ok(())
                    },
                )
                .revert(move || {
                    log.borrow_mut().push(format!("revert {name}"));
                    Ok(())
                }),
            );
        }
        plan.push(Step::new(
            "boom",
            || Ok(false),
            || anyhow::bail!("disk full"),
        ));
        let err = plan.apply().unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "test (2 completed steps rolled back): failed to boom: disk full"
        );
        assert_eq!(
            *log.borrow(),
            ["apply one", "apply two", "revert two", "revert one"]
        );
    }
}
