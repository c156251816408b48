// The page and a node cut off from its hub, in Debian's Chromium against a seeded 3-node hub
// whose Raft links the harness can cut (node/tests/browser.rs): the page leaves a cut-off node
// for one that is not; when no node of the quorum answers, it says the data may be old and how
// old, a post fails with a clear message and keeps its text, and goes through once the hub is
// back.

import { PHONE, expectText, healNode, isolateNode, main, newContext, password, restartNode, shot, step, stopNode, urls } from "./lib.mjs";

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
});
