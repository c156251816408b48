// The page and a node cut off from its hub, in Debian's Chromium against a seeded 3-node hub
// whose Raft links the harness can cut (node/tests/browser.rs): the page leaves a cut-off node
// for one that is not; when no node of the quorum answers, it says the data may be old and how
// old, a post fails with a clear message and keeps its text, and goes through once the hub is
// back; a safety check of disaster mode is taken all the same, kept on the node for the hub
// (「反映待ち」), and reaches the hub once it is back.

import { DESKTOP, PHONE, expectText, healNode, isolateNode, main, newContext, password, restartNode, shot, step, stopNode, urls } from "./lib.mjs";

const PATIENT = "山田 花子";
const stamp = () => String(Date.now() % 1_000_000);
const post = (page, text) => page.locator("li.post", { hasText: text });
const composer = (page) => page.getByLabel("投稿内容");
const send = (page) => page.getByRole("button", { name: "投稿", exact: true }).click();

async function write(page, text) {
  await composer(page).fill(text);
  await send(page);
  await post(page, text).first().waitFor();
}

await main(async (browser) => {
  const nurse = await (await newContext(browser, PHONE)).newPage();

  await step("the nurse logs in and opens a timeline on node 1, by keyboard only", async () => {
    await nurse.goto(`${urls[0]}/`);
    await nurse.getByLabel("ログインID").focus();
    await nurse.keyboard.type("vn.suzuki");
    await nurse.keyboard.press("Tab");
    await nurse.keyboard.type(password);
    await nurse.keyboard.press("Enter");
    const patient = nurse.getByRole("link", { name: new RegExp(PATIENT) }).first();
    await patient.waitFor();
    // Tab reaches the patient's link (every control is a link, a button or a field).
    for (let presses = 0; !(await patient.evaluate((el) => el === document.activeElement)); presses += 1) {
      if (presses > 30) throw new Error(`${PATIENT}'s link is not reachable with Tab`);
      await nurse.keyboard.press("Tab");
    }
    await nurse.keyboard.press("Enter");
    await expectText(nurse.getByRole("heading", { level: 1 }), PATIENT);
  });

  // 災害モード: a disaster in force, so that a safety check can be recorded while cut off.
  const disaster = `停電 ${stamp()}`;
  const check = nurse.locator(".disaster-check");
  await step("the operator declares a disaster; the nurse's timeline offers its safety check", async () => {
    const operator = await (await newContext(browser, DESKTOP)).newPage();
    await operator.goto(`${urls[1]}/`);
    await operator.getByLabel("ログインID").fill("jimukyoku");
    await operator.getByLabel("パスワード").fill(password);
    await operator.getByRole("button", { name: "ログイン" }).click();
    await operator.getByRole("link", { name: "災害", exact: true }).click();
    const form = operator.getByRole("form", { name: "災害を宣言" });
    await form.getByLabel("災害の名称").fill(disaster);
    await form.getByLabel(/対象の市町村/).fill("宇都宮市");
    await form.getByRole("button", { name: "災害を宣言する" }).click();
    await expectText(operator.getByRole("heading", { level: 2 }), disaster);
    await operator.context().close();
    // The nurse's page hears of it live: the banner, and the check on the patient's timeline.
    await expectText(nurse.getByTestId("disaster-banner"), disaster);
    await expectText(check.locator("summary"), `安否確認（${disaster}）：未確認`);
  });

  await step("node 1 is cut off from the hub: the page moves to a node that is not, and posts there", async () => {
    await isolateNode(urls[0]);
    // Node 1 notices it lost the hub within an election timeout; the page asks every 5 s.
    await expectText(nurse.getByRole("status"), "接続先のサーバーを切り替えました", { timeout: 30_000 });
    const text = `切り離し後の投稿です。${stamp()}`;
    await write(nurse, text);
    await healNode(urls[0]);
  });

  const kept = `ハブ復旧待ちの投稿です。${stamp()}`;
  await step("only a node without quorum answers: the page says its data may be old, and how old", async () => {
    await stopNode(urls[1]);
    await stopNode(urls[2]);
    await expectText(nurse.getByRole("alert"), /オフライン表示|サーバーに接続できません/, { timeout: 30_000 });
    await expectText(nurse.getByRole("alert"), /(数秒|\d+秒|\d+分)前/);
    await shot(nurse, "offline-phone");
  });

  await step("a safety check is still taken: the node keeps it for the hub and says so", async () => {
    await check.locator("summary").click();
    const form = check.getByRole("form", { name: `${PATIENT}さんの安否を記録` });
    await form.getByLabel("要支援", { exact: true }).check();
    await form.getByLabel("酸素", { exact: true }).check();
    await form.getByRole("button", { name: "安否を記録する" }).click();
    await expectText(check.getByRole("status"), "このノードに記録しました。ハブへの反映を待っています", { timeout: 30_000 });
    await expectText(check.locator("summary"), "要支援・酸素");
    await expectText(check.locator("summary"), "反映待ち");
    await check.locator("summary").scrollIntoViewIfNeeded();
    await shot(nurse, "disaster-pending-phone");
  });

  await step("a post then fails with a clear message and keeps its text", async () => {
    await composer(nurse).fill(kept);
    await send(nurse);
    await expectText(nurse.locator(".composer [role=alert]"), "入力した内容は残っています", { timeout: 40_000 });
    if ((await composer(nurse).inputValue()) !== kept) throw new Error("the text of the failed post is gone");
  });

  await step("the hub comes back: the banner goes and the kept post goes through", async () => {
    await restartNode(urls[1]);
    await restartNode(urls[2]);
    await nurse.locator(".banner.offline").waitFor({ state: "detached", timeout: 30_000 });
    await send(nurse);
    await post(nurse, kept).first().waitFor({ timeout: 20_000 });
    await shot(nurse, "back-phone");
  });

  await step("the safety check kept on node 1 reaches the hub once: its 反映待ち goes", async () => {
    await check.locator(".tag.pending").waitFor({ state: "detached", timeout: 30_000 });
    await expectText(check.locator("summary"), "要支援・酸素", { timeout: 30_000 });
  });
});
