// The real-browser harness's toolbox: Debian's Chromium through playwright-core, trusting the
// test hub's certificates explicitly, with steps that leave a screenshot and the page's HTML
// behind when they fail.
//
// Run by node/tests/browser.rs (`cargo test --workspace --test browser`), which starts a 3-node
// hub (TLS; plaintext for the cut-off story), seeds the demo region and sets:
//   KIZUNA_URLS           the nodes' public URLs, comma-separated
//   KIZUNA_CA             the hub CA (ca.pem), when it runs TLS; the nodes' certificates are next to it
//   KIZUNA_SCREENSHOTS    where screenshots (and failure excerpts) go
//   KIZUNA_DEMO_PASSWORD  the demo accounts' password
// and answers the line protocol of stopNode() and its siblings on stdin.
// Optional, set by hand: KIZUNA_WEB_DIST=<dir> makes the browser take the client's static files
// (/, /index.html, /app.js, /app.css of the nodes' origins) from that directory (node/web/dist
// after `npm run build`) instead of the bundle embedded in the kizuna binary: the UI can change
// without rebuilding Rust. Its API calls still go to the real nodes.

import { chromium } from "playwright-core";
import { X509Certificate, createHash, createHmac } from "node:crypto";
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";

function required(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run this through \`cargo test --workspace --test browser\``);
  return v;
}

/** The hub's nodes, in node id order: ["https://127.0.0.1:port", ...]. */
export const urls = required("KIZUNA_URLS").split(",").map((u) => u.trim().replace(/\/$/, ""));
/** The demo accounts' password (node/src/cli/seed.rs DEMO_PASSWORD). */
export const password = required("KIZUNA_DEMO_PASSWORD");
/** The hub CA (ca.pem) when the hub runs TLS; unset for a plaintext hub. */
export const ca = process.env.KIZUNA_CA;
export const screenshots = required("KIZUNA_SCREENSHOTS");
mkdirSync(screenshots, { recursive: true });

export const CHROMIUM = "/usr/bin/chromium";

export function log(...args) {
  // stderr: stdout carries the line protocol (stopNode), and the harness echoes both.
  console.error(`[${new Date().toISOString().slice(11, 23)}]`, ...args);
}

/** The certificates of every PEM file in `dir`: [{file, cert}]. */
function certificates(dir) {
  const out = [];
  for (const file of readdirSync(dir).filter((f) => f.endsWith(".pem")).sort()) {
    const pem = readFileSync(join(dir, file), "utf8");
    for (const block of pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []) {
      out.push({ file, cert: new X509Certificate(block) });
    }
  }
  return out;
}

/** base64(SHA-256(SubjectPublicKeyInfo DER)): the form --ignore-certificate-errors-spki-list takes. */
export function spkiHash(cert) {
  const spki = cert.publicKey.export({ type: "spki", format: "der" });
  return createHash("sha256").update(spki).digest("base64");
}

// Chromium is told to accept exactly the hub's node certificates, by key, rather than every
// certificate (no ignoreHTTPSErrors, no --ignore-certificate-errors): a wrong server still fails.
//
// --ignore-certificate-errors-spki-list is checked against the certificates the *server sends*
// (Chromium's IgnoreErrorsCertVerifier hashes the leaf and the intermediates of the presented
// chain), not against the issuer it would have to find. Our nodes present their leaf only
// (<node>.pem, see node/server/src/tls.rs), so the CA's key alone does not match: tried, the
// page fails with net::ERR_CERT_AUTHORITY_INVALID. The leaves' keys match. So: the hashes of
// every node certificate next to ca.pem (ca.pem is left out on purpose).
// (Chromium honours the flag only with a --user-data-dir, which playwright always passes.)
export function trustedSpkiHashes() {
  const dir = dirname(ca);
  const nodes = certificates(dir).filter(({ file, cert }) => file !== "ca.pem" && !cert.ca);
  if (nodes.length === 0) throw new Error(`no node certificates next to ${ca}`);
  return nodes.map(({ cert }) => spkiHash(cert));
}

/** Debian's Chromium, headless, trusting the hub's node certificates. */
export async function launch() {
  const args = [
    // This machine is a sandbox with a closed network: without these Chromium stalls or
    // crashes (no user namespaces for its sandbox, no GPU, no Google services to reach).
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ];
  if (ca) args.push(`--ignore-certificate-errors-spki-list=${trustedSpkiHashes().join(",")}`);
  log(`launching ${CHROMIUM}`);
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args });
  log(`browser ${browser.version()}`);
  return browser;
}

export const PHONE = { viewport: { width: 360, height: 740 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 };
export const DESKTOP = { viewport: { width: 1280, height: 800 }, isMobile: false, hasTouch: false, deviceScaleFactor: 1 };

const contexts = new Set();

/**
 * A fresh browser profile (cookies, storage) with the phone or desktop shape: pass PHONE,
 * DESKTOP, or options of your own ({viewport, isMobile, ...}). Japanese locale and Tokyo time.
 * Console errors, page errors and failed requests of its pages go to the log.
 */
export async function newContext(browser, options = PHONE) {
  const context = await browser.newContext({ locale: "ja-JP", timezoneId: "Asia/Tokyo", ...options });
  const label = options.isMobile ? "phone" : `${options.viewport?.width ?? "?"}px`;
  context.on("page", (page) => watch(page, label));
  if (webDist) await serveDist(context);
  context.on("close", () => contexts.delete(context));
  contexts.add(context);
  return context;
}

const webDist = process.env.KIZUNA_WEB_DIST;
const STATIC = { "/": "index.html", "/index.html": "index.html", "/app.js": "app.js", "/app.css": "app.css" };

async function serveDist(context) {
  const origins = new Set(urls.map((u) => new URL(u).origin));
  const ours = (url) => origins.has(url.origin) && url.pathname in STATIC;
  await context.route(ours, (route) =>
    route.request().method() === "GET" ? route.fulfill({ path: join(webDist, STATIC[new URL(route.request().url()).pathname]) }) : route.fallback());
  // A page fulfilled here has no server address, so Chromium puts it in the public address
  // space and its calls to the other nodes (127.0.0.1) need the Local Network Access permission
  // ("Permission was denied for this request to access the `loopback` address space").
  // A page really served by a node is on loopback itself and needs no such grant.
  await context.grantPermissions(["local-network-access"]);
  log(`static files from ${webDist} (KIZUNA_WEB_DIST)`);
}

function watch(page, label) {
  page.on("console", (m) => {
    if (m.type() !== "error" && m.type() !== "warning") return;
    const where = m.location()?.url;
    log(`(${label}) console.${m.type()}: ${m.text()}${where ? ` [${where}]` : ""}`);
  });
  page.on("pageerror", (e) => log(`(${label}) page error: ${e.message}`));
  page.on("requestfailed", (r) => log(`(${label}) request failed: ${r.method()} ${r.url()}: ${r.failure()?.errorText}`));
  page.on("response", (r) => {
    if (r.status() >= 400) log(`(${label}) HTTP ${r.status()}: ${r.request().method()} ${r.url()}`);
  });
}

const safe = (name) => name.replace(/[^\p{L}\p{N}._-]+/gu, "-");

/** Saves a PNG of the page as KIZUNA_SCREENSHOTS/<name>.png; returns its path. */
export async function shot(page, name) {
  const path = join(screenshots, `${safe(name.replace(/\.png$/, ""))}.png`);
  await page.screenshot({ path, fullPage: false });
  log(`screenshot ${path}`);
  return path;
}

let stdinLines;
/**
 * Asks the Rust harness to `action` (stop, restart, isolate, heal) the node serving `url` (one
 * of `urls`) and returns once done: `@@<action> <url>` on stdout, then one line on stdin:
 * `done`, or `error <why>`.
 */
async function nodeAction(action, url) {
  stdinLines ??= createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  log(`${action} ${url}`);
  process.stdout.write(`@@${action} ${url}\n`);
  const { value, done } = await stdinLines.next();
  if (done) throw new Error(`${action} ${url}: the harness closed stdin without answering`);
  if (value.trim() !== "done") throw new Error(`${action} ${url}: the harness answered ${JSON.stringify(value)}`);
  log(`${action} ${url}: done`);
}

/** Stops the node (its ports close). */
export const stopNode = (url) => nodeAction("stop", url);
/** Starts a stopped node again, from its data, on its old ports. */
export const restartNode = (url) => nodeAction("restart", url);
/** Cuts the node's Raft links to the others (its public port still answers): needs the cut-off hub. */
export const isolateNode = (url) => nodeAction("isolate", url);
/** Reconnects an isolated node. */
export const healNode = (url) => nodeAction("heal", url);

/**
 * The current code of an authenticator app for `base32` (RFC 6238: HMAC-SHA1, 6 digits, 30 s
 * steps), `stepsAhead` steps from now (the hub accepts one step either side, and each step once).
 */
export function totpCode(base32, stepsAhead = 0) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const c of base32.replace(/=+$/, "").toUpperCase()) bits += alphabet.indexOf(c).toString(2).padStart(5, "0");
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 30_000) + stepsAhead));
  const mac = createHmac("sha1", key).update(counter).digest();
  const offset = mac[mac.length - 1] & 0xf;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000).padStart(6, "0");
}

const AXE = readFileSync(new URL("../node_modules/axe-core/axe.min.js", import.meta.url), "utf8");

/**
 * No serious or critical accessibility violation on the page as it is now (axe-core, WCAG 2.1
 * A and AA rules: labels, names, contrast, landmarks...): fails naming each rule and element.
 * axe runs through the DevTools protocol, which the page's Content-Security-Policy does not
 * govern, so the policy stays as users get it.
 */
export async function expectAccessible(page, what) {
  await page.evaluate(AXE);
  const violations = await page.evaluate(async () => {
    const result = await globalThis.axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] } });
    return result.violations
      .filter((v) => v.impact === "serious" || v.impact === "critical")
      .map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(" | ")}`);
  });
  if (violations.length > 0) throw new Error(`accessibility of ${what}:\n  ${violations.join("\n  ")}`);
  log(`accessible: ${what}`);
}

let stepNo = 0;
/**
 * Runs one step of the story, logged with its duration. When it throws: a screenshot and an
 * HTML excerpt of every open page (FAILED-<n>-<step>-<i>.png/.html), then the error again,
 * named after the step.
 */
export async function step(name, fn) {
  const n = ++stepNo;
  const started = Date.now();
  log(`▶ ${n}. ${name}`);
  try {
    const result = await fn();
    log(`✔ ${n}. ${name} (${Date.now() - started} ms)`);
    return result;
  } catch (e) {
    log(`✘ ${n}. ${name} (${Date.now() - started} ms): ${e?.message ?? e}`);
    await evidence(`FAILED-${n}-${name}`);
    throw new Error(`step ${n} "${name}" failed: ${e?.message ?? e}`, { cause: e });
  }
}

async function evidence(prefix) {
  let i = 0;
  for (const context of contexts) {
    for (const page of context.pages()) {
      i += 1;
      const base = join(screenshots, safe(`${prefix}-${i}`));
      try {
        await page.screenshot({ path: `${base}.png`, timeout: 5000 });
        const html = await page.content();
        writeFileSync(`${base}.html`, html);
        const text = await page.evaluate(() => document.body?.innerText ?? "").catch(() => "");
        log(`page ${i} ${page.url()}\n  screenshot ${base}.png\n  html ${base}.html\n  text: ${excerpt(text, 1500)}`);
      } catch (e) {
        log(`page ${i} ${page.url()}: no evidence (${e.message})`);
      }
    }
  }
}

function excerpt(s, max) {
  const flat = s.replace(/\s+/g, " ").trim();
  return flat.length > max ? `${flat.slice(0, max)}…` : flat;
}

/**
 * Waits until `locator` (its first match) shows `text` (a substring, or a RegExp); fails with
 * what it showed instead, and how many elements matched.
 */
export async function expectText(locator, text, { timeout = 10_000 } = {}) {
  const deadline = Date.now() + timeout;
  const matches = (s) => (text instanceof RegExp ? text.test(s) : s.includes(text));
  let seen = [];
  for (;;) {
    seen = await locator.allInnerTexts().catch(() => []);
    if (seen.some(matches)) return;
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const shown = seen.length === 0
    ? "no element matched"
    : `${seen.length} element(s) showed: ${seen.slice(0, 5).map((s) => JSON.stringify(excerpt(s, 200))).join(", ")}`;
  throw new Error(`expected ${locator} to show ${text instanceof RegExp ? text : JSON.stringify(text)} within ${timeout} ms; ${shown}`);
}

/**
 * The fonts Chromium really drew the text of `locator` (its first match) with, from the
 * DevTools protocol: [{familyName, glyphCount}].
 */
export async function renderedFonts(page, locator) {
  const cdp = await page.context().newCDPSession(page);
  try {
    await cdp.send("DOM.enable");
    await cdp.send("CSS.enable");
    const handle = await locator.first().elementHandle();
    const marker = `kizuna-fonts-${Date.now()}`;
    await handle.evaluate((el, m) => el.setAttribute("data-fonts-probe", m), marker);
    const { root } = await cdp.send("DOM.getDocument", { depth: -1 });
    const { nodeId } = await cdp.send("DOM.querySelector", { nodeId: root.nodeId, selector: `[data-fonts-probe="${marker}"]` });
    const { fonts } = await cdp.send("CSS.getPlatformFontsForNode", { nodeId });
    await handle.evaluate((el) => el.removeAttribute("data-fonts-probe"));
    return fonts;
  } finally {
    await cdp.detach().catch(() => {});
  }
}

/**
 * Japanese text in `locator` is drawn with a CJK font (not tofu): Chromium reports the font it
 * used for the glyphs, and it must be a Japanese-capable one (fonts-noto-cjk here).
 */
export async function expectJapaneseGlyphs(page, locator) {
  const fonts = await renderedFonts(page, locator);
  const names = fonts.map((f) => `${f.familyName} (${f.glyphCount} glyphs)`).join(", ");
  log(`fonts drawn: ${names}`);
  if (!fonts.some((f) => /CJK|Noto Sans JP|Noto Serif JP|Hiragino|Yu Gothic|Meiryo|IPA|Takao|VL Gothic/i.test(f.familyName))) {
    throw new Error(`Japanese text was drawn without a CJK font (${names || "no font"}): install fonts-noto-cjk (ops/scripts/setup-browser.sh)`);
  }
  return fonts;
}

/**
 * The story's frame: launches the browser, runs `story(browser)`, closes it; on failure prints
 * the error and exits non-zero (the Rust harness shows the whole log).
 */
export async function main(story) {
  let browser;
  try {
    browser = await launch();
    await story(browser);
    log("story complete");
  } catch (e) {
    log(`FAILED: ${e?.stack ?? e}`);
    process.exitCode = 1;
  } finally {
    await browser?.close().catch(() => {});
    // stdin stays open for the line protocol; let the process end anyway.
    process.stdin.destroy();
  }
}
