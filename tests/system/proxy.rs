//! Public access through the real reverse proxies from Debian (issue #3):
//! Caddy with its internal CA, then nginx with a given certificate, in the
//! same container after the lifecycle trials (alice and bob-smith are
//! running). The container shares the host's network namespace, so the test
//! Caddy listens on 127.0.0.1 only and on ports of its own.
use std::time::{Duration, Instant};

use crate::container::describe;
use crate::tenants::{Fixture, R, TOKEN_FILE, assert_gone, ensure, stderr, stdout, wait_for};

const DOMAIN: &str = "test.internal";
const CADDY_HTTPS: u16 = 19443;
const CADDY_CA: &str = "/var/lib/caddy/.local/share/caddy/pki/authorities/local/root.crt";
const NGINX_CERT: &str = "/etc/ssl/certs/ocusers-test.pem";
const NGINX_KEY: &str = "/etc/ssl/private/ocusers-test.key";

/// The operator's own Caddyfile, before it imports ocusers' routes: loopback
/// only, ports of its own.
const CADDYFILE: &str = "{
\tadmin 127.0.0.1:19019
\thttp_port 19080
\thttps_port 19443
\tdefault_bind 127.0.0.1
}
";

const PROXY_CADDY: &str = "[proxy]
domain = \"test.internal\"
tls = \"internal\"
listen = [\"127.0.0.1\"]
";

/// `https://HOST:PORT/PATH` through the proxy, resolved to 127.0.0.1 and
/// trusting `ca`: (HTTP status, body). Status 0: no HTTP answer at all.
fn get(fx: &Fixture, host: &str, port: u16, path: &str, ca: &str) -> Result<(u16, String), String> {
    let out = fx.sh(&format!(
        "curl -s -o /tmp/body -w '%{{http_code}}' --max-time 15 --cacert {ca} \
         --resolve {host}:{port}:127.0.0.1 https://{host}:{port}{path} || true; echo; cat /tmp/body 2>/dev/null; rm -f /tmp/body"
    ))?;
    let (code, body) = out.split_once('\n').unwrap_or((&out, ""));
    Ok((code.trim().parse().unwrap_or(0), body.to_string()))
}

/// `/readyz` of tenant `name` through Caddy, by its public name.
fn readyz_via_caddy(fx: &Fixture, name: &str) -> Result<(u16, String), String> {
    get(
        fx,
        &format!("{name}.{DOMAIN}"),
        CADDY_HTTPS,
        "/readyz",
        CADDY_CA,
    )
}

fn caddy_pid(fx: &Fixture) -> Result<String, String> {
    Ok(fx.sh("systemctl show -P MainPID caddy")?.trim().to_string())
}

/// Caddy from Debian, set up by the operator with one `import` line; until
/// that line is there, `proxy sync` says exactly what to add and changes
/// nothing.
pub fn proxy_caddy_setup(fx: &Fixture) -> R {
    fx.sh(&format!(
        "printf '%s' '{CADDYFILE}' > /etc/caddy/Caddyfile && systemctl unmask caddy.service && \
         systemctl restart caddy.service && \
         echo '127.0.0.1 alice.{DOMAIN} bob-smith.{DOMAIN} dave.{DOMAIN} erin.{DOMAIN} unknown.{DOMAIN}' >> /etc/hosts && \
         printf '%s' '{PROXY_CADDY}' >> /etc/ocusers/ocusers.toml"
    ))?;
    let out = fx.ocusers("proxy sync");
    let err = stderr(&out);
    ensure(
        out.status.code() == Some(1)
            && err.lines().count() == 1
            && err.contains(
                "/etc/caddy/Caddyfile does not include ocusers' routes: add the line `import /etc/caddy/ocusers.caddy` to it",
            ),
        || describe(&out),
    )?;
    // Nothing half-made: no include, no drop-in, no route.
    fx.sh("test ! -e /etc/caddy/ocusers.caddy && \
         test ! -e /etc/systemd/system/openclaw-proxy@.socket.d/ocusers-proxy.conf && \
         test -z \"$(ls /var/lib/ocusers/proxy/hosts 2>/dev/null)\"")
        .map_err(|e| format!("a refused sync left something behind: {e}"))?;

    fx.sh("echo 'import /etc/caddy/ocusers.caddy' >> /etc/caddy/Caddyfile")?;
    let out = fx.ocusers_ok("proxy sync")?;
    ensure(out.contains("proxy in step: 2 tenant(s)"), || out.clone())?;
    let again = fx.ocusers_ok("proxy sync")?;
    ensure(again.contains("already in step"), || again.clone())?;
    for name in ["alice", "bob-smith"] {
        let sock = fx.sh(&format!(
            "systemctl is-active openclaw-proxy@{name}.socket; systemctl is-enabled openclaw-proxy@{name}.socket; \
             stat -c '%U %a' /run/ocusers/proxy/{name}/gateway.sock; readlink /var/lib/ocusers/proxy/hosts/{name}.{DOMAIN}"
        ))?;
        ensure(
            sock == format!("active\nenabled\ncaddy 600\n/run/ocusers/proxy/{name}\n"),
            || format!("{name}'s route: {sock}"),
        )?;
    }
    let shown = fx.json("proxy show --json")?;
    let routes = shown["routes"].as_array().cloned().unwrap_or_default();
    ensure(
        routes.len() == 2 && routes.iter().all(|r| r["linked"] == true),
        || format!("proxy show: {shown}"),
    )
}

/// Acceptance 1: each tenant's name reaches its own gateway through Caddy
/// with TLS from Caddy's internal CA; an unknown name reaches none; and no
/// other local user can use a tenant's proxy socket directly.
pub fn proxy_routes_by_name(fx: &Fixture) -> R {
    for name in ["alice", "bob-smith"] {
        let (code, body) = readyz_via_caddy(fx, name)?;
        ensure(code == 200, || format!("{name}: {code} {body}"))?;
    }
    let (code, body) = readyz_via_caddy(fx, "unknown")?;
    ensure(code == 404 && body.contains("no OpenClaw tenant"), || {
        format!("unknown name: {code} {body}")
    })?;
    let (code, _) = get(fx, "other.invalid", CADDY_HTTPS, "/readyz", CADDY_CA)?;
    ensure(code == 0, || {
        format!("a name outside {DOMAIN} got HTTP {code}")
    })?;
    // Loopback is not a boundary, sockets are: bob-smith cannot take the
    // proxy's way to alice.
    let out = fx.c.sh_as(
        "oc-bob-smith",
        "curl -s -o /dev/null -w '%{http_code}' --max-time 5 --unix-socket /run/ocusers/proxy/alice/gateway.sock http://x/readyz",
    );
    ensure(
        stdout(&out).trim() == "000" && !out.status.success(),
        || format!("oc-bob-smith used alice's proxy socket: {}", describe(&out)),
    )
}

/// Acceptance 2: the real OpenClaw CLI over wss through Caddy: alice's token
/// on alice's name is healthy; bob-smith's token on alice's name is refused.
pub fn proxy_cli_over_wss(fx: &Fixture) -> R {
    let url = |n: &str| format!("wss://{n}.{DOMAIN}:{CADDY_HTTPS}");
    let out = fx.gateway_health_url(&url("alice"), &fx.token("alice")?, Some(CADDY_CA))?;
    ensure(
        out.status.success() && stdout(&out).contains("\"ok\": true"),
        || format!("alice's token on alice's name: {}", describe(&out)),
    )?;
    let out = fx.gateway_health_url(&url("alice"), &fx.token("bob-smith")?, Some(CADDY_CA))?;
    ensure(!out.status.success(), || {
        format!(
            "bob-smith's token accepted on alice's name: {}",
            describe(&out)
        )
    })?;
    let out = fx.gateway_health_url(&url("bob-smith"), &fx.token("bob-smith")?, Some(CADDY_CA))?;
    ensure(out.status.success(), || {
        format!("bob-smith's token on bob-smith's name: {}", describe(&out))
    })
}

/// The established TCP connections to a gateway port, by local port.
fn connections_to(fx: &Fixture, port: u16) -> Result<Vec<String>, String> {
    let out = fx.sh(&format!(
        "ss -Htn state established '( dport = :{port} )' | awk '{{print $3}}' | sort"
    ))?;
    Ok(out.lines().map(str::to_string).collect())
}

/// Acceptance 3: a WebSocket through Caddy to alice (the real CLI following
/// alice's logs) stays up, on the same connection, while tenant dave is
/// added and removed; a reload of Caddy, by contrast, is seen to drop it.
pub fn proxy_add_remove_keeps_websockets(fx: &Fixture) -> R {
    let alice_port = fx.port("alice")?;
    fx.write_token_file(&fx.token("alice")?)?;
    fx.sh(&format!(
        "export NODE_EXTRA_CA_CERTS={CADDY_CA} HOME=$(mktemp -d) PATH=/var/lib/ocusers/runtimes/default/node_modules/.bin:$PATH; \
         setsid openclaw logs --follow --json --interval 1000 --url wss://alice.{DOMAIN}:{CADDY_HTTPS} \
           --token \"$(cat {TOKEN_FILE})\" >/tmp/follow.out 2>/tmp/follow.err </dev/null & echo $! > /tmp/follow.pid; \
         sleep 1; rm -f {TOKEN_FILE}"
    ))?;
    let result = keeps_websockets(fx, alice_port);
    let _ = fx.sh("kill $(cat /tmp/follow.pid) 2>/dev/null; true");
    result
}

fn keeps_websockets(fx: &Fixture, alice_port: u16) -> R {
    let follow_state =
        || fx.sh("kill -0 $(cat /tmp/follow.pid) && echo alive; cat /tmp/follow.err");
    wait_for(
        "the log follower's connection",
        Duration::from_secs(90),
        || {
            Ok(!connections_to(fx, alice_port)?.is_empty()
                && fx.sh("test -s /tmp/follow.out").is_ok())
        },
    )
    .map_err(|e| format!("{e}; follower: {:?}", follow_state()))?;
    let before = connections_to(fx, alice_port)?;
    let pid = caddy_pid(fx)?;

    let t = Instant::now();
    let out = fx.ocusers_ok("add dave")?;
    ensure(
        out.contains(&format!("public: https://dave.{DOMAIN}/")),
        || out.clone(),
    )?;
    let (code, body) = readyz_via_caddy(fx, "dave")?;
    ensure(code == 200, || format!("dave: {code} {body}"))?;
    fx.ocusers_ok("remove dave --purge")?;
    assert_gone(fx, "dave")?;
    fx.sh("test ! -e /var/lib/ocusers/proxy/hosts/dave.test.internal && ! systemctl is-enabled --quiet openclaw-proxy@dave.socket")
        .map_err(|e| format!("dave's route left behind: {e}"))?;
    let (code, _) = readyz_via_caddy(fx, "dave")?;
    ensure(code == 404, || format!("dave after remove: {code}"))?;
    let add_remove_secs = t.elapsed().as_secs_f64();

    let after = connections_to(fx, alice_port)?;
    let state = follow_state()?;
    ensure(
        before.iter().all(|c| after.contains(c))
            && state.starts_with("alive")
            && !state.to_lowercase().contains("reconnect"),
        || {
            format!(
                "alice's WebSocket did not survive add/remove of dave: connections {before:?} -> {after:?}; follower: {state}"
            )
        },
    )?;
    ensure(caddy_pid(fx)? == pid, || "caddy was restarted".into())?;
    fx.figure(
        "WebSocket through Caddy across add+remove of a tenant",
        format!("kept (same connection) over {add_remove_secs:.1} s"),
    );

    // The check can fail: a reload of Debian's Caddy (2.6) closes proxied
    // WebSockets, and the follower sees it.
    fx.sh("systemctl reload caddy")?;
    wait_for(
        "the reload to drop the WebSocket",
        Duration::from_secs(60),
        || {
            let now = connections_to(fx, alice_port)?;
            Ok(before.iter().any(|c| !now.contains(c)))
        },
    )
    .map_err(|e| format!("{e}: the check cannot see a dropped WebSocket"))
}

/// Acceptance 4: with the operator's Caddy configuration broken (a bad
/// file it imports), `add` fails with Caddy's own message, leaves nothing
/// behind and the running Caddy serving the tenants; a hand-broken ocusers
/// include is repaired by `proxy sync`.
pub fn proxy_invalid_config_refused(fx: &Fixture) -> R {
    let pid = caddy_pid(fx)?;
    fx.sh(
        "printf 'bogus_directive {\\n' > /etc/caddy/broken.caddy && \
         cp /etc/caddy/Caddyfile /tmp/Caddyfile.good && \
         echo 'import /etc/caddy/broken.caddy' >> /etc/caddy/Caddyfile",
    )?;
    let out = fx.ocusers("add erin");
    fx.sh("cp /tmp/Caddyfile.good /etc/caddy/Caddyfile && rm /etc/caddy/broken.caddy")?;
    let err = stderr(&out);
    ensure(
        out.status.code() == Some(1)
            && err.lines().count() == 1
            && err.contains("caddy rejects its configuration")
            && err.contains("broken.caddy"),
        || describe(&out),
    )?;
    assert_gone(fx, "erin")?;
    ensure(caddy_pid(fx)? == pid, || "caddy was restarted".into())?;
    let (code, body) = readyz_via_caddy(fx, "alice")?;
    ensure(code == 200, || {
        format!("alice after the refused add: {code} {body}")
    })?;

    fx.sh("echo 'garbage {' >> /etc/caddy/ocusers.caddy")?;
    let out = fx.ocusers_ok("proxy sync")?;
    ensure(out.contains("proxy in step"), || out.clone())?;
    let shown = fx.json("proxy show --json")?;
    let on_disk = fx.sh("cat /etc/caddy/ocusers.caddy")?;
    ensure(shown["config"].as_str() == Some(on_disk.as_str()), || {
        format!("include not repaired:\n{on_disk}")
    })?;
    let (code, body) = readyz_via_caddy(fx, "bob-smith")?;
    ensure(code == 200, || {
        format!("bob-smith after repair: {code} {body}")
    })
}

/// Acceptance 5 (the nginx half): the same routes through Debian's nginx
/// with a given wildcard certificate; then public access off again, which
/// takes every route away.
pub fn proxy_nginx(fx: &Fixture) -> R {
    fx.sh(&format!(
        "systemctl stop caddy && systemctl mask caddy >/dev/null 2>&1; \
         printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && \
         {{ DEBIAN_FRONTEND=noninteractive apt-get install -y nginx >/tmp/apt-nginx.log 2>&1 || {{ tail -20 /tmp/apt-nginx.log; exit 1; }}; }} && \
         rm /usr/sbin/policy-rc.d && \
         rm -f /etc/nginx/sites-enabled/default && \
         openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN={DOMAIN} \
           -addext 'subjectAltName=DNS:*.{DOMAIN}' -keyout {NGINX_KEY} -out {NGINX_CERT} 2>/dev/null && \
         sed -i '/^\\[proxy\\]/,$d' /etc/ocusers/ocusers.toml && \
         printf '[proxy]\\ndomain = \"{DOMAIN}\"\\nkind = \"nginx\"\\ntls = \"files\"\\ncert_file = \"{NGINX_CERT}\"\\nkey_file = \"{NGINX_KEY}\"\\nlisten = [\"127.0.0.1\"]\\n' >> /etc/ocusers/ocusers.toml && \
         systemctl restart nginx"
    ))?;
    let out = fx.ocusers_ok("proxy sync")?;
    ensure(out.contains("through nginx"), || out.clone())?;
    let owner = fx.sh("stat -c %U /run/ocusers/proxy/alice/gateway.sock")?;
    ensure(owner.trim() == "www-data", || {
        format!("socket owner {owner}")
    })?;
    let (code, body) = get(fx, &format!("alice.{DOMAIN}"), 443, "/readyz", NGINX_CERT)?;
    ensure(code == 200, || {
        format!("alice through nginx: {code} {body}")
    })?;
    let (code, _) = get(fx, &format!("unknown.{DOMAIN}"), 443, "/readyz", NGINX_CERT)?;
    ensure(code == 404, || {
        format!("unknown name through nginx: {code}")
    })?;
    let url = format!("wss://alice.{DOMAIN}");
    let out = fx.gateway_health_url(&url, &fx.token("alice")?, Some(NGINX_CERT))?;
    ensure(out.status.success(), || {
        format!("CLI through nginx with alice's token: {}", describe(&out))
    })?;
    let out = fx.gateway_health_url(&url, &fx.token("bob-smith")?, Some(NGINX_CERT))?;
    ensure(!out.status.success(), || {
        format!(
            "bob-smith's token accepted on alice's name through nginx: {}",
            describe(&out)
        )
    })?;

    // Public access off: every route goes, the gateways stay.
    fx.sh("sed -i '/^\\[proxy\\]/,$d' /etc/ocusers/ocusers.toml")?;
    let out = fx.ocusers_ok("proxy sync")?;
    ensure(out.contains("public access is off"), || out.clone())?;
    fx.sh(
        "test -z \"$(ls /var/lib/ocusers/proxy/hosts)\" && ! systemctl is-active --quiet openclaw-proxy@alice.socket \
         && systemctl is-active --quiet openclaw@alice",
    )
    .map_err(|e| format!("routes left after public access was turned off: {e}"))?;
    fx.sh("systemctl stop nginx && systemctl mask nginx >/dev/null 2>&1; true")?;
    Ok(())
}
