//! Scripted stand-ins on 127.0.0.1 for the outside services a tenant's
//! gateway talks to (the container shares the host's network namespace, so
//! nothing leaves the host): an OpenAI-compatible chat-completions endpoint
//! whose every answer is one fixed reply, and, when asked for, the part of
//! Telegram's Bot API a bot on long polling uses (`/bot<TOKEN>/<method>`:
//! `getMe`, `getUpdates`, `sendMessage`, ...), with messages from a person
//! the trial types. One server, one port, so one `[isolation] allow_local`
//! entry opens both to the tenant.
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::assert::{R, ensure};
use crate::support::process::describe;
use crate::tenants::Fixture;

/// The provider id and model a tenant is configured with.
pub const PROVIDER: &str = "scripted";
pub const MODEL: &str = "scripted-model";
/// The Telegram chat (and user) id of the person who messages the bot.
pub const CHAT_ID: i64 = 4242;

/// The Bot API side: which token it answers to, what the bot called, what
/// it sent, and the person's messages not yet fetched.
struct Bot {
    token: String,
    /// (method, arguments, whether the path carried the right token)
    calls: Mutex<Vec<(String, Value, bool)>>,
    updates: Mutex<VecDeque<Value>>,
    arrived: Condvar,
    next_id: AtomicI64,
}

pub struct Scripted {
    pub port: u16,
    seen: Arc<Mutex<Vec<Value>>>,
    bot: Option<Arc<Bot>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Scripted {
    /// The model server answering `reply`; with `bot_token`, also a Bot API
    /// for the bot with that token.
    pub fn start(reply: String, bot_token: Option<String>) -> Result<Scripted, String> {
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(|e| format!("scripted server: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let bot = bot_token.map(|token| {
            Arc::new(Bot {
                token,
                calls: Mutex::new(Vec::new()),
                updates: Mutex::new(VecDeque::new()),
                arrived: Condvar::new(),
                next_id: AtomicI64::new(1000),
            })
        });
        let (s, st, b) = (seen.clone(), stop.clone(), bot.clone());
        let reply = Arc::new(reply);
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    let (s, reply, b) = (s.clone(), reply.clone(), b.clone());
                    std::thread::spawn(move || {
                        let _ = serve(conn, &reply, &s, b.as_deref());
                    });
                }
            }
        });
        Ok(Scripted {
            port,
            seen,
            bot,
            stop,
            thread: Some(thread),
        })
    }

    /// The chat-completion requests the model got.
    pub fn requests(&self) -> Vec<Value> {
        self.seen.lock().unwrap().clone()
    }

    fn bot(&self) -> &Bot {
        self.bot.as_deref().expect("started without a bot")
    }

    /// The Bot API methods called so far, in order, with their arguments
    /// and whether the call carried the bot's token.
    pub fn bot_calls(&self) -> Vec<(String, Value, bool)> {
        self.bot().calls.lock().unwrap().clone()
    }

    /// The person sends the bot `text` in a private chat.
    pub fn person_says(&self, text: &str) {
        let bot = self.bot();
        let id = bot.next_id.fetch_add(1, Ordering::SeqCst);
        let now = unix_now();
        let person =
            json!({"id": CHAT_ID, "is_bot": false, "first_name": "Sis", "language_code": "en"});
        bot.updates.lock().unwrap().push_back(json!({
            "update_id": id,
            "message": {
                "message_id": id, "date": now, "text": text, "from": person,
                "chat": {"id": CHAT_ID, "type": "private", "first_name": "Sis"},
            },
        }));
        bot.arrived.notify_all();
    }

    /// Wait up to `timeout` for a call numbered `from` or later (in
    /// [`Scripted::bot_calls`]) that `pick` accepts; its index and what
    /// `pick` made of it.
    pub fn wait_call<T>(
        &self,
        from: usize,
        timeout: Duration,
        pick: impl Fn(&str, &Value, bool) -> Option<T>,
    ) -> Option<(usize, T)> {
        let end = Instant::now() + timeout;
        loop {
            let found = self
                .bot_calls()
                .iter()
                .enumerate()
                .skip(from)
                .find_map(|(i, (m, a, ok))| pick(m, a, *ok).map(|t| (i, t)));
            if found.is_some() || Instant::now() >= end {
                return found;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The methods called so far, for messages.
    pub fn bot_summary(&self) -> String {
        let calls = self.bot_calls();
        let names: Vec<&str> = calls.iter().map(|(m, _, _)| m.as_str()).collect();
        format!("{} Bot API call(s): {}", names.len(), names.join(","))
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(bot) = &self.bot {
            bot.arrived.notify_all();
        }
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A short value fresh per run (for replies and keys a test must not find
/// unless the code under test carried them).
pub fn nonce() -> String {
    format!(
        "{:08x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() ^ std::process::id())
            .unwrap_or(0)
    )
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// One HTTP/1.1 exchange, then the connection closes.
fn serve(
    conn: TcpStream,
    reply: &str,
    seen: &Mutex<Vec<Value>>,
    bot: Option<&Bot>,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.trim().eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length.min(16 << 20)];
    reader.read_exact(&mut body)?;
    let mut w = conn;
    if let Some(rest) = path.strip_prefix("/bot")
        && let Some(bot) = bot
    {
        let (status, answer) = bot_api(bot, rest, &body);
        return send(&mut w, status, "application/json", &answer.to_string());
    }
    if method == "GET" && path.ends_with("/models") {
        let list = json!({"object": "list", "data": [{"id": MODEL, "object": "model"}]});
        return send(&mut w, "200 OK", "application/json", &list.to_string());
    }
    if method != "POST" || !path.ends_with("/chat/completions") {
        return send(&mut w, "404 Not Found", "text/plain", "not here\n");
    }
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    seen.lock().unwrap().push(req.clone());
    let model = req["model"].as_str().unwrap_or(MODEL).to_string();
    let created = unix_now();
    if req["stream"] == true {
        write!(
            w,
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n"
        )?;
        let chunk = |delta: Value, finish: Value| {
            json!({
                "id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": created,
                "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            })
        };
        for c in [
            chunk(json!({"role": "assistant", "content": ""}), Value::Null),
            chunk(json!({"content": reply}), Value::Null),
            chunk(json!({}), json!("stop")),
        ] {
            write!(w, "data: {c}\n\n")?;
        }
        let usage = json!({
            "id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": created,
            "model": model, "choices": [],
            "usage": {"prompt_tokens": 1, "completion_tokens": 5, "total_tokens": 6},
        });
        write!(w, "data: {usage}\n\ndata: [DONE]\n\n")?;
        return w.flush();
    }
    let done = json!({
        "id": "chatcmpl-scripted", "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 5, "total_tokens": 6},
    });
    send(&mut w, "200 OK", "application/json", &done.to_string())
}

fn send(w: &mut TcpStream, status: &str, kind: &str, body: &str) -> std::io::Result<()> {
    write!(
        w,
        "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// `rest` is the path after `/bot`: `TOKEN/METHOD`. Arguments come as JSON
/// (grammY's way) or as a form.
fn bot_api(bot: &Bot, rest: &str, body: &[u8]) -> (&'static str, Value) {
    let (token, method) = rest.rsplit_once('/').unwrap_or((rest, ""));
    let method = method.split('?').next().unwrap_or_default().to_string();
    let args: Value = serde_json::from_slice(body).unwrap_or_else(|_| {
        let form: serde_json::Map<String, Value> = String::from_utf8_lossy(body)
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect();
        Value::Object(form)
    });
    let authorized = token == bot.token;
    bot.calls
        .lock()
        .unwrap()
        .push((method.clone(), args.clone(), authorized));
    if !authorized {
        return (
            "401 Unauthorized",
            json!({"ok": false, "error_code": 401, "description": "Unauthorized"}),
        );
    }
    let me = json!({
        "id": 7654321, "is_bot": true, "first_name": "Sister's agent", "username": "sister_test_bot",
        "can_join_groups": true, "can_read_all_group_messages": false, "supports_inline_queries": false,
    });
    let chat_id = args["chat_id"]
        .as_i64()
        .or_else(|| args["chat_id"].as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(CHAT_ID);
    let result = match method.as_str() {
        "getMe" => me.clone(),
        "getUpdates" => {
            // Long polling, held at most 5 s so a stopping bot is not kept.
            let wait = args["timeout"].as_u64().unwrap_or(0).min(5);
            let end = Instant::now() + Duration::from_secs(wait);
            let mut q = bot.updates.lock().unwrap();
            while q.is_empty() && Instant::now() < end {
                let left = end.saturating_duration_since(Instant::now());
                q = bot.arrived.wait_timeout(q, left).unwrap().0;
            }
            Value::Array(q.drain(..).collect())
        }
        "sendMessage" | "editMessageText" | "sendPhoto" | "sendDocument" => json!({
            "message_id": bot.next_id.fetch_add(1, Ordering::SeqCst), "date": unix_now(),
            "chat": {"id": chat_id, "type": "private", "first_name": "Sis"}, "from": me,
            "text": args["text"].as_str().unwrap_or_default(),
        }),
        "getMyCommands" => json!([]),
        "getChat" => json!({"id": chat_id, "type": "private", "first_name": "Sis"}),
        "getWebhookInfo" => {
            json!({"url": "", "has_custom_certificate": false, "pending_update_count": 0})
        }
        _ => json!(true),
    };
    ("200 OK", json!({"ok": true, "result": result}))
}

/// `openclaw config patch` as `tenant`, in its sandbox, with `patch` (no
/// single quotes in it) on stdin.
pub fn tenant_config_patch(fx: &Fixture, tenant: &str, patch: &Value) -> R {
    let patch = patch.to_string();
    let out = fx.ocusers(&format!(
        "exec {tenant} -- sh -c 'printf %s \"$1\" | openclaw config patch --stdin' sh '{patch}'"
    ));
    ensure(out.status.success(), || {
        format!("openclaw config patch as {tenant}: {}", describe(&out))
    })
}

/// The tenant's agents use an OpenAI-compatible provider at the scripted
/// model's port (a loopback marker key, as the docs allow for local
/// servers).
pub fn model_patch(port: u16) -> Value {
    json!({
        "models": {
            "mode": "merge",
            "providers": {
                PROVIDER: {
                    "baseUrl": format!("http://127.0.0.1:{port}/v1"),
                    "apiKey": "scripted-local",
                    "api": "openai-completions",
                    "models": [{
                        "id": MODEL,
                        "name": "Scripted",
                        "reasoning": false,
                        "input": ["text"],
                        "contextWindow": 32000,
                        "maxTokens": 1024,
                    }],
                },
            },
        },
        "agents": {"defaults": {"model": {"primary": format!("{PROVIDER}/{MODEL}")}}},
    })
}

/// What [`model_patch`] added, taken away again.
pub fn unmodel_patch() -> Value {
    json!({
        "models": {"providers": {PROVIDER: null}},
        "agents": {"defaults": {"model": null}},
    })
}
