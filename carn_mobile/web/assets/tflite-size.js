// Re-size a .tflite super-resolution model to another input size by rewriting its tensor shapes.
//
// LiteRT.js compiles a model at the shapes stored in it and has no resize_tensor_input. The
// litert target's graphs hold no size in their ops (CONV_2D, ADD, SPLIT, DEPTH_TO_SPACE, ...), so
// resizing is only the shapes of the activation tensors: every rank-4 NHWC activation is
// [1, kH*H, kW*W, C] for the stored input H x W and whole factors kH, kW (1 for the LR body, 2 or 4
// after an upsampler stage). This rewrites those numbers in place for a new H x W, which is what
// the LiteRT interpreter's own resize computes (tests/test_web_litert.py checks both agree).
// Anything else (a constant or non-rank-4 activation that scales, a factor that is not whole)
// throws: such a model cannot be resized this way.
//
// FlatBuffers, little-endian: a table starts with an int32 offset back to its vtable, the vtable
// holds uint16 field offsets; a vector is a uint32 length followed by its elements. Field numbers
// are the TFLite schema's (Model: subgraphs 2, buffers 4; SubGraph: tensors 0, inputs 1,
// operators 3; Operator: inputs 1, outputs 2; Tensor: shape 0, buffer 2, shape_signature 7;
// Buffer: data 0, size 2).

function reader(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const u32 = (p) => view.getUint32(p, true);
  const field = (table, index) => {
    const vtable = table - view.getInt32(table, true);
    const vsize = view.getUint16(vtable, true);
    const at = 4 + 2 * index;
    if (at >= vsize) return 0;
    const offset = view.getUint16(vtable + at, true);
    return offset ? table + offset : 0;
  };
  const ref = (p) => p + u32(p); // follow a uoffset
  const vector = (table, index) => {
    const p = field(table, index);
    if (!p) return null;
    const start = ref(p);
    return { length: u32(start), start: start + 4 };
  };
  const tables = (table, index) => {
    const v = vector(table, index);
    if (!v) return [];
    return Array.from({ length: v.length }, (_, i) => ref(v.start + 4 * i));
  };
  return { view, u32, field, vector, tables };
}

/** Whether buffer table `b` holds data (a constant), inline or in the file's external area. */
function isConstant(r, b) {
  const data = r.vector(b, 0);
  if (data && data.length > 0) return true;
  const size = r.field(b, 2);
  return size !== 0 && r.view.getBigUint64(size, true) > 0n;
}

/**
 * A copy of `bytes` (a .tflite) whose input is `height` x `width` (NHWC), or throws with the
 * reason the model cannot be resized. Returns {bytes, stored: [H, W], tensors: n rewritten}.
 */
export function tfliteAtSize(bytes, height, width) {
  if (!(Number.isInteger(height) && Number.isInteger(width) && height >= 1 && width >= 1)) {
    throw new Error(`a model size must be whole positive pixels, got ${height}x${width}`);
  }
  const out = new Uint8Array(bytes); // a copy: the cached original stays as fetched
  const r = reader(out);
  const root = r.u32(0);
  const subgraphs = r.tables(root, 2);
  if (subgraphs.length !== 1) throw new Error(`expected one subgraph, found ${subgraphs.length}`);
  const buffers = r.tables(root, 4);
  const graph = subgraphs[0];
  const tensors = r.tables(graph, 0);
  const inputs = r.vector(graph, 1);
  if (!inputs || inputs.length !== 1) throw new Error("expected a model with one input");
  const shapeOf = (t, index = 0) => {
    const v = r.vector(t, index);
    return v ? Array.from({ length: v.length }, (_, i) => r.view.getInt32(v.start + 4 * i, true)) : null;
  };
  const input = tensors[r.view.getInt32(inputs.start, true)];
  const [n, H, W, C] = shapeOf(input) || [];
  if (n !== 1 || !(H > 0 && W > 0) || C !== 3) {
    throw new Error(`expected an NHWC input [1, H, W, 3], found [${shapeOf(input)}]`);
  }
  // Constants: tensors with data, and what ops compute from constants alone (an fp16 model's
  // DEQUANTIZE of its fp16 weights to float32). Ops are stored in execution order.
  const constants = new Set();
  tensors.forEach((t, i) => {
    const bufferField = r.field(t, 2);
    const buffer = bufferField ? r.u32(bufferField) : 0;
    if (buffer < buffers.length && isConstant(r, buffers[buffer])) constants.add(i);
  });
  const indices = (table, index) => {
    const v = r.vector(table, index);
    return v ? Array.from({ length: v.length }, (_, i) => r.view.getInt32(v.start + 4 * i, true)) : [];
  };
  for (const op of r.tables(graph, 3)) {
    const ins = indices(op, 1).filter((i) => i >= 0); // -1: an optional input left out
    if (ins.length > 0 && ins.every((i) => constants.has(i))) indices(op, 2).forEach((i) => constants.add(i));
  }
  // Read every shape before writing any: a vector the converter shared must be read as stored.
  const plan = [];
  const constantShapes = new Set();
  for (const [i, t] of tensors.entries()) {
    const constant = constants.has(i);
    const shape = shapeOf(t);
    if (!shape) continue;
    if (constant) {
      constantShapes.add(r.vector(t, 0).start);
      continue;
    }
    if (shape.length !== 4) {
      throw new Error(`activation of rank ${shape.length} ([${shape}]): only NHWC activations can be resized`);
    }
    const kh = shape[1] / H, kw = shape[2] / W;
    if (!Number.isInteger(kh) || !Number.isInteger(kw) || shape[0] !== 1) {
      throw new Error(`activation [${shape}] is not a whole multiple of the ${H}x${W} input`);
    }
    for (const index of [0, 7]) { // shape, and shape_signature where the converter wrote one
      const v = r.vector(t, index);
      if (!v || v.length !== 4) continue;
      const old = shapeOf(t, index);
      plan.push([v.start, [old[0], old[1] > 0 ? kh * height : old[1], old[2] > 0 ? kw * width : old[2], old[3]]]);
    }
  }
  const done = new Map(); // vector position -> its new content
  for (const [start, next] of plan) {
    if (constantShapes.has(start)) throw new Error("an activation shares its shape with a constant");
    if (done.has(start) && done.get(start) !== String(next)) {
      throw new Error("two tensors share a shape that scales differently");
    }
    done.set(start, String(next));
  }
  for (const [start, next] of plan) next.forEach((d, i) => r.view.setInt32(start + 4 * i, d, true));
  const rewritten = new Set(plan.map(([start]) => start)).size;
  return { bytes: out, stored: [H, W], tensors: rewritten };
}
