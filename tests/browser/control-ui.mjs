// Drives Debian's Chromium (through playwright-core, no downloaded browser)
// for the system tier's trial `browser_control_ui_chat`
// (tests/system/browser.rs): opens a tenant's Control UI link, waits for the
// connected state, optionally sends one chat message and waits for the
// scripted model's reply, and writes what the page showed to
// $OCB_OUT/report.json (the caller checks it), plus screenshots.
//
// Input, all from the environment (nothing secret in argv):
//   OCB_URL        the link to open (it carries a single-use bootstrap token)
//   OCB_OUT        a directory for report.json, frames.jsonl and screenshots
//   OCB_NAME       prefix of the screenshots' file names
//   OCB_ARGS       JSON array of extra Chromium arguments (resolver rules,
//                  the certificate key to trust)
//   OCB_PROFILE    a fresh, empty user data directory
//   OCB_MESSAGE    a chat message to send once connected (optional)
//   OCB_REPLY      the reply expected in the page for it
//   OCB_WAIT_MS    how long to wait for the connected state (default 60000);
//                  without OCB_MESSAGE a link that must not connect is given
//                  this long
//   OCB_PRESS      the name of a button to press on the page the link opens
//                  (an invite page); the run then waits until the page has
//                  left that path (the redirect to the Control UI)
//   OCB_HOLD       when set, after the chat: write $OCB_OUT/held (the
//                  browser's device id), wait for $OCB_OUT/go, then wait up
//                  to 60 s for the connected state to end (the caller
//                  revokes the device in between)
//
// Exit status 0 when the report is written, whatever it says; 2 on bad input.
import fs from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";

const env = (k, d) => process.env[k] ?? d;
const url = env("OCB_URL");
const out = env("OCB_OUT");
const profile = env("OCB_PROFILE");
if (!url || !out || !profile) {
  console.error("control-ui.mjs: OCB_URL, OCB_OUT and OCB_PROFILE must be set");
  process.exit(2);
}
const name = env("OCB_NAME", "control-ui");
const extra = JSON.parse(env("OCB_ARGS", "[]"));
const message = env("OCB_MESSAGE");
const reply = env("OCB_REPLY");
const waitMs = Number(env("OCB_WAIT_MS", "60000"));
const press = env("OCB_PRESS");
const hold = env("OCB_HOLD");

// The flags this machine's Chromium needs (no sandbox as root, no GPU, and
// nothing that would try to reach Google's hosts).
const args = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  ...extra,
];

const t0 = Date.now();
const report = {
  connected: false,
  connectedMs: null,
  replySeen: false,
  replyMs: null,
  invitePage: null,
  disconnected: null,
  disconnectedMs: null,
  status: [],
  url: null,
  title: null,
  html: null,
  text: null,
  console: [],
  pageErrors: [],
  requests: [],
  localStorage: {},
  sessionStorage: {},
  cookies: [],
  deviceId: null,
  screenshots: [],
  error: null,
};
// Without a message to send, the link is one that must not connect: the
// run ends a few seconds after the gateway refused the page's connect.
let refused;
const refusal = new Promise((resolve) => (refused = resolve));
const frames = fs.createWriteStream(path.join(out, "frames.jsonl"), { mode: 0o600 });

// Connected: the sidebar footer's live region (role=status) reads
// "Connected" once the gateway's hello succeeded.
const connectedStatus = (page) =>
  page.locator('span.sr-only[role="status"]', { hasText: /^Connected$/ });

async function shot(page, what) {
  const file = path.join(out, `${name}-${what}.png`);
  await page.screenshot({ path: file });
  report.screenshots.push(file);
}

const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args,
  viewport: { width: 1280, height: 800 },
});
try {
  const page = ctx.pages()[0] ?? (await ctx.newPage());
  page.on("console", (m) => report.console.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => report.pageErrors.push(String(e)));
  page.on("request", (r) => report.requests.push(`${r.method()} ${r.url()}`));
  page.on("websocket", (ws) => {
    frames.write(JSON.stringify({ open: ws.url() }) + "\n");
    ws.on("framesent", (f) => frames.write(JSON.stringify({ sent: String(f.payload) }) + "\n"));
    ws.on("framereceived", (f) => {
      const text = String(f.payload);
      frames.write(JSON.stringify({ received: text }) + "\n");
      if (text.includes('"ok":false') && text.includes('"type":"res"')) refused();
    });
    ws.on("socketerror", (e) => frames.write(JSON.stringify({ error: String(e) }) + "\n"));
  });
  try {
    const first = await page.goto(url, { waitUntil: "load", timeout: 60000 });
    if (press) {
      // The invite page: one button, nothing changed until it is pressed.
      const before = new URL(page.url()).pathname;
      report.invitePage = {
        status: first ? first.status() : null,
        text: await page.evaluate(() => document.body?.innerText ?? "").catch(() => null),
      };
      await shot(page, "invite");
      const button = page.getByRole("button", { name: press });
      await Promise.all([
        page.waitForURL((u) => u.pathname !== before, { timeout: 120000, waitUntil: "load" }),
        button.click(),
      ]);
    }
    const connected = connectedStatus(page)
      .waitFor({ state: "attached", timeout: waitMs })
      .then(
        () => true,
        () => false,
      );
    const gaveUp = refusal.then(() => page.waitForTimeout(5000)).then(
      () => false,
      () => false,
    );
    report.connected = await (message ? connected : Promise.race([connected, gaveUp]));
    if (!report.connected) report.connected = (await connectedStatus(page).count()) > 0;
    if (report.connected) report.connectedMs = Date.now() - t0;
    await shot(page, report.connected ? "connected" : "not-connected");
    if (report.connected && message) {
      const box = page.getByRole("textbox", { name: "Chat composer" });
      await box.fill(message);
      await box.press("Enter");
      await page.getByText(reply, { exact: false }).first().waitFor({ timeout: 150000 });
      report.replySeen = true;
      report.replyMs = Date.now() - t0;
      await shot(page, "chat");
    }
    if (report.connected && hold) {
      const id = await page
        .evaluate(() => localStorage.getItem("openclaw-device-identity-v1"))
        .then((t) => {
          try {
            const v = JSON.parse(t);
            return v.deviceId ?? v.id ?? "";
          } catch {
            return "";
          }
        })
        .catch(() => "");
      // Written whole, then renamed: the caller never reads half of it.
      fs.writeFileSync(path.join(out, "held.tmp"), id, { mode: 0o600 });
      fs.renameSync(path.join(out, "held.tmp"), path.join(out, "held"));
      const go = path.join(out, "go");
      const until = Date.now() + 180000;
      while (!fs.existsSync(go) && Date.now() < until) await page.waitForTimeout(250);
      const t = Date.now();
      report.disconnected = await connectedStatus(page)
        .waitFor({ state: "detached", timeout: 60000 })
        .then(
          () => true,
          () => false,
        );
      if (report.disconnected) report.disconnectedMs = Date.now() - t;
      await shot(page, "revoked");
    }
  } catch (e) {
    report.error = String(e);
    await shot(page, "error").catch(() => {});
  }
  report.status = await page
    .locator('span.sr-only[role="status"]')
    .allTextContents()
    .catch(() => []);
  report.url = page.url();
  report.title = await page.title().catch(() => null);
  report.html = await page.content().catch(() => null);
  report.text = await page.evaluate(() => document.body?.innerText ?? "").catch(() => null);
  const storage = await page
    .evaluate(() => {
      const dump = (s) => Object.fromEntries(Object.keys(s).map((k) => [k, s.getItem(k)]));
      return { local: dump(localStorage), session: dump(sessionStorage) };
    })
    .catch(() => ({ local: {}, session: {} }));
  report.localStorage = storage.local;
  report.sessionStorage = storage.session;
  report.cookies = await ctx.cookies().catch(() => []);
  // The browser's device id, from the identity the Control UI keeps.
  const identity = storage.local["openclaw-device-identity-v1"];
  if (identity) {
    try {
      const v = JSON.parse(identity);
      report.deviceId = v.deviceId ?? v.id ?? null;
    } catch {
      report.deviceId = null;
    }
  }
} finally {
  report.elapsedMs = Date.now() - t0;
  await ctx.close().catch(() => {});
  await new Promise((r) => frames.end(r));
  fs.writeFileSync(path.join(out, "report.json"), JSON.stringify(report, null, 1), {
    mode: 0o600,
  });
}
