//! Public access through the real reverse proxies from Debian (issue #3):
//! Caddy with its internal CA, then nginx with a given certificate, in the
//! same container after the lifecycle trials (alice and bob-smith are
//! running). The container shares the host's network namespace, so the test
//! Caddy listens on ports of its own, on 127.0.0.1 and on [`CLIENT_ADDR`].
//!
//! A gateway refuses a proxied request whose client is loopback ("proxy
//! client attribution is required"): behind a proxy it wants a real client
//! address. So the test's clients come from [`CLIENT_ADDR`], a documentation
//! address (TEST-NET-1, never routed) that the tier adds to the loopback
//! interface and removes again: local traffic that never leaves the host.
use std::time::{Duration, Instant};

use crate::support::assert::{R, ensure, wait_for};
use crate::support::process::{describe, stderr, stdout};
use crate::support::trials::Figures as _;
use crate::tenants::{Fixture, TOKEN_FILE, assert_gone};

pub(crate) const DOMAIN: &str = "test.internal";
/// The public side of the test host: clients connect to it and from it.
pub const CLIENT_ADDR: &str = "192.0.2.10";
pub const CADDY_HTTPS: u16 = 19443;
pub const CADDY_CA: &str = "/var/lib/caddy/.local/share/caddy/pki/authorities/local/root.crt";
const NGINX_CERT: &str = "/etc/ssl/certs/ocusers-test.pem";
const NGINX_KEY: &str = "/etc/ssl/private/ocusers-test.key";

/// The operator's own Caddyfile, before it imports ocusers' routes: loopback
/// only, ports of its own, and the admin API on TCP (Caddy's default kind of
/// endpoint), which `doctor` must refuse.
const CADDYFILE: &str = "{
\tadmin 127.0.0.1:19019
\thttp_port 19080
\thttps_port 19443
\tdefault_bind 127.0.0.1
}
";

/// README's line for the admin API, and the drop-in that gives Caddy its
/// runtime directory for the socket.
const ADMIN_LINE: &str = "admin unix//run/caddy/admin.sock";
const CADDY_DROPIN: &str = "/etc/systemd/system/caddy.service.d/ocusers-admin.conf";
/// Where `ocusers-ask.socket` answers Caddy's questions.
const ASK_URL: &str = "http://127.0.0.1:9123/check";
const CADDY_DROPIN_TEXT: &str = "[Service]\nRuntimeDirectory=caddy\nRuntimeDirectoryMode=0750\n";

const PROXY_CADDY: &str = "[proxy]
domain = \"test.internal\"
tls = \"internal\"
listen = [\"127.0.0.1\", \"192.0.2.10\"]
public_port = 19443
";

/// Add (or, with `up` false, remove) [`CLIENT_ADDR`] on the loopback
/// interface of the host's network namespace, which the container shares.
fn client_address(up: bool) -> R {
    let run = |verb: &str| {
        std::process::Command::new("ip")
            .args(["addr", verb, &format!("{CLIENT_ADDR}/32"), "dev", "lo"])
            .output()
            .map_err(|e| format!("ip addr {verb}: {e} (install iproute2)"))
    };
    let _ = run("del");
    if up {
        let out = run("add")?;
        ensure(out.status.success(), || {
            format!("ip addr add {CLIENT_ADDR}/32 dev lo: {}", describe(&out))
        })?;
    }
    Ok(())
}

/// `https://HOST:PORT/PATH` through the proxy, resolved to [`CLIENT_ADDR`]
/// and trusting `ca`: (HTTP status, body). Status 0: no HTTP answer at all.
fn get(fx: &Fixture, host: &str, port: u16, path: &str, ca: &str) -> Result<(u16, String), String> {
    let out = fx.sh(&format!(
        "curl -s -o /tmp/body -w '%{{http_code}}' --max-time 15 --cacert {ca} \
         --resolve {host}:{port}:{CLIENT_ADDR} https://{host}:{port}{path} || true; echo; cat /tmp/body 2>/dev/null; rm -f /tmp/body"
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
    client_address(true)?;
    fx.sh(&format!(
        "printf '%s' '{CADDYFILE}' > /etc/caddy/Caddyfile && systemctl unmask caddy.service && \
         systemctl restart caddy.service && \
         echo '{CLIENT_ADDR} alice.{DOMAIN} bob-smith.{DOMAIN} dave.{DOMAIN} erin.{DOMAIN} unknown.{DOMAIN}' >> /etc/hosts && \
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
    )?;
    caddy_admin_on_socket(fx)
}

/// The `proxy*` checks of `ocusers doctor --json` that are not ok.
fn proxy_doctor_failures(fx: &Fixture) -> Result<Vec<serde_json::Value>, String> {
    let out = fx.ocusers("doctor --json");
    let v: serde_json::Value = serde_json::from_str(&stdout(&out))
        .map_err(|e| format!("doctor --json: {e}: {}", describe(&out)))?;
    Ok(v["checks"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| {
            c["check"].as_str().is_some_and(|n| n.starts_with("proxy")) && c["status"] != "ok"
        })
        .collect())
}

/// Caddy's admin API on TCP: any local process (a tenant's agent) can
/// replace Caddy's configuration. `doctor` fails on it and names README's
/// line; after that line (and the runtime directory) it passes, the TCP
/// endpoint is gone, and ocusers' reloads still work over the socket.
fn caddy_admin_on_socket(fx: &Fixture) -> R {
    let answered = fx.sh("curl -s -o /dev/null -w '%{http_code}' --max-time 5 http://127.0.0.1:19019/config/ || true")?;
    ensure(answered.trim() == "200", || {
        format!("the test's TCP admin endpoint does not answer: {answered}")
    })?;
    let bad = proxy_doctor_failures(fx)?;
    ensure(
        bad.iter().any(|c| {
            c["check"] == "proxy_admin"
                && c["status"] == "fail"
                && c["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("127.0.0.1:19019"))
                && c["fix"].as_str().is_some_and(|f| f.contains(ADMIN_LINE))
        }),
        || format!("doctor does not fail on Caddy's TCP admin API: {bad:?}"),
    )?;
    let audit = fx.ocusers("audit --json --no-openclaw");
    ensure(
        stdout(&audit).contains("proxy admin: Caddy's admin API listens on TCP 127.0.0.1:19019"),
        || {
            format!(
                "audit does not fail on Caddy's TCP admin API: {}",
                describe(&audit)
            )
        },
    )?;
    // README's setup.
    fx.sh(&format!(
        "sed -i 's|^\\tadmin .*|\\t{ADMIN_LINE}|' /etc/caddy/Caddyfile && grep -q '{ADMIN_LINE}' /etc/caddy/Caddyfile && \
         mkdir -p $(dirname {CADDY_DROPIN}) && printf '{CADDY_DROPIN_TEXT}' > {CADDY_DROPIN} && \
         systemctl daemon-reload && systemctl restart caddy"
    ))?;
    let bad = proxy_doctor_failures(fx)?;
    ensure(bad.is_empty(), || {
        format!("doctor still fails after README's admin line: {bad:?}")
    })?;
    let sock = fx.sh(
        "stat -c '%U %a' /run/caddy /run/caddy/admin.sock; ss -Hltn | grep -c ':19019 ' || true",
    )?;
    ensure(
        sock.starts_with("caddy 750\ncaddy ") && sock.ends_with("0\n"),
        || format!("Caddy's admin socket: {sock}"),
    )?;
    // A tenant cannot reach the socket.
    let out = fx.ocusers(
        "exec alice -- curl -s --max-time 5 --unix-socket /run/caddy/admin.sock http://localhost/config/",
    );
    ensure(!out.status.success() && stdout(&out).is_empty(), || {
        format!("alice reached Caddy's admin socket: {}", describe(&out))
    })?;
    // The reload ocusers uses works over the socket, and keeps the process.
    let pid = caddy_pid(fx)?;
    fx.sh("systemctl reload caddy")?;
    ensure(caddy_pid(fx)? == pid, || {
        "caddy was restarted by its reload".into()
    })?;
    let (code, body) = readyz_via_caddy(fx, "alice")?;
    ensure(code == 200, || {
        format!("alice after the reload: {code} {body}")
    })
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

/// The established TCP connections to a gateway port, by local address
/// (systemd-socket-proxyd's side).
fn connections_to(fx: &Fixture, port: u16) -> Result<Vec<String>, String> {
    let out = fx.sh(&format!(
        "ss -Htn state established '( dport = :{port} )' | awk '{{print $3}}' | sort"
    ))?;
    Ok(out.lines().map(str::to_string).collect())
}

/// Shell: the pids of the follower and all its descendants (the OpenClaw CLI
/// respawns itself as a detached child, in a session of its own), one a line.
const FOLLOWER_PIDS: &str = "ps -eo pid=,ppid= | awk -v root=$(cat /tmp/follow.pid 2>/dev/null || echo 0) '{p[$1]=$2} END {for (x in p) {y=x; while ((y in p) && y!=root && y>1) y=p[y]; if (y==root) print x}}'";

/// Shell: stop the follower and everything it started.
fn stop_follower(fx: &Fixture) {
    let _ = fx.sh(&format!("kill $({FOLLOWER_PIDS}) 2>/dev/null; true"));
}

/// Whether the OpenClaw CLI of the follower still runs: the follower or a
/// descendant whose command line names openclaw and is not a shell's (the
/// follower's shell names it too, as would the caller of a `pgrep -f`).
fn follower_alive(fx: &Fixture) -> bool {
    fx.sh(&format!(
        "for p in $({FOLLOWER_PIDS}); do \
           ps -o args= -p \"$p\" | grep -v '^sh ' | grep -q openclaw && exit 0; \
         done; exit 1"
    ))
    .is_ok()
}

/// The follower's answer to its ACP request `id`, from its stdout (one
/// JSON-RPC message a line), once there is one.
fn acp_response(fx: &Fixture, id: u64) -> Result<Option<serde_json::Value>, String> {
    let out = fx.sh("cat /tmp/follow.out")?;
    Ok(out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|m| m["id"].as_u64() == Some(id) && m.get("method").is_none()))
}

/// The follower's own TCP connections to Caddy, by local address: the
/// client side of its WebSocket, which any drop by Caddy closes. The CLI
/// respawns itself as a detached child (a session of its own) that holds the
/// socket, so this takes every descendant of the follower's process.
fn follower_connections(fx: &Fixture) -> Result<Vec<String>, String> {
    let out = fx.sh(&format!(
        "pids=$({FOLLOWER_PIDS} | sed 's/.*/pid=&,/' | paste -sd'|'); \
         [ -n \"$pids\" ] && ss -Htnp state established '( dport = :{CADDY_HTTPS} )' | grep -E \"$pids\" | awk '{{print $3}}' | sort; true"
    ))?;
    Ok(out.lines().map(str::to_string).collect())
}

/// Acceptance 3: a WebSocket through Caddy to alice (the real CLI's ACP
/// bridge, a persistent gateway client) stays up, on the same connection, while tenant dave is
/// added and removed; a restart of Caddy, by contrast, is seen to drop it.
pub fn proxy_add_remove_keeps_websockets(fx: &Fixture) -> R {
    let alice_port = fx.port("alice")?;
    let token = fx.token("alice")?;
    // A remote client is a new device: its first connect asks for pairing,
    // which the operator approves on the host (a loopback connection with
    // the gateway token), as with any remote OpenClaw client. The follower
    // exits on that refusal; it is started again after each approval (a
    // second request, e.g. for more scopes, is approved the same way).
    let mut approvals = Vec::new();
    loop {
        start_follower(fx, &token)?;
        match follower_outcome(fx)? {
            Outcome::Connected => break,
            Outcome::Pairing(id) if approvals.len() < 3 => {
                let id = if id.is_empty() {
                    pending_request(fx, alice_port, &token)?
                } else {
                    id
                };
                let out = approve_pairing(fx, &id, alice_port, &token)
                    .map_err(|e| format!("approving the follower's pairing request {id}: {e}"))?;
                approvals.push(format!("{id}: {}", out.trim()));
            }
            Outcome::Pairing(id) => {
                let devices = host_cli(fx, alice_port, &token, "devices list --json");
                return Err(format!(
                    "the follower still asks for pairing ({id}) after approvals {approvals:?}; devices: {devices:?}"
                ));
            }
        }
    }
    let result = keeps_websockets(fx, alice_port);
    stop_follower(fx);
    result
}

pub(crate) const RUNTIME_BIN: &str = "/var/lib/ocusers/runtimes/default/node_modules/.bin";

enum Outcome {
    /// Connected: it holds one WebSocket to alice through Caddy.
    Connected,
    /// Refused with "pairing required"; the pending request's id.
    Pairing(String),
}

/// Wait until the follower either is connected (it answers the ACP
/// `initialize` request it was started with, which the bridge reads only
/// once the gateway's hello succeeded) or has been refused for pairing (it
/// exits then). Anything else is a failure with its stderr.
fn follower_outcome(fx: &Fixture) -> Result<Outcome, String> {
    let mut outcome = None;
    let mut last_err = String::new();
    wait_for(
        "the follower to connect or ask for pairing",
        Duration::from_secs(120),
        || {
            last_err = fx.sh("cat /tmp/follow.err")?;
            if let Some(r) = last_err.split("requestId: ").nth(1) {
                let id: String = r
                    .chars()
                    .take_while(|c| c.is_ascii_hexdigit() || *c == '-')
                    .collect();
                outcome = Some(Outcome::Pairing(id));
                return Ok(true);
            }
            if last_err.to_lowercase().contains("pairing required") {
                // Refused without the request's id in the message: the
                // host's pending list has it.
                outcome = Some(Outcome::Pairing(String::new()));
                return Ok(true);
            }
            if let Some(answer) = acp_response(fx, 1)? {
                if answer.get("result").is_none() {
                    return Err(format!("the follower's ACP initialize failed: {answer}"));
                }
                outcome = Some(Outcome::Connected);
                return Ok(true);
            }
            if !follower_alive(fx) {
                return Err(format!("the follower exited: {last_err}"));
            }
            std::thread::sleep(Duration::from_millis(750));
            Ok(false)
        },
    )
    .map_err(|e| format!("{e}; follower stderr: {last_err}"))?;
    Ok(outcome.expect("set when the wait succeeds"))
}

/// `openclaw ARGS` on the host as the operator: over loopback to alice's
/// gateway with her token (from [`TOKEN_FILE`], never argv of this test),
/// with a throw-away HOME; returns its output.
pub(crate) fn host_cli(
    fx: &Fixture,
    alice_port: u16,
    token: &str,
    args: &str,
) -> Result<String, String> {
    fx.write_token_file(token)?;
    fx.sh(&format!(
        "export HOME=$(mktemp -d) PATH={RUNTIME_BIN}:$PATH; \
         timeout 120 openclaw {args} --url ws://127.0.0.1:{alice_port} --token \"$(cat {TOKEN_FILE})\"; \
         rc=$?; rm -rf \"$HOME\" {TOKEN_FILE}; exit $rc"
    ))
}

/// The newest pending pairing request, from `openclaw devices list --json`
/// on the host.
pub(crate) fn pending_request(
    fx: &Fixture,
    alice_port: u16,
    token: &str,
) -> Result<String, String> {
    let out = host_cli(fx, alice_port, token, "devices list --json")?;
    let json = out.find('{').map(|i| &out[i..]).unwrap_or_default();
    let v: serde_json::Value = serde_json::Deserializer::from_str(json)
        .into_iter()
        .next()
        .ok_or_else(|| format!("devices list printed no JSON: {out}"))?
        .map_err(|e| format!("devices list: {e}: {out}"))?;
    v["pending"]
        .as_array()
        .and_then(|p| p.last())
        .and_then(|r| r["requestId"].as_str())
        .map(str::to_string)
        .ok_or_else(|| format!("no pending pairing request: {v}"))
}

/// `openclaw devices approve ID` on the host, over loopback with alice's
/// token; returns its output.
fn approve_pairing(fx: &Fixture, id: &str, alice_port: u16, token: &str) -> Result<String, String> {
    stop_follower(fx);
    host_cli(
        fx,
        alice_port,
        token,
        &format!("devices approve {id} --json"),
    )
}

/// The real OpenClaw CLI as alice's remote client through Caddy, holding one
/// WebSocket: `openclaw acp` (the ACP bridge) connects at start and keeps
/// its gateway connection while its stdin is open; `openclaw logs --follow`
/// would not do, since it polls with a new connection per second. Its stdin
/// is a FIFO that a `sleep` holds open, so [`acp_request`] can send it more
/// requests; the first, `initialize` (id 1), is answered once it is
/// connected. One HOME across attempts (its device identity); the token in
/// a root-only file, never in argv.
fn start_follower(fx: &Fixture, token: &str) -> R {
    stop_follower(fx);
    fx.write_token_file(token)?;
    fx.sh(&format!(
        "mkdir -p /root/follower && install -m 600 {TOKEN_FILE} /root/follower/token && rm -f {TOKEN_FILE}; \
         : > /tmp/follow.out; : > /tmp/follow.err; rm -f /tmp/follow.in; mkfifo -m 600 /tmp/follow.in; \
         printf '%s\\n' '{ACP_INITIALIZE}' > /tmp/follow.init; \
         export NODE_EXTRA_CA_CERTS={CADDY_CA} HOME=/root/follower PATH={RUNTIME_BIN}:$PATH; \
         setsid sh -c '{{ cat /tmp/follow.init; exec sleep 100000; }} > /tmp/follow.in & \
           openclaw acp --url wss://alice.{DOMAIN}:{CADDY_HTTPS} --token-file /root/follower/token < /tmp/follow.in' \
           >/tmp/follow.out 2>/tmp/follow.err </dev/null & echo $! > /tmp/follow.pid"
    ))
    .map(drop)
}

/// The ACP `initialize` request the follower starts with (id 1).
pub(crate) const ACP_INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":1,"clientCapabilities":{}}}"#;

/// Send the follower one more ACP request (one JSON line) and wait for its
/// answer.
fn acp_request(fx: &Fixture, id: u64, method: &str) -> Result<serde_json::Value, String> {
    let line = serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": {}});
    fx.sh(&format!(
        "printf '%s\\n' '{line}' | timeout 10 tee /tmp/follow.in >/dev/null"
    ))
    .map_err(|e| format!("sending {method} to the follower: {e}"))?;
    let mut answer = None;
    wait_for(
        &format!("the follower to answer {method}"),
        Duration::from_secs(30),
        || {
            answer = acp_response(fx, id)?;
            Ok(answer.is_some())
        },
    )?;
    Ok(answer.expect("set when the wait succeeds"))
}

fn keeps_websockets(fx: &Fixture, alice_port: u16) -> R {
    let before = connections_to(fx, alice_port)?;
    let client_before = follower_connections(fx)?;
    ensure(!client_before.is_empty(), || {
        let seen = fx.sh(&format!(
            "cat /tmp/follow.pid; ss -Htnp state established '( dport = :{CADDY_HTTPS} )'; ps -eo pid,ppid,sid,args | grep -v grep | grep -i openclaw"
        ));
        format!("the follower has no connection to Caddy: {seen:?}")
    })?;
    let pid = caddy_pid(fx)?;
    let connected = Instant::now();

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
    // Still answering, not just open: the gateway sends a tick every 30 s,
    // and the client's watchdog (checking every 30 s) closes a socket whose
    // last tick is over 60 s old, so the same connection 95 s after the
    // first look has carried the gateway's ticks.
    std::thread::sleep(Duration::from_secs(95).saturating_sub(connected.elapsed()));

    // And it still carries a request: ACP `session/list` is the gateway's
    // `sessions.list`, a round trip over this WebSocket.
    let listed = acp_request(fx, 2, "session/list");
    let after = connections_to(fx, alice_port)?;
    let client_after = follower_connections(fx)?;
    let alive = follower_alive(fx);
    let err = fx.sh("cat /tmp/follow.err")?;
    ensure(
        before.iter().all(|c| after.contains(c))
            && client_before == client_after
            && alive
            && !err.to_lowercase().contains("reconnect")
            && matches!(&listed, Ok(v) if v.get("result").is_some()),
        || {
            format!(
                "alice's WebSocket did not survive add/remove of dave: to the gateway {before:?} -> {after:?}, follower to Caddy {client_before:?} -> {client_after:?}; follower alive: {alive}, session/list: {listed:?}, stderr: {err}"
            )
        },
    )?;
    ensure(caddy_pid(fx)? == pid, || "caddy was restarted".into())?;
    fx.figure(
        "WebSocket through Caddy across add+remove of a tenant",
        format!(
            "kept (same connection, both sides) across {add_remove_secs:.1} s of add+remove, {:.0} s in all",
            connected.elapsed().as_secs_f64()
        ),
    );

    // The check can fail: restarting Caddy drops the WebSocket, and the
    // check sees the follower's connection go.
    fx.sh("systemctl restart caddy")?;
    wait_for(
        "the restart to drop the WebSocket",
        Duration::from_secs(60),
        || Ok(follower_connections(fx)? != client_before),
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
         printf '[proxy]\\ndomain = \"{DOMAIN}\"\\nkind = \"nginx\"\\ntls = \"files\"\\ncert_file = \"{NGINX_CERT}\"\\nkey_file = \"{NGINX_KEY}\"\\nlisten = [\"127.0.0.1\", \"{CLIENT_ADDR}\"]\\n' >> /etc/ocusers/ocusers.toml && \
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
    client_address(false)
}

/// On-demand TLS that cannot be abused: with `tls = "acme"` and ocusers'
/// ask endpoint (`ocusers-ask.socket`) in Caddy's global options, Caddy
/// asks before it gets a certificate; a name ocusers does not route gets
/// none, a tenant's name gets one. Caddy's internal CA (`local_certs`)
/// stands in for the ACME CA, which the test cannot reach.
pub fn proxy_caddy_on_demand_ask(fx: &Fixture) -> R {
    fx.sh("systemctl enable --now ocusers-ask.socket")?;
    let ask = |host: &str| {
        fx.sh(&format!(
            "curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 'http://127.0.0.1:9123/check?domain={host}' || true"
        ))
    };
    ensure(ask(&format!("alice.{DOMAIN}"))? == "200", || {
        "the ask endpoint refuses alice's name".into()
    })?;
    ensure(ask(&format!("unrouted.{DOMAIN}"))? == "404", || {
        "the ask endpoint allows a name nobody routes".into()
    })?;
    // The operator's global options: README's lines, the internal issuer
    // standing in for ACME, and `debug` (Caddy logs refused handshakes at
    // debug level). Certificates of the earlier `tls
    // internal` runs go, so every name starts without one.
    fx.sh(&format!(
        "sed -i 's|^\\tdefault_bind 127.0.0.1|&\\n\\tdebug\\n\\tlocal_certs\\n\\ton_demand_tls {{\\n\\t\\task {ASK_URL}\\n\\t}}|' /etc/caddy/Caddyfile && \
         sed -i 's/^tls = \"internal\"/tls = \"acme\"/' /etc/ocusers/ocusers.toml && grep -q '^tls = \"acme\"' /etc/ocusers/ocusers.toml"
    ))?;
    let out = fx.ocusers_ok("proxy sync")?;
    ensure(out.contains("proxy in step"), || out.clone())?;
    fx.sh(
        "systemctl stop caddy && rm -rf /var/lib/caddy/.local/share/caddy/certificates && systemctl start caddy",
    )?;
    let cursor =
        fx.sh("journalctl -n 1 --show-cursor --no-pager -o cat | sed -n 's/^-- cursor: //p'")?;
    let include = fx.sh("cat /etc/caddy/ocusers.caddy")?;
    ensure(include.contains("on_demand"), || include.clone())?;
    let bad = proxy_doctor_failures(fx)?;
    ensure(bad.is_empty(), || {
        format!("doctor fails with on-demand TLS and the ask endpoint: {bad:?}")
    })?;
    // A TLS handshake for a name nobody routes: no certificate.
    let handshake = |host: &str| {
        fx.c.sh(&format!(
            "curl -s -o /dev/null -w '%{{http_code}}' --max-time 20 --cacert {CADDY_CA} \
             --resolve {host}:{CADDY_HTTPS}:{CLIENT_ADDR} https://{host}:{CADDY_HTTPS}/readyz"
        ))
    };
    let unrouted = format!("unrouted.{DOMAIN}");
    let out = handshake(&unrouted);
    ensure(
        !out.status.success() && stdout(&out).trim() == "000",
        || format!("a name nobody routes got a TLS session: {}", describe(&out)),
    )?;
    let out = handshake(&format!("alice.{DOMAIN}"));
    ensure(out.status.success() && stdout(&out).trim() == "200", || {
        format!(
            "alice's name got no certificate on demand: {}",
            describe(&out)
        )
    })?;
    let c = cursor.trim();
    let caddy_log = fx.sh(&format!(
        "journalctl -u caddy --no-pager -o cat --after-cursor='{c}' | grep -F '{unrouted}' | tail -5"
    ))?;
    ensure(
        caddy_log.contains("ask") || caddy_log.contains("not allowed"),
        || format!("Caddy's log does not say it asked about {unrouted}: {caddy_log:?}"),
    )?;
    let ask_log = fx.sh(&format!(
        "journalctl -t ocusers-ask --no-pager -o cat --after-cursor='{c}'"
    ))?;
    // Caddy consulted the endpoint for the name it got a certificate for.
    ensure(
        ask_log.contains(&format!("200 OK for alice.{DOMAIN}")),
        || format!("the ask endpoint's own log: {ask_log}"),
    )?;
    // What the endpoint logged (the refused name's line is expected too),
    // and Caddy's own words for the refused name.
    fx.figure(
        "on-demand TLS: ask endpoint log",
        ask_log.lines().collect::<Vec<_>>().join(" | "),
    );
    fx.figure(
        "on-demand TLS: Caddy's log for the unrouted name",
        caddy_log
            .lines()
            .map(|l| l.chars().take(300).collect::<String>())
            .collect::<Vec<_>>()
            .join(" | "),
    );
    let stored =
        fx.sh("ls -R /var/lib/caddy/.local/share/caddy/certificates 2>/dev/null || true")?;
    ensure(
        stored.contains(&format!("alice.{DOMAIN}")) && !stored.contains("unrouted"),
        || format!("Caddy's stored certificates: {stored}"),
    )?;
    fx.figure(
        "on-demand TLS with the ask endpoint",
        format!(
            "unrouted name refused ({}), alice's name issued",
            caddy_log
                .lines()
                .last()
                .unwrap_or_default()
                .chars()
                .take(160)
                .collect::<String>()
        ),
    );
    // Back to the internal CA for the trials that follow.
    fx.sh(
        "sed -i 's/^tls = \"acme\"/tls = \"internal\"/' /etc/ocusers/ocusers.toml && \
         sed -i '/^\\tlocal_certs$/d; /^\\tdebug$/d; /^\\ton_demand_tls {$/,/^\\t}$/d' /etc/caddy/Caddyfile",
    )?;
    fx.ocusers_ok("proxy sync")?;
    let (code, body) = readyz_via_caddy(fx, "alice")?;
    ensure(code == 200, || {
        format!("alice after going back to tls internal: {code} {body}")
    })
}
