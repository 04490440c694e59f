// The explorer page in a real browser (Debian's Chromium, driven by playwright-core):
//   node tests/browser/page.mjs URL SCREENSHOT.png UPLOAD.png
// opens the page, waits for the samples, moves the temperature slider, uploads an image,
// moves an attribute slider and checks that the image changed, mixes two gallery images,
// and takes a screenshot. Sliders are moved with the keyboard, as a user would. Prints one
// line per step; exits 1 at the first failure, or if the page logged an error.
import { chromium } from "playwright-core";

const [url, screenshot, upload] = process.argv.slice(2);
if (!url || !screenshot || !upload) {
  console.error("usage: node page.mjs URL SCREENSHOT.png UPLOAD.png");
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--no-proxy-server"],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
const errors = [];
page.on("pageerror", (e) => errors.push(e.message));
page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });

function fail(msg) {
  console.error("page: " + msg + (errors.length ? " (page errors: " + errors.join("; ") + ")" : ""));
  process.exit(1);
}
function step(msg) { console.log("page: " + msg); }

// A digest of what an <img> shows, read back through a canvas.
const digest = (sel) => page.$eval(sel, (img) => {
  const c = document.createElement("canvas");
  c.width = img.naturalWidth, c.height = img.naturalHeight;
  const g = c.getContext("2d");
  g.drawImage(img, 0, 0);
  let h = 0;
  for (const v of g.getImageData(0, 0, c.width, c.height).data) h = (h * 31 + v) >>> 0;
  return `${c.width}x${c.height}:${h}`;
});
const loaded = (sel) => page.waitForFunction((s) => {
  const img = document.querySelector(s);
  return img.complete && img.naturalWidth > 0;
}, sel);
// Press a key on a slider n times (each press is one input event).
async function slide(sel, key, n) {
  await page.focus(sel);
  for (let i = 0; i < n; i++) await page.keyboard.press(key);
}
const version = () => page.$eval("#edited", (img) => parseInt(img.dataset.version || "0"));

try {
  // 1, 2. The page, its samples.
  await page.goto(url);
  await page.waitForSelector("body[data-ready='1']", { timeout: 30000 });
  await loaded("#samples");
  const cold = await digest("#samples");
  step("samples shown: " + cold);

  // 3. Temperature 0.70 -> 1.00: new samples.
  await slide("#temperature", "ArrowRight", 6);
  await page.waitForFunction(() => document.querySelector("#samples").dataset.temperature === "1.00");
  await loaded("#samples");
  if ((await digest("#samples")) === cold) fail("the samples did not change with the temperature");
  step("temperature 1.00: new samples");

  // 4. Upload: encoded, reconstructed, its bits/dim shown.
  await page.setInputFiles("#upload", upload);
  await page.waitForFunction(() => document.querySelector("#bpd").dataset.id);
  await page.waitForFunction(() => parseInt(document.querySelector("#edited").dataset.version) >= 1);
  await loaded("#recon");
  const bpd = await page.textContent("#bpd");
  if (!/\d+\.\d+ bits\/dim/.test(bpd)) fail("no bits/dim after the upload: " + bpd);
  step("uploaded: " + bpd);

  // 5. An attribute slider: the edited image changes, the server's time is shown.
  const rows = await page.$$("#attrs input");
  if (!rows.length) fail("no attribute sliders");
  await loaded("#edited");
  const plain = await digest("#edited"), v0 = await version();
  await slide("#attrs input >> nth=1", "ArrowRight", 20);
  await page.waitForFunction((v) => parseInt(document.querySelector("#edited").dataset.version) > v, v0);
  await page.waitForTimeout(300); // the debounced last value
  await loaded("#edited");
  const moved = await digest("#edited");
  if (moved === plain) fail("the image did not change when the attribute slider moved");
  const timing = await page.textContent("#timing");
  if (!/server [\d.]+ ms/.test(timing)) fail("no server time shown: " + timing);
  step("attribute slider moved: the image changed (" + timing + ")");

  // 6. Mix gallery images 0 and 1.
  for (const [i, button] of [[0, "#mix-a-set"], [1, "#mix-b-set"]]) {
    const before = await page.$eval("#bpd", (e) => e.dataset.id);
    await page.click(`#gallery img[data-index='${i}']`);
    await page.waitForFunction((b) => document.querySelector("#bpd").dataset.id !== b, before);
    await page.click(button);
  }
  await page.waitForFunction(() => document.querySelector("#mix").dataset.t === "0.50");
  await loaded("#mix");
  const half = await digest("#mix");
  await slide("#mix-t", "ArrowLeft", 10);
  await page.waitForFunction(() => document.querySelector("#mix").dataset.t === "0.30");
  await loaded("#mix");
  if ((await digest("#mix")) === half) fail("the mix did not change with t");
  step("mixed gallery images 0 and 1 at t = 0.50 and 0.30");

  // 7. The screenshot.
  await page.screenshot({ path: screenshot, fullPage: true });
  step("screenshot " + screenshot);
  if (errors.length) fail("the page logged errors");
} catch (e) {
  fail(e.message);
} finally {
  await browser.close();
}
