// Drives headless Chromium for carn-mobile (parity, tests, bench): one JSON command per stdin
// line, one JSON reply per stdout line. Usage: node driver.mjs NODE_MODULES CHROMIUM
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import readline from "node:readline";

const [nodeModules, executablePath] = process.argv.slice(2);
const require = createRequire(`${nodeModules.replace(/\/$/, "")}/`);
const { chromium } = require("playwright-core");

const browser = await chromium.launch({
  executablePath,
  headless: true,
  // --no-sandbox: CI and containers run as root, where Chromium's sandbox cannot start.
  args: ["--no-sandbox", "--enable-unsafe-webgpu"],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, deviceScaleFactor: 1 });
let page = null;
const consoleLines = [];

const ops = {
  async open({ url, initScript, routes, timeoutMs = 60000 }) {
    if (page) await page.close();
    page = await context.newPage();
    page.on("console", (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
    page.on("pageerror", (e) => consoleLines.push(`pageerror: ${e.message}`));
    for (const [pattern, path] of Object.entries(routes || {})) {
      const body = readFileSync(path);
      const type = path.endsWith(".wasm") ? "application/wasm" : "text/javascript";
      await page.route(pattern, (route) => route.fulfill({ body, contentType: type,
        headers: { "Access-Control-Allow-Origin": "*", "Cross-Origin-Resource-Policy": "cross-origin" } }));
    }
    if (initScript) await page.addInitScript(initScript);
    await page.goto(url);
    await page.waitForFunction(() => window.carnWeb && window.carnWeb.state !== "loading", null, { timeout: timeoutMs });
    return page.evaluate(() => ({ state: carnWeb.state, error: carnWeb.error, threads: carnWeb.threads,
      isolated: crossOriginIsolated, simd: true, userAgent: navigator.userAgent }));
  },
  async tensor({ scale, h, w, data, backend = "wasm", runtime = null }) {
    const out = await page.evaluate(async ({ scale, h, w, data, backend, runtime }) => {
      const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
      const t0 = performance.now();
      const result = await carnWeb.runTensor(scale, new Float32Array(bytes.buffer), h, w, backend, runtime);
      const ms = performance.now() - t0;
      return { data: carnWeb.toBase64(result), ms };
    }, { scale, h, w, data, backend, runtime });
    return out;
  },
  async upscale({ file, scale, backend, timeoutMs = 300000 }) {
    if (scale !== undefined && scale !== null) await page.selectOption("#scale", String(scale));
    if (backend) await page.selectOption("#backend", backend);
    // A changed menu re-runs the page's current image: let that finish before timing this one.
    await page.waitForFunction(() => carnWeb.state !== "running", null, { timeout: timeoutMs });
    await page.evaluate(() => { carnWeb.state = "running"; });
    // Clear the input first: choosing the file it already holds fires no change event.
    await page.setInputFiles("#file", []);
    await page.setInputFiles("#file", file);
    await page.waitForFunction(() => ["done", "error"].includes(carnWeb.state), null, { timeout: timeoutMs });
    return page.evaluate(() => {
      const r = carnWeb.result;
      const base = { state: carnWeb.state, error: carnWeb.error, status: document.getElementById("status").textContent };
      if (carnWeb.state !== "done") return base;
      return { ...base, width: r.width, height: r.height, ms: r.ms, tiles: r.tiles, tile: r.tile,
        backend: r.backend, pixels: carnWeb.resultBase64() };
    });
  },
  async screenshot({ path }) {
    await page.screenshot({ path, fullPage: true });
    return { path };
  },
  async evaluate({ expression }) {
    return { value: await page.evaluate(expression) };
  },
  async console() {
    return { lines: consoleLines.splice(0) };
  },
  async close() {
    await browser.close();
    return { closed: true };
  },
};

process.stdout.write(JSON.stringify({ ok: true, ready: true, version: browser.version() }) + "\n");
const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  let reply;
  try {
    const { op, ...args } = JSON.parse(line);
    if (!ops[op]) throw new Error(`unknown op ${op}`);
    reply = { ok: true, ...(await ops[op](args)) };
  } catch (err) {
    reply = { ok: false, error: String(err && err.message ? err.message : err).split("\n")[0] };
  }
  process.stdout.write(JSON.stringify(reply) + "\n");
  if (reply.closed) break;
}
await browser.close().catch(() => {});
process.exit(0);
