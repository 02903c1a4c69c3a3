//! The plans applied against a temporary root, with a recording systemd
//! ([`FakeSystemd`]) and user database ([`FakeAccounts`]): after each case,
//! the whole tree under the root, the steps applied, and the D-Bus and
//! account calls, in order, compared with `tests/golden/applied/*.txt`
//! (in the style of systemd/zram-generator's test cases). A step removed,
//! reordered or changed in what it writes or asks of systemd changes them.
//! `UPDATE_GOLDEN=1 cargo test --lib provision::tests`, run as root,
//! rewrites them; review the diff.
//!
//! Owners: as root (CI), the fake tenant is uid 4242 and the tree shows
//! `ROOT` and `TENANT`; as another user, who then owns everything, the
//! golden's owners are read as `ME` (the same files check all the rest).
//!
//! What does not run here, and each golden's header says so: the gateway
//! (the plans start the unit with `Start::NoWait`, so no readiness wait;
//! restore's and repair's restart-and-wait steps are left out), nftables (mode `auto` on a
//! host that cannot load rules: the ruleset file is written, nothing is
//! loaded). The firewall's rules for the tenant come from the fake
//! accounts' uid, shown as `UID`.
use std::fmt::Write as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::super::{Ctx, Start, remove, restore};
use super::goldie;
use crate::config::HostConfig;
use crate::identity::fake::{FakeAccounts, TENANT_UID};
use crate::paths::Paths;
use crate::plan::{Outcome, Plan};
use crate::policy::Tier;
use crate::systemd::fake::FakeSystemd;
use crate::tenant::Record;

const NOT_RUN: &str =
    "not run: the gateway (Start::NoWait, no readiness wait), nftables (the ruleset file only)";

fn sha(data: &[u8]) -> String {
    let h = Sha256::digest(data);
    h.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// An env file: its keys, each value as a hash (the gateway token, new on
/// each run, as its length).
fn env_lines(data: &[u8]) -> String {
    let env = crate::secrets::EnvFile::parse(&String::from_utf8_lossy(data)).unwrap();
    env.keys()
        .map(|k| {
            let v = env.get(k).unwrap_or_default();
            if k == crate::secrets::TOKEN_KEY {
                format!("      {k}=<new token, {} chars>\n", v.len())
            } else {
                format!("      {k}=sha256:{}\n", sha(v.as_bytes()))
            }
        })
        .collect()
}

/// A `.tar.gz`: its members and their sizes (the archive itself holds
/// times and a new token).
fn archive_lines(path: &Path) -> String {
    let gz = flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap());
    let mut tar = tar::Archive::new(gz);
    let mut out = String::new();
    for e in tar.entries().unwrap() {
        let e = e.unwrap();
        let h = e.header();
        let kind = match h.entry_type() {
            tar::EntryType::Directory => "dir".to_string(),
            tar::EntryType::Symlink => "link".to_string(),
            tar::EntryType::Regular => format!("file {}", h.size().unwrap()),
            other => format!("{other:?}"),
        };
        writeln!(
            out,
            "      {} {kind} {:04o}",
            e.path().unwrap().display(),
            h.mode().unwrap() & 0o7777
        )
        .unwrap();
    }
    out
}

/// The nftables ruleset with the tenant's uid (`uid`, the fake accounts'
/// one) written `UID` in the tenant's set elements (the lines that name
/// goldie), so the text is the same whichever uid the test runs as.
fn neutral_ruleset(data: &[u8], uid: u32) -> String {
    String::from_utf8_lossy(data)
        .lines()
        .map(|l| {
            if !l.contains("\"goldie ") {
                return format!("{l}\n");
            }
            let l = l.replace(&format!("uid {uid}\""), "uid UID\"");
            let l = match l.strip_prefix(&format!("\t\t\t{uid} ")) {
                Some(rest) => format!("\t\t\tUID {rest}"),
                None => l,
            };
            format!("{l}\n")
        })
        .collect()
}

/// A uid as the goldens write it: as root (CI), `ROOT` for 0 and `TENANT`
/// for the fake accounts' uid ([`TENANT_UID`]); as another user, who owns
/// everything the test makes, `ME` for that user (and [`compare`] reads the
/// golden's ROOT and TENANT owners as ME); else the number.
fn owner_label(uid: u32) -> String {
    let me = nix::unistd::geteuid().as_raw();
    if me == 0 && uid == 0 {
        "ROOT".into()
    } else if me == 0 && uid == TENANT_UID {
        "TENANT".into()
    } else if me != 0 && uid == me {
        "ME".into()
    } else {
        uid.to_string()
    }
}

/// The golden as a run that is not root can check it: the owners in its
/// tree (`ROOT`, `TENANT`) are all this user's, `ME`.
fn owners_as_me(golden: &str) -> String {
    let Some((head, tree)) = golden.split_once(TREE) else {
        return golden.to_string();
    };
    let tree: String = tree
        .lines()
        .map(|l| {
            let mut words: Vec<&str> = l.split(' ').collect();
            // "  PATH dir MODE OWNER", "  PATH file MODE OWNER ...",
            // "  PATH link OWNER -> TARGET" (two leading spaces: two empty words).
            let at = match words.get(3) {
                Some(&"link") => 4,
                Some(&"dir") | Some(&"file") => 5,
                _ => usize::MAX,
            };
            if let Some(w) = words.get_mut(at)
                && (*w == "ROOT" || *w == "TENANT")
            {
                *w = "ME";
            }
            format!("{}\n", words.join(" "))
        })
        .collect();
    format!("{head}{TREE}{tree}")
}

const TREE: &str = "== tree under ROOT\n";

/// Every path under `root`, sorted: type, mode, owner (see [`owner_label`]),
/// and for a file its size and SHA-256 (an env
/// file's values and an archive's members instead, see above; the
/// ruleset's, with the tenant's uid `uid` written UID, and its lines for
/// the tenant).
fn tree(root: &Path, uid: u32) -> String {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            out.push(p.clone());
            if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                walk(&p, out);
            }
        }
    }
    let mut paths = Vec::new();
    walk(root, &mut paths);
    let mut out = String::new();
    for p in paths {
        let m = std::fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        let owner = owner_label(m.uid());
        let mode = m.permissions().mode() & 0o7777;
        let ft = m.file_type();
        if ft.is_symlink() {
            let target = std::fs::read_link(&p).unwrap();
            writeln!(out, "  {rel} link {owner} -> {}", target.display()).unwrap();
        } else if ft.is_dir() {
            writeln!(out, "  {rel}/ dir {mode:04o} {owner}").unwrap();
        } else {
            let data = std::fs::read(&p).unwrap();
            if rel.ends_with(".env") {
                writeln!(out, "  {rel} file {mode:04o} {owner} {}", data.len()).unwrap();
                out.push_str(&env_lines(&data));
            } else if rel.ends_with(".nft") {
                let text = neutral_ruleset(&data, uid);
                writeln!(
                    out,
                    "  {rel} file {mode:04o} {owner} {} sha256:{} (UID for the tenant's uid)",
                    text.len(),
                    sha(text.as_bytes())
                )
                .unwrap();
                for l in text.lines().filter(|l| l.contains("\"goldie ")) {
                    writeln!(out, "      {}", l.trim()).unwrap();
                }
            } else if rel.ends_with(".tar.gz") {
                writeln!(out, "  {rel} file {mode:04o} {owner} (archive)").unwrap();
                out.push_str(&archive_lines(&p));
            } else {
                writeln!(
                    out,
                    "  {rel} file {mode:04o} {owner} {} sha256:{}",
                    data.len(),
                    sha(&data)
                )
                .unwrap();
            }
        }
    }
    out
}

struct Case<'r> {
    root: &'r Path,
    sd: &'r FakeSystemd,
    ids: &'r FakeAccounts,
}

impl Case<'_> {
    /// Apply `plan`, then compare the golden `name` (`what` is its header).
    fn apply(&self, name: &str, what: &str, plan: Plan<'_>) -> Outcome {
        let outcome = plan
            .apply()
            .unwrap_or_else(|e| panic!("the {name} plan failed: {e:#}"));
        let root = self.root.display().to_string();
        let mut text = format!("# {what}\n# {NOT_RUN}\n== steps applied\n");
        for s in &outcome.applied {
            writeln!(text, "  {}", s.replace(&root, "ROOT")).unwrap();
        }
        text.push_str("== steps already done\n");
        for s in &outcome.already_done {
            writeln!(text, "  {}", s.replace(&root, "ROOT")).unwrap();
        }
        self.finish(name, text);
        outcome
    }

    /// Apply `plan`, which must fail, then compare the golden `name`: the
    /// error, the calls (the rollback's included) and the tree it leaves.
    fn fail(&self, name: &str, what: &str, plan: Plan<'_>) {
        let Err(e) = plan.apply() else {
            panic!("the {name} plan did not fail");
        };
        let root = self.root.display().to_string();
        let text = format!(
            "# {what}\n# {NOT_RUN}\n== error\n  {}\n",
            format!("{e:#}").replace(&root, "ROOT")
        );
        self.finish(name, text);
    }

    fn finish(&self, name: &str, mut text: String) {
        text.push_str("== D-Bus calls\n");
        for c in self.sd.take_calls() {
            writeln!(text, "  {c}").unwrap();
        }
        text.push_str("== account calls\n");
        for c in self.ids.take_calls() {
            writeln!(text, "  {c}").unwrap();
        }
        text.push_str(TREE);
        text.push_str(&tree(self.root, self.ids.uid()));
        compare(name, &text);
    }
}

fn compare(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/applied")
        .join(format!("{name}.txt"));
    let root = nix::unistd::geteuid().is_root();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        // Only root's run tells root's files from the tenant's.
        assert!(
            root,
            "rewrite the applied goldens as root (`sudo env PATH=$PATH UPDATE_GOLDEN=1 cargo test --lib provision::tests`): only then are the tenant's files owned by another uid than root's"
        );
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run `UPDATE_GOLDEN=1 cargo test --lib provision::tests`",
            path.display()
        )
    });
    let expected = if root {
        expected
    } else {
        owners_as_me(&expected)
    };
    if expected != actual {
        let diff = line_diff(&expected, actual);
        panic!(
            "applying the {name} plan gave another result than {}; run `UPDATE_GOLDEN=1 cargo test --lib provision::tests` and review the diff.\n--- the golden (-) and now (+):\n{diff}\n--- now:\n{actual}",
            path.display()
        );
    }
}

/// The lines of `a` and `b` that differ, in order (a longest common
/// subsequence: a moved line shows as removed where it was and added where
/// it is now), each with its line number in the golden.
fn line_diff(a: &str, b: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            (i, j) = (i + 1, j + 1);
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            writeln!(out, "{:>4} +{}", i + 1, b[j]).unwrap();
            j += 1;
        } else {
            writeln!(out, "{:>4} -{}", i + 1, a[i]).unwrap();
            i += 1;
        }
    }
    out
}

#[test]
fn applied_plans_match_their_golden_files() {
    crate::firewall::load_no_rules_in_this_thread();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let paths = Paths::new(root);
    let cfg = HostConfig::load(&paths).unwrap();
    assert_eq!(cfg.isolation.firewall, crate::config::FirewallMode::Auto);
    let sd = FakeSystemd::new(&paths);
    let ids = FakeAccounts::default();
    let case = Case {
        root,
        sd: &sd,
        ids: &ids,
    };
    let mut record = goldie();
    // A time `restore` accepts in the archived record.
    record.created = "2026-12-01T00:00:00Z".into();
    let name = &record.name;

    // add: a new tenant.
    let tier = Tier::load(&paths, "standard").unwrap();
    let add = Ctx::new(&paths, &cfg, &sd, &record, &tier, &[], Vec::new()).with_accounts(&ids);
    case.apply(
        "add",
        "add: tenant goldie (tier standard, port block 1-128) on an empty root",
        add.plan(Start::NoWait, false),
    );
    // Applied again, it finds everything done.
    let again = case.apply(
        "add-again",
        "add again: the same tenant, nothing changed since",
        add.plan(Start::NoWait, false),
    );
    assert!(again.applied.is_empty(), "{:?}", again.applied);

    // apply: the tenant, running for a minute, moved to another tier, with
    // a limit override and a secret.
    sd.age_units(60);
    let mut changed = record.clone();
    changed.tier = "heavy".into();
    changed.limits.tasks_max = Some(300);
    let heavy = Tier::load(&paths, "heavy").unwrap();
    let secrets = vec![("OPENAI_API_KEY".to_string(), "sk-x".to_string())];
    let apply =
        Ctx::new(&paths, &cfg, &sd, &changed, &heavy, &secrets, Vec::new()).with_accounts(&ids);
    case.apply(
        "apply",
        "apply: goldie, running, moved to tier heavy with TasksMax=300 and a secret OPENAI_API_KEY (restart_stale)",
        apply.plan(Start::NoWait, true),
    );

    // remove: archived by the real backup code (in this process: the
    // state is not under /var/lib/openclaw).
    let archive = paths.archive_dir().join("goldie.tar.gz");
    let remove = remove::plan(
        &paths,
        &cfg,
        &sd,
        &ids,
        name,
        "oc-goldie",
        remove::our_account(&ids, name),
        "openclaw@goldie.service",
        Some(archive.clone()),
        Some(&[]),
    )
    .unwrap();
    case.apply(
        "remove",
        "remove: goldie as apply left it, its state archived to ROOT/var/lib/ocusers/archive/goldie.tar.gz",
        remove,
    );

    // restore: from that archive, as `ocusers restore` builds the plan (the
    // add plan without start, the unpack and secrets steps).
    std::fs::create_dir_all(root.join("proc")).unwrap();
    std::fs::write(root.join("proc/meminfo"), "MemTotal: 16777216 kB\n").unwrap();
    crate::runtime::fake_installed(&paths, &record.runtime);
    let marker = paths
        .runtime_dir(&record.runtime)
        .join("ocusers-runtime.toml");
    let text = std::fs::read_to_string(&marker).unwrap();
    let fixed: String = text
        .lines()
        .map(|l| {
            if l.starts_with("installed") {
                "installed = \"2026-12-01T00:00:00Z\"\n".to_string()
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&marker, fixed).unwrap();
    let contents = crate::backup::verify(&archive).unwrap();
    crate::backup::check_record(&paths, &contents).unwrap();
    let restored = restore::prepare(&paths, &cfg, &contents.manifest, name, &mut |n| {
        panic!("{n}")
    })
    .unwrap();
    let r: &Record = &restored.record;
    let ctx = Ctx::new(
        &paths,
        &cfg,
        &sd,
        r,
        &restored.tier,
        &[],
        restored.extra_domains.clone(),
    )
    .with_accounts(&ids);
    let mut plan = ctx.plan(Start::No, false);
    restore::push_steps(&mut plan, &paths, &ids, &contents, &archive, r, false);
    case.apply(
        "restore",
        "restore: goldie from the archive remove left (new token; without the restart-and-wait step, which needs a gateway)",
        plan,
    );
}

/// A new tenant whose start job fails: the rollback undoes every step it
/// had applied, in reverse order, and leaves the root as it found it (but
/// for the directories the steps made).
#[test]
fn a_failed_add_rolls_back_to_its_golden_file() {
    crate::firewall::load_no_rules_in_this_thread();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let paths = Paths::new(root);
    let cfg = HostConfig::load(&paths).unwrap();
    let sd = FakeSystemd::new(&paths);
    sd.fail_on("StartUnit");
    let ids = FakeAccounts::default();
    let case = Case {
        root,
        sd: &sd,
        ids: &ids,
    };
    let record = goldie();
    let tier = Tier::load(&paths, "standard").unwrap();
    let add = Ctx::new(&paths, &cfg, &sd, &record, &tier, &[], Vec::new()).with_accounts(&ids);
    case.fail(
        "add-start-fails",
        "add: tenant goldie on an empty root, its start job failing (FakeSystemd::fail_on StartUnit)",
        add.plan(Start::NoWait, false),
    );
}

/// `ocusers repair` on a tenant whose unit was disabled and whose state
/// directory is gone: the add plan (`Start::No`) makes what is missing, the
/// repair steps give the state back; the restart that waits for a gateway
/// is taken off the plan and named in the golden's header.
#[test]
fn repair_matches_its_golden_file() {
    use crate::systemd::Systemd as _;
    crate::firewall::load_no_rules_in_this_thread();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let paths = Paths::new(root);
    let cfg = HostConfig::load(&paths).unwrap();
    let sd = FakeSystemd::new(&paths);
    let ids = FakeAccounts::default();
    let case = Case {
        root,
        sd: &sd,
        ids: &ids,
    };
    let record = goldie();
    let tier = Tier::load(&paths, "standard").unwrap();
    let add = Ctx::new(&paths, &cfg, &sd, &record, &tier, &[], Vec::new()).with_accounts(&ids);
    add.plan(Start::NoWait, false).apply().unwrap();
    // The drift: the unit disabled, the state directory deleted.
    let unit = "openclaw@goldie.service";
    sd.disable(unit).unwrap();
    crate::fsutil::remove_tree(&paths.state_dir(&record.name)).unwrap();
    sd.take_calls();
    ids.take_calls();

    let drift = super::super::repair::Drift::check(&paths, &cfg, &sd, &record).unwrap();
    assert!(!drift.is_clean());
    assert_eq!(sd.unit(unit).unwrap().unit_file_state, "disabled");
    sd.take_calls();
    let ctx = Ctx::new(&paths, &cfg, &sd, &record, &tier, &[], Vec::new()).with_accounts(&ids);
    let mut plan = ctx.plan(Start::No, false);
    super::super::repair::push_steps(&mut plan, &paths, &sd, &ids, &record, &drift);
    let restart = plan.pop().expect("the repair plan restarts the tenant");
    assert!(
        restart.starts_with("restart openclaw@goldie.service"),
        "{restart}"
    );
    case.apply(
        "repair",
        &format!(
            "repair: goldie after add, its unit disabled and its state directory deleted (without the last step, which needs a gateway: {restart})"
        ),
        plan,
    );
}
