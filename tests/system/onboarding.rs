//! README's "Onboard a tenant end to end", run as written (issue 16,
//! acceptance 5), after the proxy trials set Caddy up: the trial reads the
//! section's `sh` blocks from README.md and runs them in order as root in
//! the container, with README's own values (the first block), and checks
//! after each what it promises:
//!
//! 1. the values: the trial writes the two key files where they say;
//! 2. `add`, the provider key, the default model: the tenant is ready
//!    through Caddy, the model is set, the key is in no file of its state;
//! 3. `invite`: the printed link, on her public name, opens the one-button
//!    page (pressing it is the invite and browser trials' part);
//! 4. the bot's token with a restart: both keys are in the gateway's
//!    environment, the gateway starts the bot with the token from the file,
//!    and a person's first message gets a pairing code back;
//! 5. `pairing approve telegram CODE` with that code: the person's next
//!    message reaches her agent and the agent's answer comes back.
//!
//! Nothing leaves the host. Between blocks 2 and 3 the trial points the
//! tenant's agent at a scripted model and its bot at a scripted Bot API,
//! both on one loopback port (tests/system/scripted.rs, opened to the
//! tenant by `[isolation] allow_local`), with the tenant's own `openclaw
//! config patch`: the only lines that are not README's. The tenant is
//! removed at the end.
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::invite::request;
use crate::proxy::{CADDY_HTTPS, DOMAIN};
use crate::scripted::{self, Scripted};
use crate::support::assert::{R, ensure, wait_for};
use crate::support::trials::Figures as _;
use crate::tenants::Fixture;

const SECTION: &str = "## Onboard a tenant end to end";
/// What the section's blocks are, in order; the trial knows what each one
/// promises.
const BLOCKS: [&str; 5] = ["values", "gateway", "invite", "telegram", "pairing"];
const CONF: &str = "/etc/ocusers/ocusers.toml";
const CONF_BEFORE: &str = "/root/ocusers.toml.before-onboarding";

/// The section as README has it: its `sh` blocks and the values of the
/// first one.
struct Section {
    blocks: Vec<String>,
    values: Vec<(String, String)>,
}

impl Section {
    fn read() -> Result<Section, String> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md");
        let readme =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let start = readme
            .find(&format!("\n{SECTION}\n"))
            .ok_or_else(|| format!("README.md has no section {SECTION:?}"))?;
        let body = &readme[start + SECTION.len() + 2..];
        let body = &body[..body.find("\n## ").unwrap_or(body.len())];
        let mut blocks = Vec::new();
        let mut rest = body;
        while let Some(i) = rest.find("```sh\n") {
            let after = &rest[i + 6..];
            let end = after
                .find("```")
                .ok_or_else(|| "README's onboarding section has an unclosed block".to_string())?;
            blocks.push(after[..end].to_string());
            rest = &after[end + 3..];
        }
        ensure(blocks.len() == BLOCKS.len(), || {
            format!(
                "README's onboarding section has {} sh blocks; the trial knows {} ({}): change tests/system/onboarding.rs with it",
                blocks.len(),
                BLOCKS.len(),
                BLOCKS.join(", ")
            )
        })?;
        let mut values = Vec::new();
        for line in blocks[0].lines() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .filter(|(k, v)| {
                    !k.is_empty()
                        && k.chars().all(|c| c.is_ascii_uppercase() || c == '_')
                        && !v.contains(['$', '`', '\'', '"', ' '])
                })
                .ok_or_else(|| {
                    format!("README's values block has a line that is not NAME=value: {line:?}")
                })?;
            values.push((k.to_string(), v.to_string()));
        }
        Ok(Section { blocks, values })
    }

    fn value(&self, key: &str) -> Result<&str, String> {
        self.values
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| format!("README's values block sets no {key}"))
    }

    /// Block `step` as a script: README's values first, stop at the first
    /// failing command.
    fn script(&self, step: &str) -> String {
        let i = BLOCKS.iter().position(|b| *b == step).expect("known step");
        format!("set -eu\n{}\n{}", self.blocks[0], self.blocks[i])
    }
}

/// README's block `step`, run; its stdout.
fn run_block(
    fx: &Fixture,
    section: &Section,
    step: &str,
    code: Option<&str>,
) -> Result<String, String> {
    let mut script = section.script(step);
    if let Some(code) = code {
        ensure(script.matches(" CODE").count() == 1, || {
            format!("README's {step} block does not have exactly one CODE to fill in: {script}")
        })?;
        script = script.replacen(" CODE", &format!(" {code}"), 1);
    }
    let t = Instant::now();
    let out = fx
        .sh(&script)
        .map_err(|e| format!("README's onboarding block {step:?} failed: {e}"))?;
    fx.figure(
        format!("README onboarding: the {step} block"),
        format!("{:.1} s", t.elapsed().as_secs_f64()),
    );
    Ok(out)
}

pub fn readme_onboarding(fx: &Fixture) -> R {
    let started = Instant::now();
    let section = Section::read()?;
    let name = section.value("NAME")?.to_string();
    let key_file = section.value("PROVIDER_KEY_FILE")?.to_string();
    let bot_file = section.value("BOT_TOKEN_FILE")?.to_string();
    let nonce = scripted::nonce();
    let keys = Keys {
        provider: format!("sk-ant-onboarding-{nonce}-notreal"),
        bot: format!("7654321:AAonboarding{nonce}NotReal"),
    };
    let reply = format!("Scripted answer for the onboarding trial {nonce}");
    let server = Scripted::start(reply.clone(), Some(keys.bot.clone()))?;
    let since = fx.sh("date +%s")?.trim().to_string();

    // The host as README's section finds it: sudo (Debian's cloud images
    // have it; the test's minimal root does not), the person's two key
    // files where the values say, and the scripted servers' port open to
    // tenants.
    fx.sh(
        "command -v sudo >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends sudo >/tmp/apt-sudo.log 2>&1 \
         || { tail -20 /tmp/apt-sudo.log; exit 1; }",
    )?;
    fx.sh(&format!(
        "umask 077 && mkdir -p \"$(dirname {key_file})\" \"$(dirname {bot_file})\" && \
         printf '%s\\n' '{}' > {key_file} && printf '%s\\n' '{}' > {bot_file}",
        keys.provider, keys.bot
    ))?;
    let has = fx.sh(&format!("grep -c '^\\[isolation\\]' {CONF} || true"))?;
    ensure(has.trim() == "0", || {
        format!("{CONF} already has an [isolation] table; the trial adds its own")
    })?;
    fx.sh(&format!(
        "cp {CONF} {CONF_BEFORE} && \
         printf '\\n[isolation]\\nallow_local = [\"tcp/127.0.0.1:{}\"]\\n' >> {CONF}",
        server.port
    ))?;

    let result = steps(fx, &section, &name, &keys, &server, &reply, &since);

    // Always: the tenant, the allow-list entry and the key files go again
    // (the configuration first, so remove's firewall sync drops the port).
    let cleanup = fx
        .sh(&format!("mv {CONF_BEFORE} {CONF}"))
        .and_then(|_| {
            fx.ocusers_ok(&format!("remove {name} --purge"))
                .map_err(|e| format!("cleanup: {e}"))
        })
        .and_then(|_| fx.sh(&format!("rm -f {key_file} {bot_file}")))
        .and_then(|_| {
            let rules = fx.sh("cat /var/lib/ocusers/firewall.nft 2>/dev/null || true")?;
            ensure(
                !rules.contains(&format!("127.0.0.1:{}", server.port)),
                || {
                    format!(
                        "the firewall file still opens the scripted port {}",
                        server.port
                    )
                },
            )
        });
    fx.figure(
        "README onboarding (all five blocks, the checks, cleanup)",
        format!("{:.1} s", started.elapsed().as_secs_f64()),
    );
    drop(server);
    result.and(cleanup)
}

struct Keys {
    provider: String,
    bot: String,
}

fn steps(
    fx: &Fixture,
    section: &Section,
    name: &str,
    keys: &Keys,
    server: &Scripted,
    reply: &str,
    since: &str,
) -> R {
    let origin = format!("https://{name}.{DOMAIN}:{CADDY_HTTPS}");

    // 2. Her gateway, her keys, her model.
    run_block(fx, section, "gateway", None)?;
    // `add` waited for ready; the model's `config set` makes the gateway
    // reload, during which its /readyz may not answer at once.
    let mut st = Value::Null;
    wait_for(
        "the tenant ready after README's gateway block",
        Duration::from_secs(90),
        || {
            st = fx.status(name)?;
            Ok(st["ready"] == true)
        },
    )
    .map_err(|e| format!("{e}: {st}"))?;
    let ready = request(fx, "GET", &format!("{origin}/readyz"))?;
    ensure(ready.code == 200, || {
        format!("{name}'s /readyz through Caddy: {}", ready.text())
    })?;
    let config_path = format!("/var/lib/openclaw/{name}/openclaw.json");
    let config_text = fx.sh(&format!("cat {config_path}"))?;
    let config: Value = serde_json::from_str(&config_text)
        .map_err(|e| format!("{config_path} is not JSON ({e}): {config_text}"))?;
    let model = &config["agents"]["defaults"]["model"]["primary"];
    ensure(model == "anthropic/claude-opus-5", || {
        format!("README's model is not {name}'s default: {model} in {config_path}")
    })?;
    let leaked = fx.sh(&format!(
        "grep -rlF -e '{}' -e '{}' /var/lib/openclaw/{name} 2>/dev/null || true",
        keys.provider, keys.bot
    ))?;
    ensure(leaked.trim().is_empty(), || {
        format!("a key is written in {name}'s state: {leaked}")
    })?;

    // The trial's stand-ins for Anthropic and Telegram, on loopback, set
    // by the tenant's own CLI.
    let mut patch = scripted::model_patch(server.port);
    patch["channels"] =
        json!({"telegram": {"apiRoot": format!("http://127.0.0.1:{}", server.port)}});
    scripted::tenant_config_patch(fx, name, &patch)?;

    // 3. The invite: one link on her public name, a page with one button
    // (invite_redeem_once presses it; the browser trial follows such a link
    // to a chat).
    let out = run_block(fx, section, "invite", None)?;
    let url = out.lines().next().unwrap_or_default().trim().to_string();
    ensure(
        url.starts_with(&format!("{origin}/ocusers-invite/")),
        || format!("README's invite block printed no link on {origin}: {out}"),
    )?;
    let page = request(fx, "GET", &url)?;
    ensure(
        page.code == 200 && page.body.contains("<form method=\"post\">"),
        || format!("GET of {name}'s invite: {}", page.text()),
    )?;

    // 4. Her bot. After the restart both keys are in the gateway's
    // environment; it logs in with the token from the file and polls, and
    // her first message gets a pairing code.
    let t = Instant::now();
    run_block(fx, section, "telegram", None)?;
    for (var, file) in [
        ("ANTHROPIC_API_KEY", section.value("PROVIDER_KEY_FILE")?),
        ("TELEGRAM_BOT_TOKEN", section.value("BOT_TOKEN_FILE")?),
    ] {
        let same = fx.sh(&format!(
            "pid=$(systemctl show -P MainPID openclaw@{name}.service); \
             [ \"$(tr '\\0' '\\n' </proc/$pid/environ | sed -n 's/^{var}=//p')\" = \"$(cat {file})\" ] && echo same || echo differs"
        ))?;
        ensure(same.trim() == "same", || {
            format!("{name}'s gateway does not have {var} from {file} in its environment")
        })?;
    }
    let polled = server.wait_call(0, Duration::from_secs(120), |m, _, ok| {
        (m == "getUpdates" && ok).then_some(())
    });
    ensure(polled.is_some(), || {
        format!(
            "{name}'s bot never polled the scripted Bot API with its token: {}",
            server.bot_summary()
        )
    })?;
    let refused: Vec<String> = server
        .bot_calls()
        .iter()
        .filter(|(_, _, ok)| !ok)
        .map(|(m, _, _)| m.clone())
        .collect();
    ensure(refused.is_empty(), || {
        format!("{name}'s bot called the Bot API with another token: {refused:?}")
    })?;
    fx.figure(
        "README onboarding: bot token set (--restart) to the bot polling",
        format!("{:.1} s", t.elapsed().as_secs_f64()),
    );
    let mark = server.bot_calls().len();
    server.person_says("Hi! It's me, your sister.");
    let code = server
        .wait_call(mark, Duration::from_secs(60), |m, a, _| {
            let text = a["text"].as_str()?;
            (m == "sendMessage"
                && a["chat_id"].to_string().trim_matches('"') == scripted::CHAT_ID.to_string())
            .then(|| pairing_code(text))
            .flatten()
        })
        .map(|(_, c)| c)
        .ok_or_else(|| {
            format!(
                "the bot answered her first message with no pairing code: {}",
                server.bot_summary()
            )
        })?;

    // 5. The operator approves her code; from then on her messages reach
    // her agent. The approval changes the gateway's config, and the bot
    // reconnects: a message sent meanwhile may be lost, so she asks again
    // (at most three times) until the answer comes.
    run_block(fx, section, "pairing", Some(&code))?;
    let t = Instant::now();
    let question = "What is two plus two?";
    let mut answered = false;
    for _ in 0..3 {
        let mark = server.bot_calls().len();
        server.person_says(question);
        if server
            .wait_call(mark, Duration::from_secs(60), |m, a, _| {
                (m == "sendMessage" && a["text"].as_str().is_some_and(|t| t.contains(reply)))
                    .then_some(())
            })
            .is_some()
        {
            answered = true;
            break;
        }
    }
    ensure(answered, || {
        format!(
            "her message after the approval got no answer from her agent (model asked {} time(s)): {}",
            server.requests().len(),
            server.bot_summary()
        )
    })?;
    ensure(
        server
            .requests()
            .iter()
            .any(|r| r.to_string().contains(question)),
        || "the scripted model never got her message".into(),
    )?;
    fx.figure(
        "README onboarding: pairing approved to the agent's answer in Telegram",
        format!("{:.1} s", t.elapsed().as_secs_f64()),
    );

    // Neither key is in the gateway's journal, and the bot never tried
    // Telegram's own servers (the stand-in was set before its token).
    let journal = format!("journalctl -u openclaw@{name}.service --since @{since} -o cat");
    let hits = fx.sh(&format!(
        "{journal} | grep -cF -e '{}' -e '{}' || true",
        keys.provider, keys.bot
    ))?;
    ensure(hits.trim() == "0", || {
        format!("a key shows in {name}'s journal ({} line(s))", hits.trim())
    })?;
    let away = fx.sh(&format!(
        "{journal} | grep -F -e 'api.telegram.org' -e 'alternative Telegram API IP' || true"
    ))?;
    ensure(away.trim().is_empty(), || {
        format!("{name}'s bot tried Telegram's own servers: {away}")
    })
}

/// The code in the bot's pairing answer ("... openclaw pairing approve
/// telegram 7PKCZWVY ...").
fn pairing_code(text: &str) -> Option<String> {
    let (_, after) = text.split_once("pairing approve telegram ")?;
    let code: String = after
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    (code.len() >= 4).then_some(code)
}
