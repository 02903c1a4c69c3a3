//! Crafted backups for the hostile-archive tests: any member name, type,
//! mode and link, written with raw tar headers (so names the tar crate's
//! builder refuses, like `/abs` or `a/../b`, can be made), and a manifest
//! that matches them, so the only thing wrong is what the case puts there.

use ocusers::backup::{Entry, FORMAT, Manifest};
use ocusers::policy::LimitOverrides;
use ocusers::tenant::{Record, TenantName};
use sha2::{Digest, Sha256};

pub struct Member {
    pub name: Vec<u8>,
    pub kind: tar::EntryType,
    pub mode: u32,
    pub data: Vec<u8>,
    pub link: Vec<u8>,
}

pub fn dir(name: &str) -> Member {
    Member {
        name: format!("{name}/").into_bytes(),
        kind: tar::EntryType::Directory,
        mode: 0o700,
        data: Vec::new(),
        link: Vec::new(),
    }
}

pub fn file(name: &str, data: &[u8]) -> Member {
    Member {
        name: name.as_bytes().to_vec(),
        kind: tar::EntryType::Regular,
        mode: 0o600,
        data: data.to_vec(),
        link: Vec::new(),
    }
}

pub fn link(name: &str, target: &str) -> Member {
    Member {
        name: name.as_bytes().to_vec(),
        kind: tar::EntryType::Symlink,
        mode: 0o777,
        data: Vec::new(),
        link: target.as_bytes().to_vec(),
    }
}

pub fn special(name: &str, kind: tar::EntryType, link: &str) -> Member {
    Member {
        name: name.as_bytes().to_vec(),
        kind,
        mode: 0o600,
        data: Vec::new(),
        link: link.as_bytes().to_vec(),
    }
}

pub fn record(name: &str) -> Record {
    Record {
        name: TenantName::parse(name).unwrap(),
        port: 20000,
        block: 128,
        tier: "standard".into(),
        runtime: "2026.9.6".into(),
        created: "2026-11-22T00:00:00Z".into(),
        domains: Vec::new(),
        limits: LimitOverrides::default(),
    }
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn raw_header(m: &Member) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    {
        let g = h.as_gnu_mut().unwrap();
        assert!(m.name.len() < 100 && m.link.len() < 100);
        g.name[..m.name.len()].copy_from_slice(&m.name);
        g.linkname[..m.link.len()].copy_from_slice(&m.link);
    }
    h.set_entry_type(m.kind);
    h.set_mode(m.mode);
    h.set_size(m.data.len() as u64);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    h
}

/// A gzip-compressed archive: registry, optional secrets, `members`, and a
/// manifest listing each member (once, even if it appears twice).
pub fn build(record: &Record, secrets: Option<&[u8]>, members: &[Member]) -> Vec<u8> {
    let registry = toml::to_string(record).unwrap();
    let mut all = vec![file("registry.toml", registry.as_bytes())];
    if let Some(s) = secrets {
        all.push(file("secrets.env", s));
    }
    all.push(dir("state"));
    for m in members {
        all.push(Member {
            name: m.name.clone(),
            kind: m.kind,
            mode: m.mode,
            data: m.data.clone(),
            link: m.link.clone(),
        });
    }
    let mut entries: Vec<Entry> = Vec::new();
    for m in &all {
        let name = m.name.strip_suffix(b"/").unwrap_or(&m.name);
        let path = String::from_utf8_lossy(name).into_owned();
        if entries.iter().any(|e| e.path == path) {
            continue;
        }
        let (kind, sha) = if m.kind.is_dir() {
            ("dir", String::new())
        } else if m.kind.is_symlink() {
            ("symlink", hex(&Sha256::digest(&m.link)))
        } else {
            ("file", hex(&Sha256::digest(&m.data)))
        };
        entries.push(Entry {
            path,
            raw: None,
            kind: kind.into(),
            mode: m.mode,
            size: m.data.len() as u64,
            sha256: sha,
        });
    }
    let manifest = Manifest {
        format: FORMAT,
        tenant: record.name.to_string(),
        created: "2026-11-22T00:00:00Z".into(),
        ocusers_version: "crafted".into(),
        record: record.clone(),
        with_secrets: secrets.is_some(),
        sqlite: Vec::new(),
        entries,
    };
    all.push(file(
        "manifest.json",
        &serde_json::to_vec_pretty(&manifest).unwrap(),
    ));
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for m in &all {
        tar.append(&raw_header(m), m.data.as_slice()).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

/// The usual good state: a workspace with a note.
pub fn base() -> Vec<Member> {
    vec![
        dir("state/workspace"),
        file("state/workspace/note.txt", b"hello"),
    ]
}

/// One case per refusal: (name, archive bytes, words the one-line error
/// must contain).
pub fn hostile(tenant: &str) -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let r = record(tenant);
    let with = |extra: Vec<Member>| {
        let mut m = base();
        m.extend(extra);
        build(&r, None, &m)
    };
    let mut limits = r.clone();
    limits.limits.memory_high = Some("4G".into());
    limits.limits.memory_max = Some("1G".into());
    let mut runtime = r.clone();
    runtime.runtime = "../../../../tmp/evil".into();
    let secrets = |s: &[u8]| build(&r, Some(s), &base());
    let mut suid = file("state/workspace/suid", b"#!/bin/sh\n");
    suid.mode = 0o4755;
    let mut sgid = dir("state/workspace/sgid");
    sgid.mode = 0o2775;
    vec![
        (
            "absolute-link",
            with(vec![link("state/workspace/l", "/etc/shadow")]),
            "outside the state",
        ),
        (
            "dotdot-link",
            with(vec![link("state/workspace/l", "../../x")]),
            "outside the state",
        ),
        (
            "member-under-link",
            with(vec![
                link("state/workspace/l", "."),
                file("state/workspace/l/x", b"x"),
            ]),
            "below the symlink",
        ),
        (
            "duplicate",
            with(vec![file("state/workspace/note.txt", b"again")]),
            "appears twice",
        ),
        (
            "hard-link",
            with(vec![special(
                "state/workspace/h",
                tar::EntryType::Link,
                "state/workspace/note.txt",
            )]),
            "hard link",
        ),
        (
            "char-device",
            with(vec![special("state/workspace/d", tar::EntryType::Char, "")]),
            "device node",
        ),
        (
            "block-device",
            with(vec![special(
                "state/workspace/d",
                tar::EntryType::Block,
                "",
            )]),
            "device node",
        ),
        (
            "fifo",
            with(vec![special("state/workspace/f", tar::EntryType::Fifo, "")]),
            "FIFO",
        ),
        ("setuid", with(vec![suid]), "setuid"),
        ("setgid", with(vec![sgid]), "setgid"),
        (
            "absolute-path",
            with(vec![file("/etc/ocusers-crafted", b"x")]),
            "absolute path",
        ),
        (
            "dotdot-path",
            with(vec![file("state/../../etc/ocusers-crafted", b"x")]),
            "`..` path",
        ),
        (
            "bad-runtime",
            build(&runtime, None, &base()),
            "invalid OpenClaw version",
        ),
        ("limits", build(&limits, None, &base()), "memory_high"),
        (
            "ld-preload",
            secrets(b"LD_PRELOAD=/tmp/x.so\n"),
            "LD_PRELOAD",
        ),
        ("path", secrets(b"PATH=/tmp\n"), "PATH"),
        (
            "state-dir",
            secrets(b"OPENCLAW_STATE_DIR=/etc\n"),
            "OPENCLAW_STATE_DIR",
        ),
        (
            "node-options",
            secrets(b"NODE_OPTIONS=--require=/tmp/x.js\n"),
            "NODE_OPTIONS",
        ),
    ]
}
