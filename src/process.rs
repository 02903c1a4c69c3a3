//! Running host tools (useradd, npm, tar) with errors that say what failed.
use std::process::{Command, Output, Stdio};

use crate::error::Error;

/// Run to completion with stdin closed; a non-zero exit is an error that
/// quotes the command and the last lines of its stderr. Arguments never
/// carry secrets (callers pass those through files or the environment).
pub fn run(cmd: &mut Command) -> Result<Output, Error> {
    let shown = show(cmd);
    tracing::debug!(command = %shown, "running");
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Command {
            command: shown.clone(),
            status: "could not start".into(),
            stderr: e.to_string(),
        })?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(Error::Command {
            command: shown,
            status: output.status.to_string(),
            stderr: tail(&output.stderr, &output.stdout),
        })
    }
}

fn show(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last few non-empty lines of stderr (or stdout if stderr is empty),
/// joined on one line.
fn tail(stderr: &[u8], stdout: &[u8]) -> String {
    let text = if stderr.iter().any(|b| !b.is_ascii_whitespace()) {
        String::from_utf8_lossy(stderr)
    } else {
        String::from_utf8_lossy(stdout)
    };
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

/// Is `program` on PATH?
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// For commands that print what they read: a closed stdout (`ocusers list |
/// head -1`) ends the process quietly, as it does `ls` or `systemctl`,
/// instead of a panic from `println!` (Rust starts with SIGPIPE ignored).
/// Call before any thread starts.
pub fn die_quietly_on_closed_stdout() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: SIG_DFL installs no handler, so nothing runs in signal context.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_quotes_command_and_stderr() {
        let err =
            run(Command::new("sh").args(["-c", "echo one >&2; echo two >&2; exit 3"])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`sh -c"), "{text}");
        assert!(text.contains("one | two"), "{text}");
        assert!(text.contains("exit status: 3"), "{text}");
        assert!(run(&mut Command::new("/nonexistent/tool")).is_err());
        assert!(which("sh").is_some());
        assert!(which("surely-not-a-program-here").is_none());
    }
}
