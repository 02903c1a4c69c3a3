use super::*;

fn setup() -> (tempfile::TempDir, Paths, Store) {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::new(dir.path());
    let hosts = paths.proxy_hosts_dir();
    std::fs::create_dir_all(&hosts).unwrap();
    for n in ["alice", "bob"] {
        std::os::unix::fs::symlink(
            format!("/run/ocusers/proxy/{n}"),
            hosts.join(format!("{n}.example.com")),
        )
        .unwrap();
    }
    // A link elsewhere is not a tenant's route.
    std::os::unix::fs::symlink("/etc", hosts.join("etc.example.com")).unwrap();
    let store = Store::new(dir.path().join("invites"));
    (dir, paths, store)
}

fn req(s: &str) -> Result<Request, u16> {
    parse(s.as_bytes())
}

#[test]
fn parses_only_well_formed_requests() {
    let r =
        req("GET /ocusers-invite/a/b HTTP/1.1\r\nHost: Alice.Example.com:19443\r\n\r\n").unwrap();
    assert_eq!(r.method, Method::Get);
    assert_eq!(r.host, "alice.example.com");
    let r = req("POST /x HTTP/1.1\r\nHost: a.b\r\nContent-Length: 3\r\n\r\nabc").unwrap();
    assert_eq!(r.method, Method::Post);
    assert_eq!(req(""), Err(400));
    assert_eq!(req("garbage\r\n\r\n"), Err(400));
    assert_eq!(req("\0\u{1}\u{2}\n\n"), Err(400));
    assert_eq!(req("GET / HTTP/1.1\r\n\r\n"), Err(400), "no Host");
    assert_eq!(
        req("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
        Err(400)
    );
    assert_eq!(req("DELETE / HTTP/1.1\r\nHost: a\r\n\r\n"), Err(405));
    assert_eq!(req("GET / SPDY/3\r\nHost: a\r\n\r\n"), Err(400));
    assert_eq!(
        req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999\r\n\r\n"),
        Err(413)
    );
    assert_eq!(
        req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n"),
        Err(400)
    );
    assert_eq!(
        req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"),
        Err(411)
    );
    // A body shorter than announced: the client went away.
    assert_eq!(
        req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nab"),
        Err(400)
    );
    // Headers without an end within the bound.
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    assert_eq!(req(&big), Err(431));
    let many = format!(
        "GET / HTTP/1.1\r\nHost: a\r\n{}\r\n",
        "X: y\r\n".repeat(5000)
    );
    assert_eq!(req(&many), Err(431));
    let line = format!("GET /{} HTTP/1.1\r\n", "a".repeat(20_000));
    assert_eq!(req(&line), Err(431));
    // Headers cut off.
    assert_eq!(req("GET / HTTP/1.1\r\nHost: a\r\n"), Err(400));
}

/// A reader that never delivers: the time bound answers 408.
struct Slow;
impl Read for Slow {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        std::thread::sleep(Duration::from_secs(3600));
        Ok(0)
    }
}

#[test]
fn slow_clients_time_out() {
    let t = std::time::Instant::now();
    assert_eq!(read_request(Slow), Err(408));
    assert!(t.elapsed() < READ_TIMEOUT + Duration::from_secs(2));
}

#[test]
fn hosts_are_the_hosts_directorys() {
    let (_d, p, _s) = setup();
    assert_eq!(
        tenant_of_host(&p, "alice.example.com").unwrap().as_str(),
        "alice"
    );
    assert!(tenant_of_host(&p, "etc.example.com").is_none());
    assert!(tenant_of_host(&p, "carol.example.com").is_none());
    assert!(tenant_of_host(&p, "..").is_none());
    assert!(tenant_of_host(&p, "../../etc").is_none());
}

fn ok_mint(_: &TenantName) -> anyhow::Result<Bootstrap> {
    Ok(Bootstrap {
        token: "boot-strap_Token1234567890".into(),
        profile: "owner".into(),
    })
}

#[test]
fn get_changes_nothing_post_redeems_once() {
    let (_d, p, s) = setup();
    let (inv, secret) = s.create("alice", 60).unwrap();
    let path = format!("{PATH_PREFIX}{}/{secret}", inv.id);
    let r = |m: Method, host: &str, path: &str| Request {
        method: m,
        path: path.to_string(),
        host: host.into(),
    };
    let now = inv.created;
    for _ in 0..3 {
        let (resp, out) = respond(
            &p,
            &s,
            &r(Method::Get, "alice.example.com", &path),
            now,
            &ok_mint,
        );
        assert_eq!((resp.status, out), (200, Outcome::Nothing));
        assert!(
            resp.body.contains("<form method=\"post\">"),
            "{}",
            resp.body
        );
    }
    let (resp, _) = respond(
        &p,
        &s,
        &r(Method::Head, "alice.example.com", &path),
        now,
        &ok_mint,
    );
    assert_eq!(resp.status, 200);
    assert!(
        !String::from_utf8(render(&resp, true))
            .unwrap()
            .contains("<form")
    );
    // Alice's invite on bob's address.
    let (resp, out) = respond(
        &p,
        &s,
        &r(Method::Post, "bob.example.com", &path),
        now,
        &ok_mint,
    );
    assert_eq!((resp.status, out), (403, Outcome::Nothing));
    // Unknown host, bad paths.
    assert_eq!(
        respond(
            &p,
            &s,
            &r(Method::Post, "carol.example.com", &path),
            now,
            &ok_mint
        )
        .0
        .status,
        404
    );
    for bad in [
        format!("{path}?x=1"),
        format!("{path}/"),
        format!("{PATH_PREFIX}{}/{}", inv.id, "0".repeat(64)),
        format!("{PATH_PREFIX}../../{secret}"),
    ] {
        assert_eq!(
            respond(
                &p,
                &s,
                &r(Method::Post, "alice.example.com", &bad),
                now,
                &ok_mint
            )
            .0
            .status,
            404,
            "{bad}"
        );
    }
    // A failed mint gives the invite back.
    let fail = |_: &TenantName| -> anyhow::Result<Bootstrap> { anyhow::bail!("down") };
    let (resp, _) = respond(
        &p,
        &s,
        &r(Method::Post, "alice.example.com", &path),
        now,
        &fail,
    );
    assert_eq!(resp.status, 503);
    let (resp, out) = respond(
        &p,
        &s,
        &r(Method::Post, "alice.example.com", &path),
        now,
        &ok_mint,
    );
    assert_eq!(resp.status, 303);
    assert_eq!(
        resp.location.as_deref(),
        Some("/#bootstrapToken=boot-strap_Token1234567890&bootstrapProfile=owner")
    );
    assert_eq!(
        out,
        Outcome::Redeemed {
            tenant: "alice".into(),
            id: inv.id.clone()
        }
    );
    let (resp, _) = respond(
        &p,
        &s,
        &r(Method::Post, "alice.example.com", &path),
        now,
        &ok_mint,
    );
    assert_eq!(resp.status, 410);
    assert!(resp.body.contains("already been used"), "{}", resp.body);
    let (resp, _) = respond(
        &p,
        &s,
        &r(Method::Get, "alice.example.com", &path),
        now,
        &ok_mint,
    );
    assert_eq!(resp.status, 410);
}
