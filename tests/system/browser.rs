//! The Control UI in a real browser through the real Caddy (issue 16,
//! acceptance 1 and 3): Debian's Chromium, driven by playwright-core
//! (tests/browser/control-ui.mjs), in a client network namespace of its own
//! that reaches the host only at the proxy's address, opens alice's link,
//! ends connected (screenshot under `target/`), shows up in the gateway's
//! device list approved, and chats with a scripted model served on loopback.
//! Nothing the page shows carries the gateway token; a bogus bootstrap token
//! does not connect.
//!
//! The link is `ocusers invite alice`'s: the page it opens has one button,
//! pressing it redirects to the Control UI with a bootstrap token minted at
//! that moment. The origin is the one ocusers keeps in the gateway's
//! allowedOrigins. With the chat done, the page stays open while
//! `ocusers devices alice list --json` shows its device and `ocusers
//! devices alice revoke` removes it: the page loses its connection.
//!
//! The browser's network: a namespace with one veth pair (TEST-NET-2
//! addresses) whose only route leads to [`CLIENT_ADDR`] on the host, where
//! Caddy listens; Chromium maps `*.test.internal` to that address
//! (`--host-resolver-rules`) and trusts Caddy's CA by the key of the
//! intermediate certificate Caddy serves (`--ignore-certificate-errors-spki-list`:
//! Chromium matches the pin against the chain the server sends, which does
//! not include Caddy's root). Nothing leaves the host.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::proxy::{CADDY_HTTPS, CLIENT_ADDR, DOMAIN};
use crate::scripted::{self, Scripted};
use crate::support::assert::{R, ensure};
use crate::support::process::{describe, stdout};
use crate::support::trials::Figures as _;
use crate::tenants::Fixture;

const TENANT: &str = "alice";
/// Caddy's intermediate certificate (inside the container root); the leaf
/// certificates it serves are signed by it.
const CADDY_INTERMEDIATE: &str =
    "/var/lib/caddy/.local/share/caddy/pki/authorities/local/intermediate.crt";
/// The client namespace's side and the host's side of the veth pair
/// (TEST-NET-2, never routed).
const HOST_SIDE: &str = "198.51.100.1";
const CLIENT_SIDE: &str = "198.51.100.2";
/// Upper bound for one browser run (start, connect, one chat turn).
const BROWSER_TIMEOUT: Duration = Duration::from_secs(240);

fn public_origin() -> String {
    format!("https://{TENANT}.{DOMAIN}:{CADDY_HTTPS}")
}

/// Acceptance 1 and 3 of issue 16, in one browser session and one refused
/// one.
pub fn browser_control_ui_chat(fx: &Fixture) -> R {
    let started = Instant::now();
    let script_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    prerequisites(&script_dir)?;
    let out_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/browser-trial");
    let _ = std::fs::remove_dir_all(&out_dir);
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let token = fx.token(TENANT)?;
    let since = fx.sh("date +%s")?.trim().to_string();
    let since_ms: u64 = since.parse::<u64>().map_err(|e| format!("date: {e}"))? * 1000;

    // A reply the page cannot show unless the model sent it: fresh per run
    // and not part of the message.
    let nonce = scripted::nonce();
    let reply = format!("Scripted lobster reply {nonce}");
    let message = format!("Hello from the browser trial ({nonce:.4})");
    let model = Scripted::start(reply.clone(), None)?;

    let opened = open_model_port(fx, model.port);
    let result = opened.and_then(|()| {
        configure_model(fx, model.port)?;
        public_origin_allowed(fx)?;
        let net = ClientNetns::create()?;
        let trust = caddy_pin(fx)?;
        let browser = Browser {
            net: &net,
            script_dir: &script_dir,
            out_dir: &out_dir,
            extra_args: vec![
                format!("--host-resolver-rules=MAP *.{DOMAIN} {CLIENT_ADDR}"),
                format!("--ignore-certificate-errors-spki-list={trust}"),
            ],
        };
        // A bogus bootstrap token (the right shape, never minted) must not
        // connect: the gateway answers the page with its refusal. It runs
        // while the tenant mints the real link (each takes about 20 s).
        let bogus = format!(
            "{}/#bootstrapToken={}&bootstrapProfile=owner",
            public_origin(),
            "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-AbCd"
        );
        // And without the pin the browser does not trust Caddy's
        // certificate: the trust is the pin's, not a switched-off check.
        let untrusting = Browser {
            extra_args: browser.extra_args[..1].to_vec(),
            ..browser
        };
        let (refused, untrusted, link) = std::thread::scope(|s| {
            let refused = s.spawn(|| browser.run("bogus-token", &bogus, None, 30_000, None, None));
            let untrusted = s.spawn(|| untrusting.run("no-pin", &bogus, None, 15_000, None, None));
            let link = invite_link(fx, &token);
            (
                refused.join().expect("browser thread"),
                untrusted.join().expect("browser thread"),
                link,
            )
        });
        let (refused, untrusted, link) = (refused?, untrusted?, link?);
        check_refused_run(&refused, &token)?;
        ensure(
            untrusted.report["connected"] == false
                && untrusted.report["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("ERR_CERT_AUTHORITY_INVALID")),
            || {
                format!(
                    "without the pin on Caddy's CA the page did not fail on its certificate: {}",
                    untrusted.summary()
                )
            },
        )?;

        // The person's way in: the invite page, its one button, the
        // Control UI. Once the chat is done the page stays open while the
        // operator lists the devices (`ocusers devices alice list --json`:
        // the browser is there) and revokes the browser's: its session
        // ends.
        let listed: std::sync::Mutex<Option<Vec<Value>>> = std::sync::Mutex::new(None);
        let revoke = |device: &str| -> R {
            let paired = listed_devices(fx)?;
            *listed.lock().unwrap() = Some(paired);
            ensure(!device.is_empty(), || "the page held no device id".into())?;
            fx.ocusers_ok(&format!("devices {TENANT} revoke {device}"))
                .map(drop)
        };
        let run = browser.run(
            "control-ui",
            &link,
            Some((&message, &reply)),
            90_000,
            Some("Sign in"),
            Some(&revoke),
        )?;
        let paired = listed
            .lock()
            .unwrap()
            .take()
            .ok_or_else(|| format!("the page never held for the revoke: {}", run.summary()))?;
        check_invite_page(&run, &token)?;
        check_connected_run(fx, &run, &token, &paired, &model, &message, since_ms)?;
        check_revoked(fx, &run)?;
        // The bogus profile's device got nowhere.
        let bogus_device = refused.report["deviceId"].as_str().unwrap_or("none");
        let paired = paired_devices(fx)?;
        ensure(
            !paired.iter().any(|d| d["deviceId"] == bogus_device),
            || format!("the bogus token's browser device {bogus_device} is paired"),
        )?;
        no_token_in_journal(fx, &since, &token)
    });
    // Always: the tenant's model and the allow-list entry go again (the
    // namespace and the model server go with their guards).
    let cleanup = unconfigure_model(fx).and(close_model_port(fx, model.port));
    drop(model);
    fx.figure(
        "browser trial (config, refused token, connect, chat, cleanup)",
        format!("{:.1} s", started.elapsed().as_secs_f64()),
    );
    result.and(cleanup)
}

/// What the trial needs on the host, with the fix for each.
fn prerequisites(script_dir: &Path) -> R {
    ensure(Path::new("/usr/bin/chromium").exists(), || {
        "no /usr/bin/chromium: install Debian's chromium (`apt-get install chromium`; .ci/run does)"
            .into()
    })?;
    let node = Command::new("node").arg("--version").output();
    ensure(node.is_ok_and(|o| o.status.success()), || {
        "no node on PATH: install Node.js 20 or later (.ci/run does)".into()
    })?;
    ensure(
        script_dir
            .join("node_modules/playwright-core/package.json")
            .is_file(),
        || {
            format!(
                "playwright-core is not installed in {}: run `npm ci` there (.ci/run does)",
                script_dir.display()
            )
        },
    )
}

// ---------------------------------------------------------------------------------------------
// What ocusers does for the person: the origin and the invite.

/// ocusers wrote alice's public origin for her gateway (root-owned, outside
/// her state; see src/proxy/origins.rs): nothing is set by hand here.
fn public_origin_allowed(fx: &Fixture) -> R {
    let file = format!("/var/lib/ocusers/public/{TENANT}/control-ui.json");
    let text = fx.sh(&format!("cat {file}"))?;
    ensure(text.contains(&format!("\"{}\"", public_origin())), || {
        format!("{file} does not allow {}: {text}", public_origin())
    })
}

/// `ocusers invite alice --json`: a single-use link on the public origin,
/// which carries neither the gateway token nor a bootstrap token (the
/// token is minted when the button is pressed).
fn invite_link(fx: &Fixture, token: &str) -> Result<String, String> {
    let v = fx.json(&format!("invite {TENANT} --json --expires 10m"))?;
    let url = v["url"].as_str().unwrap_or_default().to_string();
    ensure(
        url.starts_with(&format!("{}/ocusers-invite/", public_origin())),
        || format!("invite --json gave no link on {}: {v}", public_origin()),
    )?;
    ensure(
        !url.contains(token) && !url.contains("bootstrapToken"),
        || "the invite link carries a token".into(),
    )?;
    Ok(url)
}

/// `ocusers devices alice list --json`: the paired devices.
fn listed_devices(fx: &Fixture) -> Result<Vec<Value>, String> {
    let v = fx.json(&format!("devices {TENANT} list --json"))?;
    v["paired"]
        .as_array()
        .cloned()
        .ok_or_else(|| format!("devices {TENANT} list --json has no paired list: {v}"))
}

/// The invite page the link opened: 200, one button, no token in it.
fn check_invite_page(run: &Run, token: &str) -> R {
    let page = &run.report["invitePage"];
    ensure(
        page["status"] == 200 && page["text"].as_str().is_some_and(|t| !t.contains(token)),
        || format!("the invite page: {page} ({})", run.summary()),
    )
}

/// After `ocusers devices alice revoke ID` the page lost its connection,
/// and the device is no longer paired.
fn check_revoked(fx: &Fixture, run: &Run) -> R {
    ensure(run.report["disconnected"] == true, || {
        format!(
            "the browser stayed connected after its device was revoked: {}",
            run.summary()
        )
    })?;
    let device = run.report["deviceId"].as_str().unwrap_or_default();
    let paired = listed_devices(fx)?;
    ensure(!paired.iter().any(|d| d["deviceId"] == device), || {
        format!("the revoked device {device} is still paired")
    })?;
    fx.figure(
        "browser: page without its connection, after `ocusers devices revoke` returned",
        format!(
            "{} ms",
            run.report["disconnectedMs"].as_u64().unwrap_or(u64::MAX)
        ),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Checks.

fn check_connected_run(
    fx: &Fixture,
    run: &Run,
    token: &str,
    paired: &[Value],
    model: &Scripted,
    message: &str,
    since_ms: u64,
) -> R {
    // The screenshot of the Control UI once connected (the invite page's
    // comes before it).
    let shot = run.report["screenshots"]
        .as_array()
        .and_then(|s| {
            s.iter()
                .filter_map(Value::as_str)
                .find(|p| p.ends_with("-connected.png"))
        })
        .unwrap_or_default()
        .to_string();
    if !shot.is_empty() {
        eprintln!("[browser] screenshot: {shot}");
    }
    ensure(run.report["connected"] == true, || {
        format!(
            "the Control UI did not reach the connected state through Caddy (screenshot {shot}): {}",
            run.summary()
        )
    })?;
    ensure(Path::new(&shot).is_file(), || {
        format!("no screenshot at {shot:?}")
    })?;
    no_token_in_page(run, token)?;
    ensure(
        !run.report["url"]
            .as_str()
            .unwrap_or_default()
            .contains("bootstrapToken="),
        || {
            format!(
                "the page kept the bootstrap token in its URL: {}",
                run.summary()
            )
        },
    )?;

    // The gateway's device list: the browser's device, approved during
    // this trial through the bootstrap token with owner (admin) scopes.
    let device = run.report["deviceId"].as_str().unwrap_or_default();
    ensure(!device.is_empty(), || {
        format!("the page has no device identity: {}", run.summary())
    })?;
    let entry = paired.iter().find(|d| d["deviceId"] == device);
    ensure(
        entry.is_some_and(|d| {
            d["approvedAtMs"].as_u64().is_some_and(|t| t >= since_ms)
                && d["clientId"] == "openclaw-control-ui"
                && d["approvedVia"] == "bootstrap"
                && d["scopes"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|x| x == "operator.admin"))
        }),
        || {
            format!(
                "the browser's device {device} is not in the gateway's paired list as a new, bootstrap-approved owner: {entry:?} ({} paired)",
                paired.len()
            )
        },
    )?;

    // The chat: the scripted reply is on the page, and it came from the
    // model server, asked with the message the browser sent.
    ensure(run.report["replySeen"] == true, || {
        format!(
            "the scripted model's reply did not show in the page (model asked {} time(s)): {}",
            model.requests().len(),
            run.summary()
        )
    })?;
    let asked = model.requests();
    let with_message = asked
        .iter()
        .filter(|r| r.to_string().contains(message))
        .count();
    ensure(with_message > 0, || {
        format!(
            "the model server never got the browser's message ({} request(s))",
            asked.len()
        )
    })?;
    for shot in run.report["screenshots"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        eprintln!("[browser] screenshot: {shot}");
    }
    let ms = |k: &str| run.report[k].as_f64().unwrap_or(f64::NAN) / 1000.0;
    fx.figure(
        "browser: link opened to Control UI connected (through Caddy, client netns)",
        format!("{:.1} s", ms("connectedMs")),
    );
    fx.figure(
        "browser: link opened to the scripted reply shown",
        format!(
            "{:.1} s (model asked {} time(s), stream={})",
            ms("replyMs"),
            asked.len(),
            asked.iter().any(|r| r["stream"] == true)
        ),
    );
    Ok(())
}

fn check_refused_run(run: &Run, token: &str) -> R {
    ensure(run.report["connected"] == false, || {
        format!("a bogus bootstrap token connected: {}", run.summary())
    })?;
    ensure(run.frames.contains("AUTH_BOOTSTRAP_TOKEN_INVALID"), || {
        format!(
            "the gateway's refusal of the bogus token never reached the page (so the check saw nothing): {}",
            run.summary()
        )
    })?;
    no_token_in_page(run, token)
}

/// Nothing the page showed or kept carries the gateway token: its HTML and
/// text, its URL, the console, local and session storage (device keys are
/// fine there), cookies, and every WebSocket frame.
fn no_token_in_page(run: &Run, token: &str) -> R {
    for key in [
        "html",
        "text",
        "url",
        "title",
        "console",
        "pageErrors",
        "requests",
        "localStorage",
        "sessionStorage",
        "cookies",
    ] {
        ensure(!run.report[key].to_string().contains(token), || {
            format!("the gateway token is in the page's {key} ({})", run.name)
        })?;
    }
    ensure(!run.frames.contains(token), || {
        format!("the gateway token is in a WebSocket frame ({})", run.name)
    })
}

/// The journal of the trial's time (gateway, Caddy, everything) holds no
/// gateway token.
fn no_token_in_journal(fx: &Fixture, since: &str, token: &str) -> R {
    let journal = fx.sh(&format!(
        "journalctl --since @{since} --no-pager -o verbose"
    ))?;
    ensure(!journal.contains(token), || {
        "the gateway token is in the journal of the browser trial".into()
    })
}

// ---------------------------------------------------------------------------------------------
// The tenant's model and its way to it.

/// `[isolation] allow_local` opens exactly the model server's port to the
/// tenants (the firewall file says so; the system tier's container does not
/// load nftables, the VM tier does); `add` regenerates the rules.
fn open_model_port(fx: &Fixture, port: u16) -> R {
    let conf = "/etc/ocusers/ocusers.toml";
    let has = fx.sh(&format!("grep -c '^\\[isolation\\]' {conf} || true"))?;
    ensure(has.trim() == "0", || {
        format!("{conf} already has an [isolation] table; the trial adds its own")
    })?;
    fx.sh(&format!(
        "cp {conf} /root/ocusers.toml.before-browser && \
         printf '\\n[isolation]\\nallow_local = [\"tcp/127.0.0.1:{port}\"]\\n' >> {conf}"
    ))?;
    fx.ocusers_ok(&format!("add {TENANT}"))?;
    let rules = fx.sh("cat /var/lib/ocusers/firewall.nft")?;
    ensure(
        rules.contains(&format!("allow_local tcp/127.0.0.1:{port} tcp")),
        || format!("the firewall file does not open the model's port {port}"),
    )
}

fn close_model_port(fx: &Fixture, port: u16) -> R {
    fx.sh("mv /root/ocusers.toml.before-browser /etc/ocusers/ocusers.toml")?;
    fx.ocusers_ok(&format!("add {TENANT}"))?;
    let rules = fx.sh("cat /var/lib/ocusers/firewall.nft")?;
    ensure(!rules.contains(&format!("127.0.0.1:{port}")), || {
        format!("the firewall file still opens the model's port {port}")
    })
}

/// The tenant's agents use the scripted model (see [`scripted::model_patch`]).
fn configure_model(fx: &Fixture, port: u16) -> R {
    scripted::tenant_config_patch(fx, TENANT, &scripted::model_patch(port))
}

fn unconfigure_model(fx: &Fixture) -> R {
    scripted::tenant_config_patch(fx, TENANT, &scripted::unmodel_patch())
}

/// `openclaw devices list --json` as the tenant: its paired devices.
fn paired_devices(fx: &Fixture) -> Result<Vec<Value>, String> {
    let out = fx.ocusers(&format!("exec {TENANT} -- openclaw devices list --json"));
    ensure(out.status.success(), || {
        format!(
            "openclaw devices list --json as {TENANT}: {}",
            describe(&out)
        )
    })?;
    let v = first_json(&stdout(&out))
        .ok_or_else(|| format!("devices list printed no JSON: {}", describe(&out)))?;
    Ok(v["paired"].as_array().cloned().unwrap_or_default())
}

/// The first JSON object in `text` (the CLI may print log lines before it).
fn first_json(text: &str) -> Option<Value> {
    let start = text.find('{')?;
    serde_json::Deserializer::from_str(&text[start..])
        .into_iter::<Value>()
        .next()?
        .ok()
}

// ---------------------------------------------------------------------------------------------
// The browser's own network namespace and the browser runs.

/// A network namespace for the browser: one veth pair to the host and a
/// single route, to [`CLIENT_ADDR`] (where Caddy listens). Removed on drop.
struct ClientNetns {
    name: String,
    host_if: String,
}

fn ip(args: &[&str]) -> R {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e} (install iproute2)", args.join(" ")))?;
    ensure(out.status.success(), || {
        format!("ip {}: {}", args.join(" "), describe(&out))
    })
}

impl ClientNetns {
    fn create() -> Result<ClientNetns, String> {
        let id = std::process::id() % 100_000;
        let net = ClientNetns {
            name: format!("ocusers-browser-{id}"),
            host_if: format!("ocub{id}h"),
        };
        let peer = format!("ocub{id}c");
        // Leftovers of an interrupted run with the same id.
        let _ = net.remove();
        let n = net.name.as_str();
        ip(&["netns", "add", n])?;
        ip(&[
            "link",
            "add",
            &net.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
        ])?;
        ip(&["link", "set", &peer, "netns", n])?;
        ip(&[
            "addr",
            "add",
            &format!("{HOST_SIDE}/30"),
            "dev",
            &net.host_if,
        ])?;
        ip(&["link", "set", &net.host_if, "up"])?;
        ip(&["-n", n, "link", "set", "lo", "up"])?;
        ip(&[
            "-n",
            n,
            "addr",
            "add",
            &format!("{CLIENT_SIDE}/30"),
            "dev",
            &peer,
        ])?;
        ip(&["-n", n, "link", "set", &peer, "up"])?;
        ip(&[
            "-n",
            n,
            "route",
            "add",
            &format!("{CLIENT_ADDR}/32"),
            "via",
            HOST_SIDE,
        ])?;
        Ok(net)
    }

    fn remove(&self) -> R {
        let a = ip(&["netns", "del", &self.name]);
        let _ = ip(&["link", "del", &self.host_if]);
        a
    }
}

impl Drop for ClientNetns {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

/// The base64 SHA-256 of the public key of Caddy's intermediate
/// certificate, the form `--ignore-certificate-errors-spki-list` takes.
fn caddy_pin(fx: &Fixture) -> Result<String, String> {
    let pin = fx.sh(&format!(
        "openssl x509 -in {CADDY_INTERMEDIATE} -noout -pubkey | openssl pkey -pubin -outform der | \
         openssl dgst -sha256 -binary | base64"
    ))?;
    let pin = pin.trim().to_string();
    ensure(pin.len() == 44 && pin.ends_with('='), || {
        format!("no key hash of Caddy's intermediate certificate: {pin:?}")
    })?;
    Ok(pin)
}

struct Browser<'a> {
    net: &'a ClientNetns,
    script_dir: &'a Path,
    out_dir: &'a Path,
    extra_args: Vec<String>,
}

/// What one browser run left: its report and its WebSocket frames.
struct Run {
    name: String,
    report: Value,
    frames: String,
}

impl Run {
    /// A short account for failure messages: state, URL, errors, the page's
    /// text and the console's last lines (the token is checked to be absent
    /// from all of them before a connected run is judged further).
    fn summary(&self) -> String {
        let r = &self.report;
        let tail = |k: &str, n: usize| {
            r[k].as_array()
                .map(|a| {
                    a.iter()
                        .rev()
                        .take(n)
                        .rev()
                        .map(|v| {
                            v.as_str()
                                .unwrap_or_default()
                                .chars()
                                .take(300)
                                .collect::<String>()
                        })
                        .collect::<Vec<_>>()
                        .join(" | ")
                })
                .unwrap_or_default()
        };
        let text = format!(
            "connected={} replySeen={} status={} url={} error={} text={:?} console: {} pageErrors: {}",
            r["connected"],
            r["replySeen"],
            r["status"],
            r["url"],
            r["error"],
            r["text"]
                .as_str()
                .unwrap_or_default()
                .chars()
                .take(600)
                .collect::<String>(),
            tail("console", 8),
            tail("pageErrors", 4),
        );
        redact_bootstrap(&text)
    }
}

/// `text` with the value of every `bootstrapToken=` replaced: a failure
/// message never carries a login token, even a single-use one.
fn redact_bootstrap(text: &str) -> String {
    let key = "bootstrapToken=";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(key) {
        out.push_str(&rest[..i + key.len()]);
        out.push_str("<redacted>");
        rest = &rest[i + key.len()..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .unwrap_or(rest.len());
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

impl Browser<'_> {
    /// `tests/browser/control-ui.mjs` in the client namespace with a fresh
    /// profile; `chat` is (message, expected reply).
    fn run(
        &self,
        name: &str,
        url: &str,
        chat: Option<(&str, &str)>,
        wait_ms: u64,
        press: Option<&str>,
        on_held: Option<&dyn Fn(&str) -> R>,
    ) -> Result<Run, String> {
        let out = self.out_dir.join(name);
        std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
        let profile = tempdir("ocusers-browser-profile")?;
        let log = std::fs::File::create(out.join("node.log")).map_err(|e| e.to_string())?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.net.name, "node", "control-ui.mjs"])
            .current_dir(self.script_dir)
            .env("OCB_URL", url)
            .env("OCB_OUT", &out)
            .env("OCB_NAME", name)
            .env("OCB_PROFILE", &profile)
            .env("OCB_ARGS", serde_json::to_string(&self.extra_args).unwrap())
            .env("OCB_WAIT_MS", wait_ms.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        if let Some((message, reply)) = chat {
            cmd.env("OCB_MESSAGE", message).env("OCB_REPLY", reply);
        }
        if let Some(button) = press {
            cmd.env("OCB_PRESS", button);
        }
        if on_held.is_some() {
            cmd.env("OCB_HOLD", "1");
        }
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("starting the browser: {e}"))?;
        let start = Instant::now();
        let mut held: Option<R> = None;
        let status = loop {
            if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
                break Some(s);
            }
            // The page is connected and waits: the caller acts (revokes
            // the device), then lets it see what follows.
            if let (Some(act), None) = (on_held, &held)
                && let Ok(device) = std::fs::read_to_string(out.join("held"))
            {
                held = Some(act(device.trim()));
                std::fs::write(out.join("go"), b"").map_err(|e| e.to_string())?;
            }
            if start.elapsed() > BROWSER_TIMEOUT {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .status();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let _ = std::fs::remove_dir_all(&profile);
        let node_log = std::fs::read_to_string(out.join("node.log")).unwrap_or_default();
        let report = std::fs::read_to_string(out.join("report.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok());
        let Some(report) = report else {
            return Err(format!(
                "the browser run {name} wrote no report (exit {status:?}, {:.0} s); node said: {}",
                start.elapsed().as_secs_f64(),
                node_log
                    .chars()
                    .rev()
                    .take(2000)
                    .collect::<String>()
                    .chars()
                    .rev()
                    .collect::<String>()
            ));
        };
        let frames = std::fs::read_to_string(out.join("frames.jsonl")).unwrap_or_default();
        if let Some(result) = held {
            result?;
        }
        Ok(Run {
            name: name.to_string(),
            report,
            frames,
        })
    }
}

/// A fresh, empty directory under /tmp.
fn tempdir(prefix: &str) -> Result<PathBuf, String> {
    let out = Command::new("mktemp")
        .args(["-d", &format!("/tmp/{prefix}-XXXXXX")])
        .output()
        .map_err(|e| format!("mktemp: {e}"))?;
    ensure(out.status.success(), || {
        format!("mktemp: {}", describe(&out))
    })?;
    Ok(PathBuf::from(stdout(&out).trim()))
}
