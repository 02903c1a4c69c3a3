//! The .deb of this tree, built with `cargo deb` once for all tiers and benches: cached under
//! `target/test-deb/<key>/`, where `<key>` hashes every file that can go into the package (the
//! tree without `.git`, `.ci`, `target`, `tests` and `bench`) and `RUSTFLAGS`. A second tier
//! in the same `cargo test` run (or a rerun without a source change) reuses it; a file lock
//! keeps two builds from racing. `OCUSERS_TEST_DEB=/path/x.deb` skips the build.
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::process::{describe, remove_tree, run_with_timeout};

/// Top-level entries of the crate that cannot change the package.
const NOT_INPUTS: &[&str] = &[".git", ".ci", "target", "tests", "bench"];

/// The .deb (alone in its directory, which a container may bind), built on first use.
pub fn build() -> Result<PathBuf, String> {
    if let Ok(p) = std::env::var("OCUSERS_TEST_DEB") {
        return Ok(PathBuf::from(p));
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let cache = root.join("target/test-deb");
    fs::create_dir_all(&cache).map_err(|e| format!("cannot create {}: {e}", cache.display()))?;
    let key = input_key(&root)?;
    let dir = cache.join(&key);
    if let Some(deb) = the_deb(&dir) {
        return Ok(deb);
    }
    let lock_path = cache.join(".lock");
    let _lock = crate::support::process::lock_exclusive(&lock_path)?;
    if let Some(deb) = the_deb(&dir) {
        return Ok(deb); // built by another run while we waited
    }
    // Under the lock, anything else here is an older build or a crashed one.
    for entry in fs::read_dir(&cache).into_iter().flatten().flatten() {
        if entry.file_name() != ".lock" {
            remove_tree(&entry.path())?;
        }
    }
    let tmp = cache.join(format!(".build-{key}"));
    let mut cmd = Command::new("cargo");
    cmd.args(["deb", "--locked", "--output"])
        .arg(&tmp)
        .current_dir(&root);
    let out = run_with_timeout(cmd, Duration::from_secs(1800));
    if !out.status.success() {
        return Err(format!(
            "`cargo deb` failed (install it with `cargo install cargo-deb` if missing): {}",
            describe(&out)
        ));
    }
    let printed = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    let built = the_deb(&tmp).ok_or_else(|| {
        format!(
            "cargo deb printed {printed:?} but left no single .deb in {}: {}",
            tmp.display(),
            describe(&out)
        )
    })?;
    let name = built.file_name().unwrap().to_owned();
    fs::rename(&tmp, &dir)
        .map_err(|e| format!("cannot rename {} to {}: {e}", tmp.display(), dir.display()))?;
    Ok(dir.join(name))
}

/// The one `*.deb` in `dir`, if it holds exactly that and nothing else.
fn the_deb(dir: &Path) -> Option<PathBuf> {
    let entries: Vec<PathBuf> = fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .collect();
    match entries.as_slice() {
        [one] if one.extension().is_some_and(|x| x == "deb") && one.is_file() => Some(one.clone()),
        _ => None,
    }
}

/// SHA-256 over the relative path and content of every input file, and `RUSTFLAGS`.
fn input_key(root: &Path) -> Result<String, String> {
    let mut files = Vec::new();
    for entry in fs::read_dir(root).map_err(|e| format!("{}: {e}", root.display()))? {
        let entry = entry.map_err(|e| format!("{}: {e}", root.display()))?;
        let name = entry.file_name();
        if !NOT_INPUTS.iter().any(|n| name == *n) {
            collect(&entry.path(), &mut files)?;
        }
    }
    files.sort();
    let mut hash = Sha256::new();
    hash.update(std::env::var("RUSTFLAGS").unwrap_or_default().as_bytes());
    for path in &files {
        let rel = path.strip_prefix(root).unwrap_or(path);
        hash.update(rel.to_string_lossy().as_bytes());
        hash.update([0]);
        let data = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        hash.update((data.len() as u64).to_le_bytes());
        hash.update(&data);
    }
    let digest = hash.finalize();
    Ok(digest[..8].iter().map(|b| format!("{b:02x}")).collect())
}

fn collect(path: &Path, files: &mut Vec<PathBuf>) -> Result<(), String> {
    let meta = fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.is_dir() {
        for entry in fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))? {
            let entry = entry.map_err(|e| format!("{}: {e}", path.display()))?;
            collect(&entry.path(), files)?;
        }
    } else if meta.is_file() {
        files.push(path.to_path_buf());
    }
    Ok(())
}
