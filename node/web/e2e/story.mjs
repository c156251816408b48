// The browser story, run by node/tests/browser.rs against a seeded 3-node TLS hub.
// SMOKE for now: the page loads over TLS on a phone, Japanese renders with a CJK font, and the
// hub's API answers the page (a wrong password is refused, then a demo nurse signs in and sees
// her patients), and the harness stops a node when asked. (The real story replaces the body of main().)

import { DESKTOP, PHONE, expectJapaneseGlyphs, expectText, main, newContext, password, shot, step, stopNode, urls } from "./lib.mjs";

await main(async (browser) => {
  const phone = await newContext(browser, PHONE);
  const page = await phone.newPage();

  await step("the phone opens node 1", async () => {
    const response = await page.goto(`${urls[0]}/`, { waitUntil: "load" });
    if (response?.status() !== 200) throw new Error(`GET ${urls[0]}/ answered ${response?.status()}`);
    const lang = await page.locator("html").getAttribute("lang");
    if (lang !== "ja") throw new Error(`<html lang=${JSON.stringify(lang)}>, expected "ja"`);
  });

  await step("Japanese renders with a CJK font", async () => {
    // The app's own text when it shows some; else a probe line of our own.
    const japanese = page.locator("body :is(h1,h2,h3,p,span,button,label,a,div)").filter({ hasText: /[\u3040-\u30ff\u4e00-\u9fff]/ }).last();
    if ((await japanese.count()) === 0) {
      await page.evaluate(() => {
        const p = document.createElement("p");
        p.id = "cjk-probe";
        p.textContent = "在宅医療・介護の連携（絆）テスト";
        p.style.cssText = "font: 20px sans-serif; margin: 16px";
        document.body.append(p);
      });
      await expectJapaneseGlyphs(page, page.locator("#cjk-probe"));
    } else {
      await expectJapaneseGlyphs(page, japanese);
    }
    await shot(page, "smoke-phone");
  });

  await step("the page reaches the hub's API (a wrong password is refused)", async () => {
    // A gRPC-Web call from the page over TLS, answered by the hub itself; independent of the
    // calls after a sign-in (the real story signs in for real).
    await page.getByLabel("ログインID").fill("vn.suzuki");
    await page.getByLabel("パスワード").fill(`${password}-wrong`);
    await page.getByRole("button", { name: "ログイン" }).click();
    await expectText(page.getByRole("alert"), "ログインIDまたはパスワードが正しくありません", { timeout: 15_000 });
    await shot(page, "smoke-phone-refused");
  });

  await step("a demo nurse signs in and sees her patients", async () => {
    await page.getByLabel("パスワード").fill(password);
    await page.getByRole("button", { name: "ログイン" }).click();
    await expectText(page.locator("body"), "山田 花子", { timeout: 15_000 });
    await shot(page, "smoke-phone-patients");
  });

  await step("a desktop opens node 2", async () => {
    const desktop = await newContext(browser, DESKTOP);
    const wide = await desktop.newPage();
    const response = await wide.goto(`${urls[1]}/`, { waitUntil: "load" });
    if (response?.status() !== 200) throw new Error(`GET ${urls[1]}/ answered ${response?.status()}`);
    await expectText(wide.getByRole("button", { name: "ログイン" }), "ログイン");
    await shot(wide, "smoke-desktop");
    await desktop.close();
  });

  await step("the harness stops node 3 on request", async () => {
    // Any HTTP answer of the node's port (opaque: cross-origin) means up; a network error, down.
    const reach = (url) =>
      page.evaluate(
        (u) => fetch(`${u}/grpc.health.v1.Health/Check`, { mode: "no-cors", cache: "no-store" }).then(() => "up", (e) => `down (${e.message})`),
        url,
      );
    const before = await reach(urls[2]);
    if (before !== "up") throw new Error(`node 3 is not reachable before the stop: ${before}`);
    await stopNode(urls[2]);
    const after = await reach(urls[2]);
    if (!after.startsWith("down")) throw new Error(`node 3 still answers after the harness said it stopped`);
    const others = await reach(urls[0]);
    if (others !== "up") throw new Error(`node 1 went down with node 3: ${others}`);
  });
});
