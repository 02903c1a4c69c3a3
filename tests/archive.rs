//! Hostile archives through the built binary (threat model: "a hostile
//! archive"): each crafted backup (a matching manifest, one thing wrong)
//! is refused by `backup verify` and by `restore` with a one-line error
//! naming the problem, and `restore` creates nothing. A well-made crafted
//! archive passes, so the refusals are about what each case adds. Runs
//! anywhere, root or not (a temporary `OCUSERS_ROOT`); the system tier
//! restores the same archives on a real host.
use std::path::Path;
use std::process::{Command, Output};

mod support;

use support::craft;

fn ocusers(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ocusers"))
        .args(args)
        .env("OCUSERS_ROOT", root)
        .env_remove("OCUSERS_LOG")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run ocusers")
}

fn one_line_failure(out: &Output, needle: &str, case: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{case}: {stderr}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "{case}: one line: {stderr:?}"
    );
    assert!(
        stderr.contains(needle),
        "{case}: expected {needle:?} in {stderr:?}"
    );
}

/// Everything under the temporary root, as (path, kind) pairs.
fn tree(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p.clone());
            }
            out.push(p.strip_prefix(root).unwrap().display().to_string());
        }
    }
    out.sort();
    out
}

#[test]
fn a_well_made_crafted_archive_verifies() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("good.tar.gz");
    let r = craft::record("mallory");
    std::fs::write(
        &file,
        craft::build(
            &r,
            Some(b"OPENCLAW_GATEWAY_TOKEN=abc\nOCUSERS_PORT=20000\nNODE_OPTIONS=--max-old-space-size=768\nOPENAI_API_KEY=sk-x\n"),
            &craft::base(),
        ),
    )
    .unwrap();
    let out = ocusers(root.path(), &["backup", "verify", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn hostile_archives_are_refused_in_one_line_and_create_nothing() {
    let root = tempfile::tempdir().unwrap();
    let cases = craft::hostile("mallory");
    assert!(cases.len() >= 18);
    for (case, bytes, needle) in cases {
        let file = root.path().join(format!("{case}.tar.gz"));
        std::fs::write(&file, bytes).unwrap();
        let before = tree(root.path());
        let out = ocusers(root.path(), &["backup", "verify", file.to_str().unwrap()]);
        one_line_failure(&out, needle, case);
        // restore verifies first, before the privilege check.
        let out = ocusers(root.path(), &["restore", file.to_str().unwrap()]);
        one_line_failure(&out, needle, case);
        assert_eq!(
            tree(root.path()),
            before,
            "{case}: restore created something"
        );
    }
}
