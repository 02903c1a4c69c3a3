//! What a trial's check returns and the small helpers that build it: a condition with its
//! message, a bounded wait, a golden-file compare.
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A check's result: Err is the message the trial fails with.
pub type R = Result<(), String>;

pub fn ensure(cond: bool, msg: impl FnOnce() -> String) -> R {
    if cond { Ok(()) } else { Err(msg()) }
}

/// Polls `f` every 250 ms until it says true (or fails), at most `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<bool, String>) -> R {
    let start = Instant::now();
    loop {
        if f()? {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Compare `actual` with the golden file `rel` (relative to the crate root); with
/// `UPDATE_GOLDEN=1` in the environment, rewrite the file instead (review the diff).
pub fn golden(rel: &str, actual: &[u8]) -> R {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        return std::fs::write(&path, actual).map_err(|e| format!("{rel}: {e}"));
    }
    let expected = std::fs::read(&path)
        .map_err(|e| format!("{rel}: {e}; run the test with UPDATE_GOLDEN=1 to write it"))?;
    ensure(expected == actual, || {
        format!(
            "{rel} differs from what the code renders (UPDATE_GOLDEN=1 rewrites it; review the diff)\n--- rendered:\n{}",
            String::from_utf8_lossy(actual)
        )
    })
}
