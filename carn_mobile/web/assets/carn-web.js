// carn-mobile web page: runs an exported CARN / CARN-M with ONNX Runtime Web, tile by tile.
//
// Plain ES module, no build step. site.json (written by `carn-export --target web`) names the
// models, their tiling overlap and tile size, and the ONNX Runtime Web files with their
// integrity hashes. Tiling follows carn-upscale exactly (carn_mobile/upscaling/tiling.py):
// near-equal cores, each read with `overlap` LR pixels around it and clipped at the border,
// so the stitched output equals the untiled model output.

const SITE_FORMAT = "carn-mobile/web-site@1";

// The smallest module that uses a SIMD instruction (v128.const): validates only where
// WebAssembly SIMD exists, which ONNX Runtime Web's builds require.
const SIMD_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
  0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, //       type: () -> v128
  0x03, 0x02, 0x01, 0x00, //                         one function of that type
  0x0a, 0x16, 0x01, 0x14, 0x00, 0xfd, 0x0c, //       code: v128.const
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0x0b, //                                           end
]);

/** True when this browser's WebAssembly has SIMD. */
export function hasWasmSimd() {
  try {
    return typeof WebAssembly === "object" && WebAssembly.validate(SIMD_PROBE);
  } catch {
    return false;
  }
}

/** Cut [0, length) into ceil(length / tile) contiguous near-equal parts (as tiling.split). */
export function split(length, tile) {
  if (!(length >= 1 && tile >= 1)) throw new Error(`length and tile must be positive, got ${length} and ${tile}`);
  const n = Math.ceil(length / tile);
  const parts = [];
  for (let i = 0; i < n; i++) parts.push([Math.floor((i * length) / n), Math.floor(((i + 1) * length) / n)]);
  return parts;
}

/** Tiles with cores of at most tile x tile LR pixels, each read with `overlap` around it. */
export function planTiles(height, width, tile, overlap) {
  const tiles = [];
  for (const [cy0, cy1] of split(height, tile)) {
    for (const [cx0, cx1] of split(width, tile)) {
      tiles.push({
        y0: Math.max(cy0 - overlap, 0), y1: Math.min(cy1 + overlap, height),
        x0: Math.max(cx0 - overlap, 0), x1: Math.min(cx1 + overlap, width),
        cy0, cy1, cx0, cx1,
      });
    }
  }
  return tiles;
}

/** float in [0, 1] -> 0..255: clamp, scale, round half up (as carn_mobile.metrics.to_uint8). */
function toLevel(v) {
  const c = v < 0 ? 0 : v > 1 ? 1 : v;
  return Math.floor(c * 255 + 0.5);
}

/** Upscale RGBA `image` ({width, height, data}) tile by tile with `run(Float32Array, h, w)`. */
export async function upscaleTiled(image, scale, tile, overlap, run, onTile) {
  const { width: W, height: H, data: src } = image;
  const OW = W * scale;
  const out = new Uint8ClampedArray(OW * H * scale * 4);
  const tiles = planTiles(H, W, tile, overlap);
  for (let i = 0; i < tiles.length; i++) {
    const t = tiles[i];
    const bh = t.y1 - t.y0, bw = t.x1 - t.x0, plane = bh * bw;
    const lr = new Float32Array(3 * plane);
    for (let y = 0; y < bh; y++) {
      let p = ((t.y0 + y) * W + t.x0) * 4;
      for (let x = 0; x < bw; x++, p += 4) {
        const q = y * bw + x;
        lr[q] = src[p] / 255;
        lr[plane + q] = src[p + 1] / 255;
        lr[2 * plane + q] = src[p + 2] / 255;
      }
    }
    const hr = await run(lr, bh, bw);
    const hw = bw * scale, hplane = bh * scale * hw;
    const oy = (t.cy0 - t.y0) * scale, ox = (t.cx0 - t.x0) * scale;
    const ch = (t.cy1 - t.cy0) * scale, cw = (t.cx1 - t.cx0) * scale;
    for (let y = 0; y < ch; y++) {
      let o = ((t.cy0 * scale + y) * OW + t.cx0 * scale) * 4;
      const row = (oy + y) * hw + ox;
      for (let x = 0; x < cw; x++, o += 4) {
        out[o] = toLevel(hr[row + x]);
        out[o + 1] = toLevel(hr[hplane + row + x]);
        out[o + 2] = toLevel(hr[2 * hplane + row + x]);
        out[o + 3] = 255;
      }
    }
    if (onTile) await onTile(i + 1, tiles.length);
  }
  return { width: OW, height: H * scale, data: out, tiles: tiles.length };
}

// --- loading ONNX Runtime Web and the models --------------------------------------------------

async function fetchChecked(entry, what) {
  let response;
  try {
    response = await fetch(new URL(entry.url, document.baseURI), { integrity: entry.integrity || "" });
  } catch (err) {
    throw new Error(`could not fetch ${what} (${entry.url}): it is missing or does not match its integrity hash`);
  }
  if (!response.ok) throw new Error(`could not fetch ${what} (${entry.url}): HTTP ${response.status}`);
  return response.arrayBuffer();
}

const ortBuilds = new Map();

/** The ONNX Runtime Web build for `backend` ("wasm" or "webgpu"), each file integrity-checked. */
async function loadOrt(site, backend, threads) {
  if (ortBuilds.has(backend)) return ortBuilds.get(backend);
  const files = site.ort.builds[backend];
  if (!files) throw new Error(`this site has no ONNX Runtime Web build for ${backend}`);
  const promise = (async () => {
    const [module, glue, binary] = await Promise.all([
      fetchChecked(files.module, "ONNX Runtime Web"),
      fetchChecked(files.glue, "ONNX Runtime Web's loader"),
      fetchChecked(files.wasm, "ONNX Runtime Web's WebAssembly"),
    ]);
    // Import the checked bytes themselves (blob URLs), not a second, unchecked download.
    const asScript = (bytes) => URL.createObjectURL(new Blob([bytes], { type: "text/javascript" }));
    const ort = await import(asScript(module));
    ort.env.wasm.wasmPaths = { mjs: asScript(glue) };
    ort.env.wasm.wasmBinary = binary;
    ort.env.wasm.numThreads = threads;
    ort.env.logLevel = "error";
    return ort;
  })();
  ortBuilds.set(backend, promise);
  try {
    return await promise;
  } catch (err) {
    ortBuilds.delete(backend);
    throw err;
  }
}

const sessions = new Map();

async function loadSession(site, model, backend, threads) {
  const key = `${model.file}|${backend}`;
  if (!sessions.has(key)) {
    sessions.set(key, (async () => {
      const ort = await loadOrt(site, backend, threads);
      const bytes = await fetchChecked({ url: model.file, integrity: model.integrity }, `the x${model.scale} model`);
      let session;
      try {
        session = await ort.InferenceSession.create(new Uint8Array(bytes), {
          executionProviders: [backend], graphOptimizationLevel: "all",
        });
      } catch (err) {
        throw new Error(`ONNX Runtime Web could not load ${model.file}: ${String(err.message || err).split("\n")[0]}`);
      }
      const run = async (data, h, w) => {
        const feeds = { [model.input]: new ort.Tensor("float32", data, [1, 3, h, w]) };
        const result = await session.run(feeds);
        const out = result[model.output];
        const values = out.location === "gpu-buffer" ? await out.getData() : out.data;
        return values;
      };
      return { ort, session, run };
    })());
  }
  try {
    return await sessions.get(key);
  } catch (err) {
    sessions.delete(key);
    throw err;
  }
}

// --- the page -----------------------------------------------------------------------------------

/** Bytes (any typed array) as base64, in chunks that String.fromCharCode can take. */
export function toBase64(view) {
  const bytes = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const intParam = (name) => (params.has(name) ? Number.parseInt(params.get(name), 10) : undefined);

const api = {
  state: "loading", // loading | ready | running | done | error
  error: null,
  site: null,
  threads: 1,
  result: null,
  ready: null,
  /** The backends this browser can run ("wasm", and "webgpu" when it has an adapter). */
  backends: ["wasm"],
  /** {adapter: "vendor architecture"} when WebGPU is usable, else {why: "..."}. */
  webgpu: { why: "not checked yet" },
  /** What the page says when it runs something other than what was asked (no silent fallback). */
  notice: null,
  /** Run the untiled model on one NCHW float32 tensor (what parity checks compare). */
  async runTensor(scale, data, h, w, backend = "wasm") {
    checkBackend(backend);
    const model = modelFor(scale);
    const { run } = await loadSession(api.site, model, backend, api.threads);
    return Float32Array.from(await run(Float32Array.from(data), h, w));
  },
  /** The last result's RGBA pixels as base64 (for tests reading the output back). */
  resultBase64() {
    return toBase64(api.result.data);
  },
  toBase64,
};
window.carnWeb = api;

/** Refuse a backend this browser cannot run, rather than quietly running another one. */
function checkBackend(backend) {
  if (!api.backends.includes(backend)) {
    throw new Error(backend === "webgpu" ? `WebGPU is not available here (${api.webgpu.why})` :
      `unknown backend ${backend}: this page runs ${api.backends.join(" or ")}`);
  }
}

function modelFor(scale) {
  const model = api.site.models.find((m) => m.scale === Number(scale));
  if (!model) throw new Error(`this site has no x${scale} model`);
  return model;
}

function showError(message) {
  api.state = "error";
  api.error = message;
  $("error").textContent = message;
  $("error").hidden = false;
  $("progress").hidden = true;
  $("status").textContent = "";
}

function clearError() {
  api.error = null;
  $("error").hidden = true;
}

function setSplit() {
  const f = $("split").value / 1000;
  $("before").style.clipPath = `inset(0 ${(100 * (1 - f)).toFixed(2)}% 0 0)`;
  $("handle").style.left = `${(100 * f).toFixed(2)}%`;
}

const nextFrame = () => new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));

let current = null; // {name, bitmap, image}

async function decode(file) {
  let bitmap;
  try {
    // No colour conversion or premultiplication: the model sees the file's own 8-bit values.
    bitmap = await createImageBitmap(file, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  } catch {
    throw new Error(`${file.name} is not an image this browser can decode (try PNG, JPEG or WebP)`);
  }
  return bitmap;
}

function pixelsOf(bitmap) {
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext("2d", { willReadFrequently: true, colorSpace: "srgb" });
  ctx.drawImage(bitmap, 0, 0);
  return ctx.getImageData(0, 0, bitmap.width, bitmap.height);
}

async function openFile(file) {
  clearError();
  api.state = "running";
  api.result = null;
  $("download").disabled = true;
  try {
    const bitmap = await decode(file);
    current = { name: file.name, bitmap, image: null };
    await upscaleCurrent();
  } catch (err) {
    showError(err.message || String(err));
  }
}

async function upscaleCurrent() {
  if (!current) return;
  clearError();
  api.state = "running";
  const site = api.site;
  const model = modelFor($("scale").value);
  const backend = $("backend").value;
  checkBackend(backend);
  const { bitmap, name } = current;
  const outPixels = bitmap.width * bitmap.height * model.scale * model.scale;
  const limit = intParam("maxOutputPixels") ?? site.maxOutputPixels;
  if (outPixels > limit) {
    throw new Error(`${name} is ${bitmap.width}x${bitmap.height}: at x${model.scale} that is ${(outPixels / 1e6).toFixed(1)} ` +
      `MP of output, over this page's limit of ${(limit / 1e6).toFixed(1)} MP; use a smaller image or carn-upscale`);
  }
  current.image ??= pixelsOf(bitmap);
  const tile = intParam("tile") ?? model.tile[backend] ?? model.tile.wasm;
  $("status").textContent = `Loading the x${model.scale} model (${backend})\u2026`;
  const { run } = await loadSession(site, model, backend, api.threads);
  const progress = $("progress");
  progress.hidden = false;
  progress.value = 0;
  await nextFrame();
  const start = performance.now();
  const result = await upscaleTiled(current.image, model.scale, tile, model.overlap, run, async (done, total) => {
    progress.value = done / total;
    $("status").textContent = `x${model.scale}: tile ${done} of ${total}`;
    await nextFrame();
  });
  const ms = performance.now() - start;
  progress.hidden = true;
  api.result = { ...result, ms, scale: model.scale, backend, tile, name };
  show(result, bitmap);
  $("status").textContent = `x${model.scale}: ${bitmap.width}x${bitmap.height} \u2192 ${result.width}x${result.height} ` +
    `in ${(ms / 1000).toFixed(2)} s (${result.tiles} tile${result.tiles === 1 ? "" : "s"} of at most ${tile} px, ` +
    `${describeBackend(backend)})`;
  $("download").disabled = false;
  api.state = "done";
}

function show(result, bitmap) {
  const after = $("after"), before = $("before");
  after.width = before.width = result.width;
  after.height = before.height = result.height;
  after.getContext("2d").putImageData(new ImageData(result.data, result.width, result.height), 0, 0);
  const ctx = before.getContext("2d");
  ctx.imageSmoothingEnabled = false; // "before" shows the LR pixels as they are, enlarged
  ctx.drawImage(bitmap, 0, 0, result.width, result.height);
  $("compare").hidden = false;
  setSplit();
}

function download() {
  const r = api.result;
  $("after").toBlob((blob) => {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = `${r.name.replace(/\.[^.]*$/, "")}_x${r.scale}.png`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
  }, "image/png");
}

/** The runtime and backend that ran, as the status line names them. */
function describeBackend(backend) {
  const runtime = `ONNX Runtime Web ${api.site.ort.version}`;
  if (backend === "webgpu") return `${runtime}, WebGPU on the ${api.webgpu.adapter} adapter`;
  return `${runtime}, WebAssembly, ${api.threads} thread${api.threads === 1 ? "" : "s"}`;
}

/** Whether WebGPU can run here: {adapter} or {why} (no navigator.gpu, no adapter, an error). */
async function probeWebgpu() {
  if (!navigator.gpu) return { why: "this browser has no navigator.gpu" };
  try {
    const adapter = await navigator.gpu.requestAdapter();
    if (!adapter) return { why: "the browser offers no WebGPU adapter" };
    const info = adapter.info || {};
    return { adapter: [info.vendor, info.architecture].filter(Boolean).join(" ") || "unnamed" };
  } catch (err) {
    return { why: `requesting a WebGPU adapter failed: ${err.message || err}` };
  }
}

function showNotice(message) {
  api.notice = message;
  $("notice").textContent = message;
  $("notice").hidden = false;
}

async function start() {
  window.addEventListener("unhandledrejection", (event) => showError(String(event.reason?.message || event.reason)));
  if (!hasWasmSimd()) {
    $("file").disabled = true;
    throw new Error("This browser has no WebAssembly SIMD, which ONNX Runtime Web needs: " +
      "use a current Chrome, Edge, Firefox or Safari (16.4 or newer)");
  }
  let response;
  try {
    response = await fetch("site.json");
  } catch {
    response = null;
  }
  if (!response || !response.ok) throw new Error("site.json is missing: serve the folder that carn-export wrote");
  const site = await response.json();
  if (site.format !== SITE_FORMAT) throw new Error(`site.json is not a ${SITE_FORMAT} file`);
  api.site = site;
  // WebAssembly threads need SharedArrayBuffer, which needs cross-origin isolation (COOP/COEP).
  const cores = navigator.hardwareConcurrency || 1;
  api.threads = crossOriginIsolated ? Math.max(1, Math.min(intParam("threads") ?? cores, 16)) : 1;
  const scales = $("scale");
  for (const m of site.models) scales.add(new Option(`x${m.scale}`, String(m.scale)));
  if (params.has("scale")) scales.value = params.get("scale");
  api.webgpu = site.ort.builds.webgpu ? await probeWebgpu() : { why: "this site has no WebGPU build" };
  if (api.webgpu.adapter) {
    api.backends.push("webgpu");
    $("backend").add(new Option(`WebGPU (${api.webgpu.adapter})`, "webgpu"));
  }
  const asked = params.get("backend");
  if (asked && api.backends.includes(asked)) {
    $("backend").value = asked;
  } else if (asked) {
    // Say so, rather than run on WebAssembly while the URL says WebGPU.
    showNotice(asked === "webgpu" ? `WebGPU was asked for but is not available (${api.webgpu.why}): ` +
      "running on WebAssembly (CPU)." : `Unknown backend "${asked}": running on WebAssembly (CPU).`);
  }
  $("about").textContent = `${site.model} ${site.precision}, ${site.models.map((m) => `x${m.scale}`).join(" / ")}, ` +
    `ONNX Runtime Web ${site.ort.version}`;
  $("footer").textContent = `${site.weights} \u2014 ${site.license}. ` +
    (crossOriginIsolated ? `${api.threads} WebAssembly threads.` :
      "Not cross-origin isolated: one WebAssembly thread (serve with `carn-web serve` for threads).");
  const file = $("file"), drop = $("drop");
  file.addEventListener("change", () => file.files.length && openFile(file.files[0]));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) openFile(e.dataTransfer.files[0]);
  });
  const rerun = () => current && upscaleCurrent().catch((err) => showError(err.message || String(err)));
  scales.addEventListener("change", rerun);
  $("backend").addEventListener("change", rerun);
  $("split").addEventListener("input", setSplit);
  $("download").addEventListener("click", download);
  api.state = "ready";
}

api.ready = start().catch((err) => showError(err.message || String(err)));
