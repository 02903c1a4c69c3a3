//! `ocusers invite` through the real Caddy (issue 16), after the proxy
//! trials set Caddy up (alice and bob-smith are running): the link's page
//! changes nothing, one POST hands out a real bootstrap token of alice's
//! gateway, and every other use (again, expired, revoked, on bob-smith's
//! address) is refused; the gateway token shows up nowhere.
use crate::proxy::CLIENT_ADDR;
use crate::support::assert::{R, ensure};
use crate::support::process::{describe, stdout};
use crate::support::trials::Figures as _;
use crate::tenants::Fixture;

const DOMAIN: &str = "test.internal";
const CADDY_HTTPS: u16 = 19443;
const CADDY_CA: &str = "/var/lib/caddy/.local/share/caddy/pki/authorities/local/root.crt";

/// One answer through Caddy: (status, headers, body).
pub(crate) struct Answer {
    pub(crate) code: u16,
    pub(crate) headers: String,
    pub(crate) body: String,
}

impl Answer {
    pub(crate) fn text(&self) -> String {
        format!("{} {}\n{}", self.code, self.headers, self.body)
    }
}

/// `METHOD URL` through Caddy as a client at [`CLIENT_ADDR`] would send it.
pub(crate) fn request(fx: &Fixture, method: &str, url: &str) -> Result<Answer, String> {
    let host = url
        .trim_start_matches("https://")
        .split([':', '/'])
        .next()
        .unwrap_or_default()
        .to_string();
    let how = match method {
        "HEAD" => "-I".to_string(),
        "POST" => "-X POST -d ''".to_string(),
        m => format!("-X {m}"),
    };
    let out = fx.sh(&format!(
        "curl -s {how} -D /tmp/inv.h -o /tmp/inv.b -w '%{{http_code}}' --max-time 90 --cacert {CADDY_CA} \
         --resolve {host}:{CADDY_HTTPS}:{CLIENT_ADDR} '{url}' || true; echo; cat /tmp/inv.h; echo '@@@'; \
         cat /tmp/inv.b 2>/dev/null; rm -f /tmp/inv.h /tmp/inv.b"
    ))?;
    let (code, rest) = out.split_once('\n').unwrap_or((&out, ""));
    let (headers, body) = rest.split_once("@@@\n").unwrap_or((rest, ""));
    Ok(Answer {
        code: code.trim().parse().unwrap_or(0),
        headers: headers.to_string(),
        body: body.to_string(),
    })
}

fn location(a: &Answer) -> Option<String> {
    a.headers.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("location")
            .then(|| v.trim().to_string())
    })
}

/// `ocusers invite NAME --json ...`: (id, url).
fn invite(fx: &Fixture, name: &str, extra: &str) -> Result<(String, String), String> {
    let v = fx.json(&format!("invite {name} --json {extra}"))?;
    let (Some(id), Some(url), Some(_)) =
        (v["id"].as_str(), v["url"].as_str(), v["expires"].as_str())
    else {
        return Err(format!("invite --json: {v}"));
    };
    Ok((id.to_string(), url.to_string()))
}

pub fn invite_redeem_once(fx: &Fixture) -> R {
    let token = fx.token("alice")?;
    let mut seen = Vec::new();
    let (id, url) = invite(fx, "alice", "")?;
    let prefix = format!("https://alice.{DOMAIN}:{CADDY_HTTPS}/ocusers-invite/{id}/");
    ensure(url.starts_with(&prefix), || format!("invite url {url}"))?;
    let secret = url.rsplit('/').next().unwrap_or_default().to_string();
    // Only the hash is stored, root-only.
    let store = fx.sh(&format!(
        "stat -c '%U %a' /var/lib/ocusers/invites /var/lib/ocusers/invites/open/{id}.json; \
         grep -rlF '{secret}' /var/lib/ocusers/invites || true; systemctl is-active ocusers-invite.socket"
    ))?;
    ensure(store == "root 700\nroot 600\nactive\n", || {
        format!("invite store: {store}")
    })?;
    let listed = fx.json("invite list alice --json")?;
    ensure(
        listed.to_string().contains(&id) && !listed.to_string().contains(&secret),
        || format!("invite list: {listed}"),
    )?;

    // Opening the link (as a link preview would) changes nothing.
    for method in ["GET", "HEAD", "GET"] {
        let a = request(fx, method, &url)?;
        ensure(a.code == 200, || {
            format!("{method} of the link: {}", a.text())
        })?;
        if method == "GET" {
            ensure(a.body.contains("<form method=\"post\">"), || a.text())?;
        }
        seen.push(a.text());
    }
    ensure(
        fx.json("invite list alice --json")?
            .to_string()
            .contains(&id),
        || "GET used the invite up".into(),
    )?;

    // Alice's invite on bob-smith's address: refused, and still usable.
    let on_bob = url.replacen(
        &format!("alice.{DOMAIN}"),
        &format!("bob-smith.{DOMAIN}"),
        1,
    );
    let a = request(fx, "POST", &on_bob)?;
    ensure(a.code == 403 && location(&a).is_none(), || {
        format!("alice's invite on bob-smith's host: {}", a.text())
    })?;
    seen.push(a.text());

    // Pressing the button: a bootstrap token, once.
    let t = std::time::Instant::now();
    let a = request(fx, "POST", &url)?;
    fx.figure(
        "invite POST to bootstrap token (as the tenant, through Caddy)",
        format!("{:.1} s", t.elapsed().as_secs_f64()),
    );
    seen.push(a.text());
    let loc = location(&a).unwrap_or_default();
    let boot = loc
        .strip_prefix("/#bootstrapToken=")
        .and_then(|r| r.strip_suffix("&bootstrapProfile=owner"))
        .unwrap_or_default()
        .to_string();
    ensure(a.code == 303 && boot.len() >= 16 && boot != token, || {
        format!("POST of the link: {}", a.text())
    })?;
    // It is a token alice's gateway issued: its pairing state holds it.
    let held = fx.ocusers(&format!(
        "exec alice -- sh -c 'grep -rlaF -- {boot} /var/lib/openclaw/alice | head -1'"
    ));
    ensure(!stdout(&held).trim().is_empty(), || {
        format!(
            "alice's state does not hold the bootstrap token: {}",
            describe(&held)
        )
    })?;
    let again = request(fx, "POST", &url)?;
    ensure(
        again.code == 410 && again.body.contains("already been used") && location(&again).is_none(),
        || format!("second POST: {}", again.text()),
    )?;
    seen.push(again.text());
    ensure(
        !fx.json("invite list alice --json")?
            .to_string()
            .contains(&id),
        || "a used invite is still listed".into(),
    )?;

    // Expired.
    let (_, short) = invite(fx, "alice", "--expires 2s")?;
    std::thread::sleep(std::time::Duration::from_secs(3));
    for method in ["GET", "POST"] {
        let a = request(fx, method, &short)?;
        ensure(a.code == 410 && a.body.contains("expired"), || {
            format!("{method} of an expired invite: {}", a.text())
        })?;
        seen.push(a.text());
    }

    // Revoked.
    let (rid, revoked) = invite(fx, "alice", "")?;
    fx.ocusers_ok(&format!("invite revoke alice {rid}"))?;
    let a = request(fx, "POST", &revoked)?;
    ensure(a.code == 404 && location(&a).is_none(), || {
        format!("POST of a revoked invite: {}", a.text())
    })?;
    seen.push(a.text());
    let out = fx.ocusers(&format!("invite revoke alice {rid}"));
    ensure(!out.status.success(), || {
        format!("revoking twice: {}", describe(&out))
    })?;

    // A guessed secret for a real id.
    let guessed = format!("{prefix}{}", "0".repeat(64));
    let a = request(fx, "POST", &guessed)?;
    ensure(a.code == 404, || format!("guessed secret: {}", a.text()))?;

    // The redemption is in the history.
    let history = fx.ocusers_ok("history alice --json")?;
    ensure(
        history.contains("invite-redeem") && history.contains(&id),
        || format!("history: {history}"),
    )?;
    seen.push(history);

    // The phone apps' setup code, from alice's own CLI in her sandbox.
    let app = fx.json("invite alice --app --json")?;
    ensure(
        app["setupCode"].as_str().is_some_and(|c| c.len() >= 16)
            && app["gatewayUrl"] == format!("wss://alice.{DOMAIN}:{CADDY_HTTPS}")
            && app.as_object().is_some_and(|o| o.len() == 2),
        || format!("invite --app --json: {app}"),
    )?;
    let code = app["setupCode"].as_str().unwrap_or_default();
    let decoded = fx.sh(&format!(
        "printf '%s' '{code}' | tr '_-' '/+' | base64 -d 2>/dev/null; true"
    ))?;
    seen.push(app.to_string());
    seen.push(decoded);

    // Devices, over alice's own CLI.
    let devices = fx.json("devices alice list --json")?;
    seen.push(devices.to_string());

    hostile_tenant_on_the_endpoint(fx)?;

    seen.push(fx.sh("journalctl -o verbose --no-pager")?);
    for (i, text) in seen.iter().enumerate() {
        ensure(!text.contains(&token), || {
            format!("alice's gateway token leaked into #{i}")
        })?;
    }
    Ok(())
}

/// Alice, as the attacker inside her sandbox, talks to the endpoint
/// directly (127.0.0.1:9124; in this tier nft cannot load, so loopback is
/// open to her): bob-smith's address with her own invite and with a guessed
/// secret for bob-smith's, oversized headers, garbage, a request that never
/// ends. The sentinel is bob-smith's open invite: its file (hash, mode,
/// owner) is unchanged and its link still opens.
fn hostile_tenant_on_the_endpoint(fx: &Fixture) -> R {
    let (bid, burl) = invite(fx, "bob-smith", "")?;
    let (_, aurl) = invite(fx, "alice", "")?;
    let sentinel = format!("/var/lib/ocusers/invites/open/{bid}.json");
    let before = fx.sh(&format!("sha256sum {sentinel}; stat -c '%U %a' {sentinel}"))?;
    let path_of = |u: &str| {
        u.split_once(&format!(":{CADDY_HTTPS}"))
            .map(|(_, p)| p.to_string())
    };
    let apath = path_of(&aurl).unwrap_or_default();
    let bguess = format!("/ocusers-invite/{bid}/{}", "1".repeat(64));
    let bob_host = format!("bob-smith.{DOMAIN}");
    let curl = |args: &str| {
        fx.ocusers(&format!(
            "exec alice -- sh -c \"curl -s -o /dev/null -w '%{{http_code}}' --max-time 20 {args}\""
        ))
    };
    // Where the tenant's sandbox or firewall closes loopback to her, there
    // is nothing more to attack this way; the sentinel is checked all the same.
    let probe = curl(&format!("-H 'Host: {bob_host}' http://127.0.0.1:9124/"));
    let reachable = stdout(&probe).trim() != "000";
    fx.figure(
        "invite endpoint reachable from alice's sandbox",
        reachable.to_string(),
    );
    for (what, args, want) in if reachable {
        ATTACKS.to_vec()
    } else {
        Vec::new()
    }
    .into_iter()
    .map(|(w, a, c)| {
        (
            w,
            a.replace("{bob_host}", &bob_host)
                .replace("{apath}", &apath)
                .replace("{bguess}", &bguess),
            c,
        )
    }) {
        let out = curl(&args);
        ensure(stdout(&out).trim() == want, || {
            format!("alice sending {what}: want {want}, got {}", describe(&out))
        })?;
    }
    if !reachable {
        return sentinel_unchanged(fx, &sentinel, &before, &burl, &bid);
    }
    let out = curl(&format!(
        "-H 'X-Big: {}' -H 'Host: {bob_host}' http://127.0.0.1:9124{bguess}",
        "a".repeat(20_000)
    ));
    ensure(stdout(&out).trim() == "431", || {
        format!("alice sending oversized headers: {}", describe(&out))
    })?;
    // Garbage, and a request that never ends: the endpoint answers and
    // closes within its bound.
    let t = std::time::Instant::now();
    let out = fx.ocusers(
        "exec alice -- bash -c 'exec 3<>/dev/tcp/127.0.0.1/9124; printf \"GET / HTTP/1.1\\r\\n\" >&3; timeout 30 head -c 12 <&3'",
    );
    let took = t.elapsed();
    ensure(
        stdout(&out).starts_with("HTTP/1.1 408") && took.as_secs() < 30,
        || {
            format!(
                "a request that never ends: after {took:?}: {}",
                describe(&out)
            )
        },
    )?;
    fx.figure(
        "invite endpoint: slow request closed after",
        format!("{took:?}"),
    );
    let out = fx.ocusers(
        "exec alice -- bash -c 'exec 3<>/dev/tcp/127.0.0.1/9124; printf \"\\0\\1garbage\\n\\n\" >&3; timeout 15 head -c 12 <&3'",
    );
    ensure(stdout(&out).starts_with("HTTP/1.1 400"), || {
        format!("garbage: {}", describe(&out))
    })?;
    sentinel_unchanged(fx, &sentinel, &before, &burl, &bid)
}

/// Attacks on the endpoint: what, curl arguments, the status wanted.
const ATTACKS: &[(&str, &str, &str)] = &[
    (
        "her invite on bob-smith's host",
        "-X POST -d '' -H 'Host: {bob_host}' http://127.0.0.1:9124{apath}",
        "403",
    ),
    (
        "a guessed secret for bob-smith's invite",
        "-X POST -d '' -H 'Host: {bob_host}' http://127.0.0.1:9124{bguess}",
        "404",
    ),
    (
        "a host that is no tenant's",
        "-X POST -d '' -H 'Host: ../../etc' http://127.0.0.1:9124{bguess}",
        "404",
    ),
];

fn sentinel_unchanged(fx: &Fixture, sentinel: &str, before: &str, burl: &str, bid: &str) -> R {
    let after = fx.sh(&format!("sha256sum {sentinel}; stat -c '%U %a' {sentinel}"))?;
    ensure(before == after, || {
        format!("bob-smith's invite changed: {before} -> {after}")
    })?;
    let a = request(fx, "GET", burl)?;
    ensure(a.code == 200, || {
        format!("bob-smith's invite after alice's attempts: {}", a.text())
    })?;
    fx.ocusers_ok(&format!("invite revoke bob-smith {bid}"))?;
    Ok(())
}
