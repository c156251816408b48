// The browser story, run by node/tests/browser.rs against a seeded 3-node TLS hub.
// SMOKE for now: the page loads over TLS on a phone, Japanese renders with a CJK font, and the
// harness stops a node when asked. (The real story replaces the body of main().)

import { PHONE, expectJapaneseGlyphs, main, newContext, shot, step, stopNode, urls } from "./lib.mjs";

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

  await step("the harness stops node 3 on request", async () => {
    await stopNode(urls[2]);
  });
});
