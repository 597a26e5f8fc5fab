// carn-mobile web page: runs an exported CARN / CARN-M with LiteRT.js or ONNX Runtime Web, tile by tile.
//
// Plain ES modules, no build step. site.json (written by `carn-export --target web`) names the
// runtimes, which one runs each backend by default, the models (one per scale and runtime) with
// their tiling overlap and tile size, and every runtime file with its integrity hash. Tiling
// follows carn-upscale exactly (carn_mobile/upscaling/tiling.py): near-equal cores, each read
// with `overlap` LR pixels around it and clipped at the border, so the stitched output equals
// the untiled model output. A LiteRT.js model is re-sized to each tile (tflite-size.js).

import { tfliteAtSize } from "./tflite-size.js";

const SITE_FORMAT = "carn-mobile/web-site@2";
const RUNTIME_LABELS = { ort: "ONNX Runtime Web", litert: "LiteRT.js" };
const BACKEND_LABELS = { wasm: "WebAssembly", webgpu: "WebGPU" };

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

// The same with one relaxed-SIMD instruction (i8x16.relaxed_swizzle of two v128.const), which
// LiteRT.js's relaxed and threaded builds need.
const RELAXED_SIMD_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b,
  0x03, 0x02, 0x01, 0x00,
  0x0a, 0x2b, 0x01, 0x29, 0x00,
  0xfd, 0x0c, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0xfd, 0x0c, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0xfd, 0x80, 0x02, //                               i8x16.relaxed_swizzle (0x100)
  0x0b,
]);

function validates(bytes) {
  try {
    return typeof WebAssembly === "object" && WebAssembly.validate(bytes);
  } catch {
    return false;
  }
}

/** True when this browser's WebAssembly has SIMD. */
export const hasWasmSimd = () => validates(SIMD_PROBE);
/** True when it also has relaxed SIMD. */
export const hasRelaxedSimd = () => validates(RELAXED_SIMD_PROBE);

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

/** A module from checked bytes (a blob URL), so what runs is what was checked. */
const asScript = (bytes) => URL.createObjectURL(new Blob([bytes], { type: "text/javascript" }));

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

/** Which LiteRT.js build runs here: relaxed SIMD with threads, relaxed SIMD, or plain SIMD. */
function litertBuild(threads) {
  const asked = params.get("litertBuild"); // for carn-web bench's feature comparison
  if (asked) return asked;
  if (!hasRelaxedSimd()) return "compat";
  return crossOriginIsolated && threads > 1 ? "threaded" : "relaxed";
}

let litertRuntime = null;

/** LiteRT.js (one instance per page: its loader keeps global state), every file integrity-checked. */
async function loadLiteRt(site, threads) {
  if (litertRuntime) return litertRuntime;
  const build = litertBuild(threads);
  const files = site.litert.builds[build];
  if (!files) throw new Error(`this site has no LiteRT.js build "${build}"`);
  litertRuntime = (async () => {
    const [core, utils, glue, binary] = await Promise.all([
      fetchChecked(site.litert.module, "LiteRT.js"),
      fetchChecked(site.litert.utils, "LiteRT.js's loader helper"),
      fetchChecked(files.glue, "LiteRT.js's WebAssembly loader"),
      fetchChecked(files.wasm, "LiteRT.js's WebAssembly"),
    ]);
    // The API module imports its helper by package name: point that import at the checked copy.
    const specifier = '"@litertjs/wasm-utils"';
    const source = new TextDecoder().decode(core);
    if (!source.includes(specifier)) throw new Error(`LiteRT.js ${site.litert.version} does not import ${specifier}`);
    const litert = await import(asScript(source.replace(specifier, JSON.stringify(asScript(utils)))));
    // Emscripten takes the checked binary from Module.wasmBinary instead of fetching it; the
    // "#.js" suffix tells loadLiteRt that this is the loader itself, not a folder to look in.
    const loader = asScript(glue);
    self.Module = { wasmBinary: binary, mainScriptUrlOrBlob: loader };
    await litert.loadLiteRt(`${loader}#litert.js`);
    return { litert, build, threads: build === "threaded" ? threads : 1 };
  })();
  try {
    return await litertRuntime;
  } catch (err) {
    litertRuntime = null;
    throw err;
  }
}

/** Most compiled sizes a LiteRT.js model keeps (a tiled image needs at most 4 distinct boxes). */
const COMPILED_SIZES = 6;

/** A run(NCHW data, h, w) for one LiteRT.js model: re-sized and compiled once per box size. */
async function litertSession(site, model, threads) {
  const { litert, threads: usable } = await loadLiteRt(site, threads);
  const bytes = new Uint8Array(await fetchChecked({ url: model.file, integrity: model.integrity },
    `the x${model.scale} model`));
  const compiled = new Map();
  const compile = async (h, w) => {
    const key = `${h}x${w}`;
    if (compiled.has(key)) return compiled.get(key);
    let resized;
    try {
      resized = tfliteAtSize(bytes, h, w).bytes;
    } catch (err) {
      throw new Error(`${model.file} cannot be re-sized to ${h}x${w}: ${err.message}`);
    }
    const promise = litert.loadAndCompile(resized, { accelerator: "wasm", cpuOptions: { numThreads: usable } })
      .catch((err) => {
        compiled.delete(key);
        throw new Error(`LiteRT.js could not load ${model.file}: ${String(err.message || err).split("\n")[0]}`);
      });
    compiled.set(key, promise);
    if (compiled.size > COMPILED_SIZES) { // drop the oldest size and free its memory
      const [oldest, first] = compiled.entries().next().value;
      compiled.delete(oldest);
      first.then((m) => m.delete(), () => {});
    }
    return promise;
  };
  await compile(32, 32); // fail at load time, not at the first tile
  // LiteRT.js runs one call at a time: two overlapping runs (a menu change while a tile runs)
  // hang its threaded build, so each call waits for the one before.
  let previous = Promise.resolve();
  const run = (data, h, w) => {
    const next = previous.then(() => runOnce(data, h, w));
    previous = next.catch(() => {});
    return next;
  };
  const runOnce = async (data, h, w) => {
    const compiledModel = await compile(h, w);
    const plane = h * w;
    const nhwc = new Float32Array(3 * plane);
    for (let q = 0; q < plane; q++) {
      nhwc[3 * q] = data[q];
      nhwc[3 * q + 1] = data[plane + q];
      nhwc[3 * q + 2] = data[2 * plane + q];
    }
    const input = new litert.Tensor(nhwc, [1, h, w, 3]);
    let outputs;
    try {
      outputs = await compiledModel.run(input);
    } finally {
      input.delete();
    }
    const values = outputs[0].toTypedArray();
    outputs.forEach((t) => t.delete());
    const hplane = values.length / 3;
    const nchw = new Float32Array(values.length);
    for (let q = 0; q < hplane; q++) {
      nchw[q] = values[3 * q];
      nchw[hplane + q] = values[3 * q + 1];
      nchw[2 * hplane + q] = values[3 * q + 2];
    }
    return nchw;
  };
  return { run };
}

const sessions = new Map();

async function loadSession(site, model, backend, threads) {
  const key = `${model.file}|${backend}`;
  if (!sessions.has(key) && model.runtime === "litert") sessions.set(key, litertSession(site, model, threads));
  if (!sessions.has(key)) {
    sessions.set(key, (async () => {
      const ort = await loadOrt(site, backend, threads);
      const bytes = await fetchChecked({ url: model.file, integrity: model.integrity }, `the x${model.scale} model`);
      let session;
      try {
        session = await ort.InferenceSession.create(new Uint8Array(bytes), {
          executionProviders: [backend], graphOptimizationLevel: "all",
          // ?profile=1 (carn-web bench --profile): ONNX Runtime's per-kernel profile, logged to the
          // console by endProfiling.
          enableProfiling: params.get("profile") === "1",
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
  /** What this browser's WebAssembly has: {simd, relaxedSimd, threads} (threads: cross-origin isolated). */
  features: null,
  /** {adapter: "vendor architecture"} when WebGPU is usable, else {why: "..."}. */
  webgpu: { why: "not checked yet" },
  /** What the page says when it runs something other than what was asked (no silent fallback). */
  notice: null,
  /** Run the untiled model on one NCHW float32 tensor (what parity checks compare); `runtime`
   *  defaults to the one the site runs `backend` on. */
  async runTensor(scale, data, h, w, backend = "wasm", runtime = null) {
    runtime ??= api.site.backends[backend];
    checkBackend(backend, runtime);
    const model = modelFor(scale, runtime);
    const { run } = await loadSession(api.site, model, backend, api.threads);
    return Float32Array.from(await run(Float32Array.from(data), h, w));
  },
  /** Log the ONNX Runtime Web profile of the x`scale` model on `backend` to the console (the page
   *  must have been opened with ?profile=1 and the model run). */
  async endProfiling(scale, backend = "wasm") {
    const model = modelFor(scale, "ort");
    const { session } = await loadSession(api.site, model, backend, api.threads);
    session.endProfiling();
  },
  /** The last result's RGBA pixels as base64 (for tests reading the output back). */
  resultBase64() {
    return toBase64(api.result.data);
  },
  toBase64,
};
window.carnWeb = api;

/** Refuse a backend (or runtime) this browser or site cannot run, rather than quietly running another. */
function checkBackend(backend, runtime) {
  if (!api.backends.includes(backend)) {
    throw new Error(backend === "webgpu" ? `WebGPU is not available here (${api.webgpu.why})` :
      `unknown backend ${backend}: this page runs ${api.backends.join(" or ")}`);
  }
  if (!api.site.models.some((m) => m.runtime === runtime && m.tile[backend])) {
    throw new Error(`this site has no ${RUNTIME_LABELS[runtime] || runtime} model for ${BACKEND_LABELS[backend]}`);
  }
}

function modelFor(scale, runtime) {
  const model = api.site.models.find((m) => m.scale === Number(scale) && m.runtime === runtime);
  if (!model) throw new Error(`this site has no x${scale} model for ${RUNTIME_LABELS[runtime] || runtime}`);
  return model;
}

/** The menu's choice: [backend, runtime]. */
const chosen = () => $("backend").value.split(":");

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

let upscaling = Promise.resolve();

/** Upscale the current image; a call made while one runs waits for it (menus change quickly). */
function upscaleCurrent() {
  const next = upscaling.then(upscaleOnce);
  upscaling = next.catch(() => {});
  return next;
}

async function upscaleOnce() {
  if (!current) return;
  clearError();
  api.state = "running";
  const site = api.site;
  const [backend, runtime] = chosen();
  checkBackend(backend, runtime);
  const model = modelFor($("scale").value, runtime);
  const { bitmap, name } = current;
  const outPixels = bitmap.width * bitmap.height * model.scale * model.scale;
  const limit = intParam("maxOutputPixels") ?? site.maxOutputPixels;
  if (outPixels > limit) {
    throw new Error(`${name} is ${bitmap.width}x${bitmap.height}: at x${model.scale} that is ${(outPixels / 1e6).toFixed(1)} ` +
      `MP of output, over this page's limit of ${(limit / 1e6).toFixed(1)} MP; use a smaller image or carn-upscale`);
  }
  current.image ??= pixelsOf(bitmap);
  const tile = intParam("tile") ?? model.tile[backend];
  $("status").textContent = `Loading the x${model.scale} model (${RUNTIME_LABELS[runtime]}, ${BACKEND_LABELS[backend]})\u2026`;
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
  api.result = { ...result, ms, scale: model.scale, backend, runtime, tile, name };
  show(result, bitmap);
  $("status").textContent = `x${model.scale}: ${bitmap.width}x${bitmap.height} \u2192 ${result.width}x${result.height} ` +
    `in ${(ms / 1000).toFixed(2)} s (${result.tiles} tile${result.tiles === 1 ? "" : "s"} of at most ${tile} px, ` +
    `${describeBackend(backend, runtime)}, ${site.precision})`;
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
function describeBackend(backend, runtime) {
  const name = `${RUNTIME_LABELS[runtime]} ${api.site[runtime].version}`;
  if (backend === "webgpu") return `${name}, WebGPU on the ${api.webgpu.adapter} adapter`;
  let threads = api.threads, build = "SIMD";
  if (runtime === "litert") {
    build = { threaded: "relaxed SIMD", relaxed: "relaxed SIMD", compat: "SIMD" }[litertBuild(api.threads)] || "SIMD";
    threads = litertBuild(api.threads) === "threaded" ? api.threads : 1;
  }
  return `${name}, WebAssembly ${build}, ${threads} thread${threads === 1 ? "" : "s"}`;
}

/** The menu: each backend on its default runtime first, then on the site's other runtimes. */
function fillBackendMenu(site) {
  const menu = $("backend");
  menu.textContent = "";
  const runtimes = [...new Set(site.models.map((m) => m.runtime))];
  for (const backend of api.backends) {
    const first = site.backends[backend];
    const others = runtimes.filter((r) => r !== first && site.models.some((m) => m.runtime === r && m.tile[backend]));
    for (const runtime of [first, ...others].filter(Boolean)) {
      const where = backend === "webgpu" ? `WebGPU (${api.webgpu.adapter})` : "WebAssembly (CPU)";
      menu.add(new Option(`${where} \u00b7 ${RUNTIME_LABELS[runtime]}`, `${backend}:${runtime}`));
    }
  }
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
  api.features = { simd: true, relaxedSimd: hasRelaxedSimd(), threads: crossOriginIsolated };
  const scales = $("scale");
  for (const scale of new Set(site.models.map((m) => m.scale))) scales.add(new Option(`x${scale}`, String(scale)));
  if (params.has("scale")) scales.value = params.get("scale");
  api.webgpu = site.backends.webgpu ? await probeWebgpu() : { why: "this site has no WebGPU runtime" };
  if (api.webgpu.adapter) api.backends.push("webgpu");
  fillBackendMenu(site);
  const asked = params.get("backend") || (params.has("runtime") ? "wasm" : null);
  const askedRuntime = params.get("runtime") || (asked && site.backends[asked]);
  if (asked && api.backends.includes(asked)) {
    const value = `${asked}:${askedRuntime}`;
    if (![...$("backend").options].some((o) => o.value === value)) {
      throw new Error(`this site has no ${RUNTIME_LABELS[askedRuntime] || askedRuntime} model for ${BACKEND_LABELS[asked]}`);
    }
    $("backend").value = value;
  } else if (asked) {
    // Say so, rather than run on WebAssembly while the URL says WebGPU.
    showNotice(asked === "webgpu" ? `WebGPU was asked for but is not available (${api.webgpu.why}): ` +
      "running on WebAssembly (CPU)." : `Unknown backend "${asked}": running on WebAssembly (CPU).`);
  }
  const scalesText = [...new Set(site.models.map((m) => `x${m.scale}`))].join(" / ");
  $("about").textContent = `${site.model} ${site.precision}, ${scalesText}, ` +
    site.runtimes.map((r) => `${RUNTIME_LABELS[r]} ${site[r].version}`).join(" and ");
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
