// The browser client's story, run by node/tests/browser.rs in Debian's Chromium against a
// seeded 3-node TLS hub: a visiting nurse on a phone and a doctor at a desktop work on one
// patient, live, while the node both pages came from stops; then the error paths. The
// screenshots it saves are the README's (make screenshots).

import { readFileSync } from "node:fs";
import { deflateSync } from "node:zlib";
import { DESKTOP, PHONE, expectAccessible, expectJapaneseGlyphs, expectText, log, main, newContext, password, shot, step, stopNode, totpCode, urls } from "./lib.mjs";

const PATIENT = "山田 花子";
const NURSE = "vn.suzuki";
const DOCTOR = { login: "dr.sato", name: "佐藤 健一" };
// dr.sato is the admin of 宇都宮在宅クリニック, where 小林 直樹 is the clerk.
const CLERK = { login: "clerk.kobayashi", name: "小林 直樹" };
// The disaster office (事務局) of the demo hub.
const OPERATOR = "jimukyoku";
const REFUSED = "ログインIDまたはパスワードが正しくありません。";
const ENDED = "ログインが終了しました";
const stamp = () => String(Date.now() % 1_000_000);

async function logIn(page, login, pass = password) {
  await page.getByLabel("ログインID").fill(login);
  await page.getByLabel("パスワード").fill(pass);
  await page.getByRole("button", { name: "ログイン" }).click();
}

async function openPage(context, url) {
  const page = await context.newPage();
  // Deleting a post or stopping an account asks first: the story says yes.
  page.on("dialog", (d) => d.accept());
  await page.goto(`${url}/`);
  return page;
}

const post = (page, text) => page.locator("li.post", { hasText: text });
const composer = (page) => page.getByLabel("投稿内容");
const send = (page) => page.getByRole("button", { name: "投稿", exact: true }).click();
const alert = (page) => page.getByRole("alert");
const status = (page) => page.getByRole("status");

async function write(page, text) {
  await composer(page).fill(text);
  await send(page);
  await post(page, text).first().waitFor();
}

async function openPatient(page) {
  await page.getByRole("link", { name: new RegExp(PATIENT) }).first().click();
  await expectText(page.getByRole("heading", { level: 1 }), PATIENT);
}

// Files made here, byte for byte known: a small PNG photo (a colour gradient, so the hub's
// thumbnailer has real pixels to scale) and a one-page PDF.
function crc32(bytes) {
  let crc = 0xffffffff;
  for (const b of bytes) {
    crc ^= b;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? 0xedb88320 ^ (crc >>> 1) : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

function pngChunk(type, data) {
  const body = Buffer.concat([Buffer.from(type, "ascii"), data]);
  const head = Buffer.alloc(4);
  head.writeUInt32BE(data.length);
  const tail = Buffer.alloc(4);
  tail.writeUInt32BE(crc32(body));
  return Buffer.concat([head, body, tail]);
}

function png(width, height) {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bits per channel
  ihdr[9] = 2; // RGB
  const rows = [];
  for (let y = 0; y < height; y++) {
    const row = Buffer.alloc(1 + width * 3); // filter byte 0, then pixels
    for (let x = 0; x < width; x++) row.set([(x * 255) / width, (y * 255) / height, 160], 1 + x * 3);
    rows.push(row);
  }
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return Buffer.concat([signature, pngChunk("IHDR", ihdr), pngChunk("IDAT", deflateSync(Buffer.concat(rows))), pngChunk("IEND", Buffer.alloc(0))]);
}

/** A one-page PDF showing `text`; `padding` bytes of comment lines make it as large as a scan. */
function pdf(text, padding = 0) {
  const content = `BT /F1 14 Tf 20 50 Td (${text}) Tj ET`;
  const objects = [
    "<< /Type /Catalog /Pages 2 0 R >>",
    "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
    "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 100] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
    `<< /Length ${content.length} >>\nstream\n${content}\nendstream`,
    "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
  ];
  let out = "%PDF-1.4\n";
  for (let line = 0; line * 64 < padding; line++) out += `%${String(line).padStart(8, "0")}${"kizuna-".repeat(8)}${"x".repeat(6)}\n`;
  const offsets = objects.map((body, i) => {
    const at = out.length;
    out += `${i + 1} 0 obj\n${body}\nendobj\n`;
    return at;
  });
  const xref = out.length;
  out += `xref\n0 ${objects.length + 1}\n0000000000 65535 f \n${offsets.map((o) => `${String(o).padStart(10, "0")} 00000 n \n`).join("")}`;
  out += `trailer\n<< /Size ${objects.length + 1} /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n`;
  return Buffer.from(out, "latin1");
}

/** The image has been fetched and decoded (its pixels are there, not a broken icon). */
async function expectLoadedImage(img) {
  await img.waitFor();
  const width = await img.evaluate(async (el) => {
    await el.decode().catch(() => {});
    return el.naturalWidth;
  });
  if (!(width > 0)) throw new Error(`the image ${await img.getAttribute("alt")} did not load`);
}

const escapeRegExp = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

await main(async (browser) => {
  const nurse = await openPage(await newContext(browser, PHONE), urls[0]);
  let pharmacist;
  const doctor = await openPage(await newContext(browser, DESKTOP), urls[0]);

  await step("a wrong password and an unknown login are refused alike", async () => {
    await expectJapaneseGlyphs(nurse, nurse.getByRole("button", { name: "ログイン" }));
    await shot(nurse, "login-phone");
    await expectAccessible(nurse, "the login page");
    await logIn(nurse, NURSE, "not-the-password");
    await expectText(alert(nurse), REFUSED);
    await logIn(nurse, "nobody.at.all", "not-the-password");
    await expectText(alert(nurse), REFUSED);
  });

  await step("the nurse logs in and sees her patients, newest first, unread highlighted", async () => {
    await logIn(nurse, NURSE);
    await expectText(nurse.getByRole("heading", { level: 1 }), "患者一覧");
    await nurse.getByRole("link", { name: new RegExp(PATIENT) }).first().waitFor();
    await nurse.locator("li.room.unread").first().getByLabel(/未読 \d+ 件/).first().waitFor();
    await shot(nurse, "patients-phone");
    await expectAccessible(nurse, "the patient list");
    // The page's files are kept by its service worker (src/sw.js) from now on.
    const kept = await nurse.evaluate(() =>
      Promise.race([navigator.serviceWorker.ready.then(() => "ready"), new Promise((r) => setTimeout(() => r("no service worker"), 10_000))]),
    );
    if (kept !== "ready") throw new Error(`the page's service worker is not active: ${kept}`);
  });

  await step("the doctor logs in at a desktop", async () => {
    await logIn(doctor, DOCTOR.login);
    await expectText(doctor.getByRole("heading", { level: 1 }), "患者一覧");
  });

  const first = `本日訪問しました。SpO2 95%、呼吸苦なし。${stamp()}`;
  await step("the nurse opens the timeline and posts in Japanese", async () => {
    await openPatient(nurse);
    await write(nurse, first);
    await expectText(post(nurse, first), "鈴木 早苗");
    await shot(nurse, "timeline-phone");
    await expectAccessible(nurse, "a timeline");
  });

  await step("the doctor's patient list shows it live, with its unread count", async () => {
    const entry = doctor.locator("li.room", { hasText: PATIENT }).first();
    await expectText(entry, first.slice(0, 12));
    await entry.getByLabel(/未読 \d+ 件/).first().waitFor();
    await shot(doctor, "patients-desktop");
  });

  await step("the doctor acknowledges it with 見ました", async () => {
    await openPatient(doctor);
    await post(doctor, first).getByRole("button", { name: "見ました" }).click();
    await expectText(post(doctor, first), "見ました 1人");
    await shot(doctor, "timeline-desktop");
  });

  await step("the nurse sees who acknowledged, without reloading", async () => {
    await expectText(post(nurse, first), "見ました 1人");
    await post(nurse, first).getByText("見ました 1人").click();
    await expectText(post(nurse, first), DOCTOR.name);
  });

  await step("an empty post is refused with a clear message", async () => {
    await composer(nurse).fill("");
    await send(nurse);
    await expectText(alert(nurse), "本文を入力してください");
  });

  await step("a post the hub refuses keeps its text and says why", async () => {
    const tooLong = "あ".repeat(10_001);
    await composer(nurse).fill(tooLong);
    await send(nurse);
    await expectText(alert(nurse), "入力内容を確認してください");
    if ((await composer(nurse).inputValue()) !== tooLong) throw new Error("the refused text is gone from the composer");
    await composer(nurse).fill("");
  });

  const photo = { name: `褥瘡の写真-${stamp()}.png`, mimeType: "image/png", buffer: png(96, 64) };
  const record = { name: `訪問記録-${stamp()}.pdf`, mimeType: "application/pdf", buffer: pdf(`Kizuna visit record ${stamp()}`) };
  const withFiles = `写真と訪問記録を添付します。${stamp()}`;
  const uploads = (page) => page.locator("ul.uploads");
  await step("the nurse attaches a photo and a PDF, sees them uploaded, and posts them", async () => {
    await nurse.getByLabel("ファイルを添付").setInputFiles([photo, record]);
    for (const file of [photo, record]) await expectText(uploads(nurse).locator("li", { hasText: file.name }), "添付済み");
    await expectAccessible(nurse, "the composer with attachments");
    await composer(nurse).fill(withFiles);
    await send(nurse);
    const posted = post(nurse, withFiles).first();
    await expectLoadedImage(posted.getByRole("img", { name: photo.name }));
    await expectText(posted.getByRole("button", { name: new RegExp(escapeRegExp(record.name)) }), /\(\d+(\.\d)? (B|KB)\)/);
    await uploads(nurse).waitFor({ state: "detached" });
    await shot(nurse, "attachments-phone");
    await expectAccessible(nurse, "a post with attachments");
  });

  await step("the doctor sees them live, opens the photo by keyboard, and downloads the PDF byte for byte", async () => {
    const seen = post(doctor, withFiles).first();
    await seen.waitFor({ timeout: 20_000 });
    await expectLoadedImage(seen.getByRole("img", { name: photo.name }));
    await seen.getByRole("button", { name: photo.name }).focus();
    await doctor.keyboard.press("Enter");
    const viewer = doctor.getByRole("dialog", { name: photo.name });
    await expectLoadedImage(viewer.getByRole("img", { name: photo.name }));
    await shot(doctor, "photo-viewer-desktop");
    await expectAccessible(doctor, "the photo viewer");
    await doctor.keyboard.press("Escape");
    await viewer.waitFor({ state: "detached" });
    const [download] = await Promise.all([
      doctor.waitForEvent("download"),
      seen.getByRole("button", { name: new RegExp(escapeRegExp(record.name)) }).click(),
    ]);
    if (download.suggestedFilename() !== record.name) throw new Error(`the download is named ${download.suggestedFilename()}`);
    const bytes = readFileSync(await download.path());
    if (!bytes.equals(record.buffer)) throw new Error(`the downloaded PDF differs: ${bytes.length} bytes, ${record.buffer.length} uploaded`);
  });

  await step("a file the hub does not accept is refused in Japanese, and nothing is posted", async () => {
    const newest = await nurse.locator("li.post").first().getAttribute("data-seq");
    const script = { name: "setup.sh", mimeType: "application/x-sh", buffer: Buffer.from("#!/bin/sh\necho hello\n") };
    await nurse.getByLabel("ファイルを添付").setInputFiles(script);
    const row = uploads(nurse).locator("li", { hasText: script.name });
    await expectText(row.getByRole("alert"), "添付できませんでした: この種類のファイルは添付できません");
    await shot(nurse, "attachment-refused-phone");
    await send(nurse);
    await expectText(alert(nurse), "添付できなかったファイルは取り除いてください");
    await expectAccessible(nurse, "a refused attachment");
    await row.getByRole("button", { name: `${script.name} を取り除く` }).click();
    await row.waitFor({ state: "detached" });
    await send(nurse);
    await expectText(alert(nurse), "本文を入力してください");
    const still = await nurse.locator("li.post").first().getAttribute("data-seq");
    if (still !== newest) throw new Error(`a post was made (newest seq ${newest} → ${still})`);
  });

  await step("the resource map finds a facility and opens its page", async () => {
    await doctor.getByRole("link", { name: "資源マップ" }).click();
    await doctor.getByLabel("サービス").fill("訪問リハ");
    await doctor.getByRole("button", { name: "検索" }).click();
    await doctor.getByRole("link", { name: /ひばり訪問看護ステーション/ }).click();
    await expectText(doctor.locator("article"), "鈴木 早苗");
    await shot(doctor, "facility-desktop");
    await expectAccessible(doctor, "a facility page");
    await doctor.goBack();
    await doctor.goBack();
  });

  await step("a pharmacist turns the second factor on with the QR code, logs out, and logs in with a code", async () => {
    pharmacist = await openPage(await newContext(browser, PHONE), urls[1]);
    await logIn(pharmacist, "ph.tanaka");
    await pharmacist.getByRole("link", { name: "設定" }).click();
    await pharmacist.getByRole("button", { name: "設定を始める" }).click();
    await pharmacist.getByRole("img", { name: "2段階認証のQRコード" }).waitFor();
    const secret = (await pharmacist.locator("code").innerText()).trim();
    await pharmacist.getByLabel("認証アプリの6桁のコード").fill(totpCode(secret));
    await pharmacist.getByRole("button", { name: "有効にする" }).click();
    await expectText(pharmacist.getByLabel("2段階認証"), "有効です");
    await shot(pharmacist, "second-factor-phone");
    await expectAccessible(pharmacist, "the settings");
    await pharmacist.getByRole("button", { name: "ログアウト", exact: true }).click();
    await expectText(status(pharmacist), "ログアウトしました");
    await logIn(pharmacist, "ph.tanaka");
    await expectText(alert(pharmacist), "2段階認証が有効です");
    // Each code works once: the next step's (the hub accepts one step ahead).
    await pharmacist.getByLabel("認証コード（6桁）").fill(totpCode(secret, 1));
    await pharmacist.getByRole("button", { name: "ログイン" }).click();
    await expectText(pharmacist.getByTestId("me"), "田中 誠");
  });

  await step("the doctor sends one request to two facilities; the nurse's station accepts it; he sees each answer", async () => {
    await doctor.getByRole("link", { name: "資源マップ" }).click();
    await doctor.getByRole("button", { name: "検索" }).click();
    for (const name of ["ひばり訪問看護ステーション", "みどり薬局"]) {
      await doctor.locator("li.room", { hasText: name }).getByLabel("リクエスト先に選ぶ").check();
    }
    const title = `退院後の訪問のご相談 ${stamp()}`;
    await doctor.getByLabel("件名").fill(title);
    await doctor.getByLabel("内容").fill("来週退院予定の方の訪問看護・訪問薬剤管理をお願いできますか。");
    await doctor.getByRole("button", { name: "送信" }).click();
    await expectText(doctor.locator("article"), "みどり薬局：未回答");
    await nurse.getByRole("link", { name: "リクエスト" }).click();
    await nurse.getByRole("link", { name: new RegExp(title) }).click();
    await nurse.getByLabel("回答のメモ（任意）").fill("月曜から伺えます");
    await nurse.getByRole("button", { name: "受諾" }).click();
    await expectText(nurse.locator("article"), "ひばり訪問看護ステーション：受諾");
    // The sender's page follows the answer live.
    await expectText(doctor.locator("article"), "ひばり訪問看護ステーション：受諾");
    await expectText(doctor.locator("article"), "みどり薬局：未回答");
    await shot(doctor, "request-desktop");
  });

  await step("a facility admin updates its map entry, and the map finds it by the new service", async () => {
    await doctor.getByRole("link", { name: "資源マップ" }).click();
    await doctor.getByLabel("キーワード").fill("宇都宮在宅クリニック");
    await doctor.getByRole("button", { name: "検索" }).click();
    await doctor.getByRole("link", { name: /宇都宮在宅クリニック/ }).click();
    await doctor.getByLabel("サービス（「、」区切り）").fill("在宅酸素、看取り、24時間対応、緩和ケア");
    await doctor.getByRole("button", { name: "保存" }).click();
    await expectText(status(doctor), "施設情報を更新しました");
    await doctor.getByRole("link", { name: "資源マップ" }).click();
    await doctor.getByLabel("サービス", { exact: true }).fill("緩和ケア");
    await doctor.getByRole("button", { name: "検索" }).click();
    await expectText(doctor.getByRole("list", { name: "施設" }), "宇都宮在宅クリニック");
    // Back to the patient's timeline for what follows.
    await nurse.getByRole("link", { name: "患者", exact: true }).click();
    await openPatient(nurse);
  });

  await step("a connection request arrives live; the nurse accepts and their 1:1 room opens", async () => {
    await nurse.getByRole("link", { name: "つながり" }).click();
    await expectText(nurse.getByRole("heading", { level: 1 }), "つながり");
    await pharmacist.getByRole("link", { name: "資源マップ" }).click();
    await pharmacist.getByLabel("キーワード").fill("ひばり");
    await pharmacist.getByRole("button", { name: "検索" }).click();
    await pharmacist.getByRole("link", { name: /ひばり訪問看護ステーション/ }).click();
    await pharmacist.locator("li", { hasText: "鈴木 早苗" }).getByRole("button", { name: "つながる" }).click();
    await expectText(status(pharmacist), "つながり申請を送りました");
    const request = nurse.locator(".card", { hasText: "つながり申請が届いています" });
    await expectText(request, "田中 誠");
    await request.getByRole("button", { name: "承認" }).click();
    await expectText(nurse.getByRole("heading", { level: 1 }), "田中 誠");
    await nurse.getByRole("link", { name: "患者", exact: true }).click();
    await openPatient(nurse);
  });

  await step("the pharmacist turns on e-mail notices with quiet hours; they are kept", async () => {
    await pharmacist.getByRole("link", { name: "設定" }).click();
    const form = pharmacist.getByRole("form", { name: "お知らせ" });
    await form.getByLabel("メールアドレス").fill("tanaka@midori-pharmacy.example.jp");
    await form.getByLabel("メールで知らせる").check();
    await form.getByLabel("送らない時間帯を設定する").check();
    await form.getByLabel("開始").selectOption("22");
    await form.getByLabel("終了").selectOption("7");
    await form.getByRole("button", { name: "保存" }).click();
    await expectText(status(pharmacist), "お知らせの設定を保存しました");
    await pharmacist.reload();
    await expectText(pharmacist.getByRole("form", { name: "お知らせ" }).getByLabel("終了").locator("option:checked"), "7時");
    if ((await pharmacist.getByLabel("メールアドレス").inputValue()) !== "tanaka@midori-pharmacy.example.jp") {
      throw new Error("the address was not kept");
    }
  });

  const afterStop = `ノード停止後の投稿です。${stamp()}`;
  await step("the node both pages came from stops: both carry on against another node", async () => {
    await stopNode(urls[0]);
    await write(nurse, afterStop);
    await expectText(status(nurse), "接続先のサーバーを切り替えました");
    await doctor.getByRole("link", { name: "患者" }).click();
    await openPatient(doctor);
    await expectText(post(doctor, afterStop), afterStop, { timeout: 20_000 });
    await shot(nurse, "failover-phone");
    // Reopening the page while its own node is down: the app comes from the browser's copy and
    // reads from the nodes it learnt.
    await nurse.reload();
    await expectText(nurse.getByTestId("me"), "鈴木 早苗");
    await post(nurse, afterStop).first().waitFor();
  });

  await step("with that node still down, a file is uploaded, posted and downloaded through the others", async () => {
    const later = { name: `退院時サマリー-${stamp()}.pdf`, mimeType: "application/pdf", buffer: pdf(`Kizuna discharge summary ${stamp()}`) };
    await nurse.getByLabel("ファイルを添付").setInputFiles(later);
    await expectText(uploads(nurse).locator("li", { hasText: later.name }), "添付済み", { timeout: 20_000 });
    await send(nurse);
    const name = new RegExp(escapeRegExp(later.name));
    await post(nurse, later.name).first().waitFor();
    const seen = doctor.locator("li.post", { has: doctor.getByRole("button", { name }) }).first();
    await seen.waitFor({ timeout: 20_000 });
    const [download] = await Promise.all([doctor.waitForEvent("download"), seen.getByRole("button", { name }).click()]);
    if (!readFileSync(await download.path()).equals(later.buffer)) throw new Error("the PDF downloaded after the stop differs");
  });

  await step("an upload cut off mid-file carries on at another node and arrives whole", async () => {
    const scan = { name: `検査結果-${stamp()}.pdf`, mimeType: "application/pdf", buffer: pdf(`Kizuna lab results ${stamp()}`, 2 << 20) };
    // The third part's node "refuses the connection": the page moves to another node, which
    // holds none of the file and says so (received 0); the upload starts over there.
    const pattern = "**/kizuna.attachments.v1.AttachmentService/UploadPart";
    const origins = [];
    const cut = (route) => {
      origins.push(new URL(route.request().url()).origin);
      return origins.length === 3 ? route.abort("connectionrefused") : route.fallback();
    };
    await nurse.route(pattern, cut);
    try {
      await nurse.getByLabel("ファイルを添付").setInputFiles(scan);
      await expectText(uploads(nurse).locator("li", { hasText: scan.name }), "添付済み", { timeout: 30_000 });
    } finally {
      await nurse.unroute(pattern, cut);
    }
    if (new Set(origins).size < 2) throw new Error(`the upload never moved to another node: ${origins.join(", ")}`);
    await send(nurse);
    const name = new RegExp(escapeRegExp(scan.name));
    const seen = doctor.locator("li.post", { has: doctor.getByRole("button", { name }) }).first();
    await seen.waitFor({ timeout: 20_000 });
    const [download] = await Promise.all([doctor.waitForEvent("download"), seen.getByRole("button", { name }).click()]);
    if (!readFileSync(await download.path()).equals(scan.buffer)) throw new Error("the PDF uploaded across two nodes differs");
    log(`upload parts went to ${origins.join(", ")}`);
  });

  await step("a session ended from another device, or expired, is logged out, saying so", async () => {
    const other = await openPage(await newContext(browser, DESKTOP), urls[1]);
    await logIn(other, NURSE);
    await other.getByRole("link", { name: "設定" }).click();
    const stopButtons = other.getByRole("button", { name: "ログアウトさせる" });
    await stopButtons.first().waitFor();
    const devices = await stopButtons.count();
    await stopButtons.first().click();
    // The device is gone from the list once the hub has ended its session.
    for (let waited = 0; (await stopButtons.count()) !== devices - 1; waited += 100) {
      if (waited > 10_000) throw new Error("the ended device is still listed");
      await other.waitForTimeout(100);
    }
    // The page learns it on its next call, or at once when its live stream ends first.
    const menu = nurse.getByRole("link", { name: "患者", exact: true });
    if (await menu.isVisible()) await menu.click({ timeout: 5_000 }).catch(() => log("already logged out"));
    await expectText(status(nurse), ENDED);
    await shot(other, "settings-desktop");
    // An expired session reads the same to the page as a token the hub no longer knows.
    await other.evaluate(() => localStorage.setItem("kizuna.token", "a-session-that-has-expired"));
    await other.reload();
    await expectText(status(other), ENDED);
  });

  await step("a facility admin invites a colleague, who registers, is approved and logs in", async () => {
    await doctor.getByRole("link", { name: "設定" }).click();
    await doctor.getByRole("button", { name: "招待コードを発行" }).click();
    const code = (await doctor.getByTestId("invitation-code").innerText()).trim();
    const newcomer = await openPage(await newContext(browser, PHONE), urls[1]);
    await newcomer.getByRole("link", { name: /新規登録/ }).click();
    await newcomer.getByLabel("招待コード").fill(code);
    await newcomer.getByLabel("ログインID（半角英数字）").fill("ns.kimura");
    await newcomer.getByLabel("氏名").fill("木村 花");
    await newcomer.getByLabel("職種").selectOption({ label: "看護師" });
    await newcomer.getByLabel("パスワード（12文字以上）").fill("kimura-password-2026");
    await newcomer.getByLabel("パスワード（確認）").fill("kimura-password-2026");
    await newcomer.getByRole("button", { name: "登録" }).click();
    await expectText(status(newcomer), "施設の管理者が承認すると");
    await logIn(newcomer, "ns.kimura", "kimura-password-2026");
    await expectText(alert(newcomer), REFUSED);
    // The doctor's staff list shows her waiting; he approves.
    await doctor.getByRole("link", { name: "患者" }).click();
    await doctor.getByRole("link", { name: "設定" }).click();
    const row = doctor.locator("li", { hasText: "木村 花" });
    await expectText(row, "承認待ち");
    await row.getByRole("button", { name: "承認" }).click();
    await expectText(row.locator(".tag"), "利用中");
    await logIn(newcomer, "ns.kimura", "kimura-password-2026");
    await expectText(newcomer.getByTestId("me"), "木村 花");
  });

  await step("she forgets her password: the admin issues one, and she replaces it before anything else", async () => {
    const row = doctor.locator("li", { hasText: "木村 花" });
    await row.getByRole("button", { name: "パスワードを発行" }).click();
    const issued = (await doctor.getByTestId("issued-password").innerText()).trim();
    const kimura = await openPage(await newContext(browser, PHONE), urls[2]);
    await logIn(kimura, "ns.kimura", issued);
    // Only the change of password is on offer: no menu, no patients.
    await expectText(status(kimura), "発行したもの");
    if ((await kimura.getByRole("link", { name: "患者" }).count()) !== 0) throw new Error("the menu shows before the change");
    await kimura.getByLabel("現在のパスワード").fill(issued);
    await kimura.getByLabel("新しいパスワード（12文字以上）").fill("kimura-own-2026-winter");
    await kimura.getByLabel("新しいパスワード（確認）").fill("kimura-own-2026-winter");
    await kimura.getByRole("button", { name: "変更" }).click();
    await expectText(kimura.getByTestId("me"), "木村 花");
  });

  await step("a doctor off the team opens the patient's timeline by emergency access, stating why; it is read-only and says so", async () => {
    await doctor.getByRole("link", { name: "患者" }).click();
    await openPatient(doctor);
    const timeline = doctor.url();
    const kato = await openPage(await newContext(browser, DESKTOP), urls[1]);
    await logIn(kato, "dr.kato");
    await expectText(kato.getByTestId("me"), "加藤 美和");
    await kato.goto(`${urls[1]}/${new URL(timeline).hash}`);
    const form = kato.getByRole("form", { name: "緊急アクセス" });
    await form.getByLabel(/理由/).fill("救急搬送。人工呼吸器の設定と服薬内容を確認するため");
    await form.getByRole("button", { name: "緊急アクセスを開く" }).click();
    await kato.locator(".banner", { hasText: "緊急アクセス中" }).waitFor();
    await kato.getByRole("list", { name: "タイムライン" }).locator("li.post").first().waitFor();
    if ((await composer(kato).count()) !== 0) throw new Error("a composer under emergency access");
    await doctor.getByRole("link", { name: "設定" }).click();
  });

  await step("a stopped account is logged out", async () => {
    const clerk = await openPage(await newContext(browser, PHONE), urls[1]);
    await logIn(clerk, CLERK.login);
    await expectText(clerk.getByRole("heading", { level: 1 }), "患者一覧");
    const row = doctor.locator("li", { hasText: CLERK.name });
    await row.getByRole("button", { name: "利用停止" }).click();
    // Stopped once the hub says so: the button goes, the state reads 利用停止.
    await row.getByRole("button", { name: "利用停止" }).waitFor({ state: "detached" });
    await expectText(row.locator(".tag"), "利用停止");
    // The next event on the hub ends the stopped account's live stream: its page notices.
    await doctor.getByRole("link", { name: "患者" }).click();
    await openPatient(doctor);
    await write(doctor, `小林さんのアカウントを停止しました。${stamp()}`);
    await expectText(status(clerk), ENDED);
  });

  // 災害モード: the operator declares a disaster; the team records their patient's safety; the
  // board puts her first; the disaster office exports it; the disaster ends.
  const disaster = `令和8年台風第19号 ${stamp()}`;
  const banner = (page) => page.getByTestId("disaster-banner");
  const patientRows = (page) => page.getByRole("list", { name: "安否の一覧" }).locator("li[data-patient]");
  let operator;
  await step("the operator declares a disaster for 宇都宮市 and 鹿沼市; every page shows its banner", async () => {
    operator = await openPage(await newContext(browser, DESKTOP), urls[1]);
    await logIn(operator, OPERATOR);
    await expectText(operator.getByRole("heading", { level: 1 }), "患者一覧");
    await operator.getByRole("link", { name: "災害", exact: true }).click();
    const form = operator.getByRole("form", { name: "災害を宣言" });
    await form.getByLabel("災害の名称").fill(disaster);
    await form.getByLabel(/対象の市町村/).fill("宇都宮市、鹿沼市");
    await form.getByRole("button", { name: "災害を宣言する" }).click();
    await expectText(operator.getByRole("heading", { level: 2 }), disaster);
    await expectText(banner(operator), disaster);
    // The others' pages hear of it live (disaster_changed).
    await expectText(banner(doctor), `${disaster}（宇都宮市・鹿沼市）`);
    await expectText(patientRows(operator).first(), PATIENT);
    await expectAccessible(operator, "the disaster board");
  });

  let takahashi;
  await step("a nurse logging in while it is in force lands on the board, and reports her station's status", async () => {
    takahashi = await openPage(await newContext(browser, PHONE), urls[2]);
    await logIn(takahashi, "vn.takahashi");
    await expectText(takahashi.getByRole("heading", { level: 1 }), "災害ボード");
    await expectText(takahashi.getByRole("heading", { level: 2 }), disaster);
    const station = takahashi.getByRole("list", { name: "施設の状況の一覧" }).locator("li[data-facility]", { hasText: "ひばり訪問看護ステーション" });
    await station.getByRole("button", { name: "状況を報告" }).click();
    const form = station.getByRole("form", { name: "ひばり訪問看護ステーションの状況を報告" });
    await form.getByLabel("稼働").selectOption({ label: "一部稼働" });
    await form.getByLabel("電気").selectOption({ label: "なし" });
    await form.getByLabel(/受け入れ可能数/).fill("2");
    await form.getByLabel("避難者を受け入れ可").check();
    await form.getByRole("button", { name: "状況を報告する" }).click();
    await expectText(station.getByRole("status"), "記録しました");
    await expectText(station, "一部稼働・電気 なし");
    await takahashi.evaluate(() => window.scrollTo(0, 0));
    await shot(takahashi, "disaster-board-phone");
    await expectAccessible(takahashi, "the disaster board on a phone");
  });

  await step("the doctor records his patient as needing oxygen from the board; she comes first, 要支援・酸素", async () => {
    await banner(doctor).getByRole("link", { name: "災害ボードを開く" }).click();
    await expectText(doctor.getByRole("heading", { level: 1 }), "災害ボード");
    const row = patientRows(doctor).filter({ hasText: PATIENT });
    await row.getByRole("button", { name: "安否を記録" }).click();
    const form = row.getByRole("form", { name: `${PATIENT}さんの安否を記録` });
    await form.getByLabel("要支援", { exact: true }).check();
    await form.getByLabel("酸素", { exact: true }).check();
    await form.getByLabel("メモ（任意）").fill("停電で酸素濃縮器が止まっています。ボンベ残り2時間。");
    await expectAccessible(doctor, "the safety check form");
    await form.getByRole("button", { name: "安否を記録する" }).click();
    // Applied by the hub, or (on a slow machine) kept by this node for it: either is said.
    await expectText(row.getByRole("status"), /記録しました|このノードに記録しました。ハブへの反映を待っています/);
    log(`recorded: ${await row.getByRole("status").innerText()}`);
    await expectText(patientRows(doctor).first(), PATIENT);
    await expectText(patientRows(doctor).first(), "要支援・酸素");
    await expectText(doctor.getByRole("region", { name: "全体" }), "酸素 1人");
    await doctor.evaluate(() => window.scrollTo(0, 0));
    await shot(doctor, "disaster-board-desktop");
    // The operator's board follows live (disaster_observed), her row first.
    await expectText(patientRows(operator).first(), "要支援・酸素", { timeout: 20_000 });
    await expectText(patientRows(operator).first(), PATIENT);
  });

  await step("the operator exports the board as CSV for the disaster office", async () => {
    const [download] = await Promise.all([operator.waitForEvent("download"), operator.getByRole("button", { name: "CSVを書き出す" }).click()]);
    if (!/^anpi-\d+-.+\.csv$/.test(download.suggestedFilename())) throw new Error(`the CSV is named ${download.suggestedFilename()}`);
    const csv = readFileSync(await download.path(), "utf8");
    if (!csv.startsWith("\ufeff")) throw new Error("the CSV has no byte-order mark (spreadsheets would garble it)");
    const line = csv.split("\r\n").find((l) => l.includes(PATIENT));
    if (!line || !line.includes("要支援") || !line.includes("酸素")) throw new Error(`no line of ${PATIENT} needing oxygen in the CSV:\n${csv}`);
  });

  await step("the resource map shows the station's status; the care profile is kept on a timeline", async () => {
    await doctor.getByRole("link", { name: "資源マップ" }).click();
    await doctor.getByLabel("キーワード").fill("ひばり");
    await doctor.getByRole("button", { name: "検索" }).click();
    await expectText(doctor.getByRole("list", { name: "施設" }), "災害時の状況：一部稼働");
    await doctor.getByRole("link", { name: "患者", exact: true }).click();
    await doctor.getByRole("link", { name: /高橋 トメ/ }).first().click();
    await expectText(doctor.getByRole("heading", { level: 1 }), "高橋 トメ");
    await doctor.getByText("災害時の情報：鹿沼市・吸引器").click();
    const form = doctor.getByRole("form", { name: "災害時の情報" });
    await form.getByLabel("在宅酸素").check();
    await form.getByRole("button", { name: "保存" }).click();
    await expectText(form.getByRole("status"), "災害時の情報を保存しました");
    await doctor.getByText("災害時の情報：鹿沼市・在宅酸素・吸引器").waitFor();
    await expectText(doctor.locator(".disaster-check summary"), `安否確認（${disaster}）：未確認`);
  });

  await step("the operator ends the disaster and every banner goes", async () => {
    await operator.getByRole("button", { name: "この災害を終了する" }).click();
    await expectText(operator.getByRole("heading", { level: 2 }), "終了");
    await banner(operator).waitFor({ state: "detached" });
    await banner(doctor).waitFor({ state: "detached" });
    await banner(takahashi).waitFor({ state: "detached" });
    await takahashi.context().close();
  });
});
