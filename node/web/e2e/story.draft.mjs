// The story of the browser client, in a real Chromium against a real 3-node hub (started by
// node/tests/browser.rs): a nurse on a phone and a doctor at a desktop work on one patient,
// live, while a node of the hub stops; then the error paths.
import { expectText, launch, newContext, password, shot, step, stopAccount, stopNode, urls } from "./lib.mjs";

const PATIENT = "山田 花子";
const NURSE = { login: "vn.suzuki", name: "鈴木 早苗" };
const DOCTOR = { login: "dr.sato", name: "佐藤 健一" };
const SAME_REFUSAL = "ログインIDまたはパスワードが正しくありません。";

async function logIn(page, login, pass = password) {
  await page.getByLabel("ログインID").fill(login);
  await page.getByLabel("パスワード").fill(pass);
  await page.getByRole("button", { name: "ログイン" }).click();
}

function post(page, text) {
  return page.locator("li.post", { hasText: text });
}

async function write(page, text) {
  await page.getByLabel("投稿内容").fill(text);
  await page.getByRole("button", { name: "投稿", exact: true }).click();
  await post(page, text).waitFor();
}

const browser = await launch();
try {
  const phone = await newContext(browser, "phone");
  const desktop = await newContext(browser, "desktop");
  const nurse = await phone.newPage();
  const doctor = await desktop.newPage();

  await step("a wrong password and an unknown login read the same", async () => {
    await nurse.goto(urls[0]);
    await shot(nurse, "login-phone");
    await logIn(nurse, NURSE.login, "wrong-password-123");
    await expectText(nurse.getByRole("alert"), SAME_REFUSAL);
    await logIn(nurse, "nobody.at.all", "wrong-password-123");
    await expectText(nurse.getByRole("alert"), SAME_REFUSAL);
  });

  await step("the nurse logs in and sees her patient list", async () => {
    await logIn(nurse, NURSE.login);
    await expectText(nurse.getByRole("heading", { level: 1 }), "患者一覧");
    await nurse.getByRole("link", { name: new RegExp(PATIENT) }).first().waitFor();
    await shot(nurse, "patients-phone");
  });

  await step("the doctor logs in at a desktop", async () => {
    await doctor.goto(urls[0]);
    await logIn(doctor, DOCTOR.login);
    await expectText(doctor.getByRole("heading", { level: 1 }), "患者一覧");
    await shot(doctor, "patients-desktop");
  });

  const first = `本日訪問しました。SpO2 95%、呼吸苦なし。${Date.now() % 100000}`;
  await step("the nurse opens the timeline and posts in Japanese", async () => {
    await nurse.getByRole("link", { name: new RegExp(PATIENT) }).first().click();
    await expectText(nurse.getByRole("heading", { level: 1 }), PATIENT);
    await write(nurse, first);
    await shot(nurse, "timeline-phone");
  });

  await step("the doctor sees it arrive live, with its unread count", async () => {
    const entry = doctor.locator("li.room", { hasText: PATIENT }).first();
    await expectText(entry, first.slice(0, 10));
    await entry.getByLabel(/未読 \d+ 件/).first().waitFor();
    await shot(doctor, "unread-desktop");
  });

  await step("the doctor acknowledges it with 見ました", async () => {
    await doctor.getByRole("link", { name: new RegExp(PATIENT) }).first().click();
    await post(doctor, first).getByRole("button", { name: "見ました" }).click();
    await expectText(post(doctor, first), "見ました 1人");
    await shot(doctor, "timeline-desktop");
  });

  await step("the nurse sees who acknowledged, live", async () => {
    await expectText(post(nurse, first), "見ました 1人");
    await post(nurse, first).getByText("見ました 1人").click();
    await expectText(post(nurse, first), DOCTOR.name);
  });

  await step("an empty post is refused with a clear message", async () => {
    await nurse.getByLabel("投稿内容").fill("");
    await nurse.getByRole("button", { name: "投稿", exact: true }).click();
    await expectText(nurse.getByRole("alert"), "本文を入力してください");
  });

  await step("a post the hub refuses keeps its text and says why", async () => {
    const tooLong = "あ".repeat(10001);
    await nurse.getByLabel("投稿内容").fill(tooLong);
    await nurse.getByRole("button", { name: "投稿", exact: true }).click();
    await expectText(nurse.getByRole("alert"), "入力内容を確認してください");
    if ((await nurse.getByLabel("投稿内容").inputValue()) !== tooLong) throw new Error("the refused text was lost");
    await nurse.getByLabel("投稿内容").fill("");
  });

  const afterStop = `ノード停止後の投稿です。${Date.now() % 100000}`;
  await step("the node both pages came from stops: they carry on against another", async () => {
    await stopNode(urls[0]);
    await write(nurse, afterStop);
    await expectText(post(doctor, afterStop), afterStop);
    await expectText(nurse.getByRole("status"), "接続先のサーバーを切り替えました");
    await shot(nurse, "failover-phone");
  });

  await step("a session ended from another device is logged out with a message", async () => {
    const other = await (await newContext(browser, "desktop")).newPage();
    await other.goto(urls[1]);
    await logIn(other, NURSE.login);
    await other.getByRole("link", { name: "設定" }).click();
    await other.getByRole("button", { name: "ログアウトさせる" }).first().click();
    await nurse.getByRole("link", { name: "患者" }).click();
    await expectText(nurse.getByRole("status"), "ログインが終了しました");
    await shot(other, "settings-desktop");
  });

  await step("a stopped account is logged out", async () => {
    await stopAccount(DOCTOR.login);
    // Any event on the hub ends the stopped account's live stream: the page notices at once.
    const helper = await (await newContext(browser, "desktop")).newPage();
    await helper.goto(urls[1]);
    await logIn(helper, "vn.takahashi");
    await helper.getByRole("link", { name: new RegExp(PATIENT) }).first().click();
    await write(helper, `停止の確認 ${Date.now() % 100000}`);
    await expectText(doctor.getByRole("status"), "ログインが終了しました");
  });
} finally {
  await browser.close();
}
