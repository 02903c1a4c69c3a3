use super::*;

fn three() -> Inputs {
    let t = |name: &str, first: u16, uid: u32| TenantRule {
        name: name.into(),
        first_port: first,
        last_port: first + 127,
        uid,
    };
    Inputs {
        tenants: vec![
            t("bob-smith", 20128, 997),
            t("alice", 20000, 998),
            t("carol", 20256, 996),
        ],
        allow: vec![
            AllowLocal::parse("127.0.0.1:11434").unwrap(),
            AllowLocal::parse("tcp/[::1]:8080").unwrap(),
        ],
        resolvers: vec!["127.0.0.53".parse().unwrap()],
    }
}

#[test]
fn rules_are_sets_that_do_not_grow_with_tenants() {
    let text = render(&three());
    assert!(text.contains("table inet ocusers\ndelete table inet ocusers\ntable inet ocusers {"));
    for want in [
        "998 . 20000-20127 comment \"alice own 20000-20127 uid 998\",",
        "20128-20255 comment \"bob-smith block 20128-20255\"",
        "127.0.0.1 . tcp . 11434 comment \"allow_local 127.0.0.1:11434 tcp\"",
        "127.0.0.1 . udp . 11434 comment \"allow_local 127.0.0.1:11434 udp\"",
        "::1 . tcp . 8080 comment \"allow_local tcp/[::1]:8080 tcp\"",
        "127.0.0.53 . udp . 53 comment \"resolver 127.0.0.53 udp\"",
        "fd00:ec2::254 comment \"metadata fd00:ec2::254\"",
        "ip daddr 127.0.0.0/8 goto to_local",
        "fib daddr type local goto to_local",
        "meta skuid @tenant_uids ct state new goto tenant_local",
    ] {
        assert!(text.contains(want), "{want}\n{text}");
    }
    assert!(!text.contains("::1 . udp . 8080"), "{text}");
    // The answer rule comes before anything that accepts a tenant's
    // packets, and is not limited to new connections.
    let answer = text.find("counter drop").unwrap();
    assert!(answer < text.find("goto to_local").unwrap());
    assert!(
        !text
            .lines()
            .find(|l| l.contains("counter drop"))
            .unwrap()
            .contains("ct state")
    );
    // Rules: the same count for 0, 3 and 200 tenants.
    let rules = |t: &str| {
        t.lines()
            .filter(|l| {
                l.starts_with("\t\t")
                    && !l.starts_with("\t\t\t")
                    && !l.contains("typeof")
                    && !l.trim_start().starts_with("flags ")
                    && !l.contains("elements")
                    && !l.contains("type filter")
                    && l.trim() != "}"
            })
            .count()
    };
    let none = render(&Inputs::default());
    assert!(!none.contains("elements = {\n\t\t}"), "{none}");
    let mut many = three();
    many.tenants = (0..200)
        .map(|i| TenantRule {
            name: format!("t{i}"),
            first_port: 20000 + 128 * (i % 99) as u16,
            last_port: 20127 + 128 * (i % 99) as u16,
            uid: 2000 + i,
        })
        .collect();
    assert_eq!(rules(&none), rules(&text));
    assert_eq!(rules(&render(&many)), rules(&text));
    assert_eq!(rules(&text), 23, "{text}");
}

#[test]
fn overlapping_blocks_are_merged_so_the_set_loads() {
    let mut i = three();
    i.tenants[2].first_port = 20200;
    i.tenants[2].last_port = 20327;
    let text = render(&i);
    assert!(
        text.contains(
            "20128-20327 comment \"bob-smith block 20128-20255; carol block 20200-20327\""
        ),
        "{text}"
    );
}

#[test]
fn loaded_table_is_compared_by_comments() {
    let text = render(&three());
    assert!(loaded_matches(&text, &text));
    assert!(closes_block(&text, "alice", 20000, 20127));
    assert!(!closes_block(&text, "alice", 20000, 20255));
    assert!(!closes_block(&text, "dave", 20384, 20511));
    let mut fewer = three();
    fewer.allow.pop();
    assert!(!loaded_matches(&text, &render(&fewer)));
    // As `nft list table` prints a set: several elements on a line.
    let loaded = text.replace(",\n\t\t\t", ", ");
    assert!(loaded_matches(&text, &loaded));
    assert!(!loaded_matches(&render(&Inputs::default()), &loaded));
}

#[test]
fn resolvers_are_the_local_nameservers() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("resolv.conf");
    std::fs::write(
            &f,
            "# comment\nnameserver 127.0.0.53\nnameserver 192.0.2.99\nnameserver ::1\nnameserver fe80::1%eth0\noptions edns0\nnameserver 127.0.0.53\n",
        )
        .unwrap();
    let r = local_resolvers(&f);
    assert_eq!(
        r,
        vec![
            "127.0.0.53".parse::<IpAddr>().unwrap(),
            "::1".parse().unwrap()
        ]
    );
    assert!(local_resolvers(&dir.path().join("missing")).is_empty());
}
