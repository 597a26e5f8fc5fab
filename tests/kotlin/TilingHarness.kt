// JVM test driver for export/samples/CarnTiling.kt; tests/test_kotlin_tiling.py compiles the two
// together with kotlinc and runs the commands below, comparing what they write with Python.
//
//   plans CASES.json OUT.json     the tile plans (or the refusal) for every case Python generated
//   local CASES.json OUT.json     tiled vs untiled with a deterministic local "model" of known reach
//   files DIR                     stitch tile outputs Python computed with a real artifact
//   spec MANIFEST.json            the TilingSpec read from an artifact manifest
//   pad                           padEdges / crop on a small image, and the fixed tiler's refusal
// Written for carn-mobile (MIT).

import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder
import kotlin.math.abs
import kotlin.math.max

fun main(args: Array<String>) {
    when (args.getOrNull(0)) {
        "plans" -> File(args[2]).writeText(plans(read(args[1])))
        "local" -> File(args[2]).writeText(local(read(args[1])))
        "files" -> files(File(args[1]))
        "spec" -> println(spec(TilingSpec.fromManifest(File(args[1]).readText())))
        "pad" -> println(pad())
        else -> throw IllegalArgumentException("usage: plans|local|files|spec|pad ...")
    }
}

private fun read(path: String): List<Map<*, *>> =
    (MiniJson.parse(File(path).readText()) as List<*>).map { it as Map<*, *> }

private fun Map<*, *>.int(key: String): Int = (this[key] as Double).toInt()
private fun Map<*, *>.intOrNull(key: String): Int? = (this[key] as Double?)?.toInt()

private fun json(tiles: List<Tile>): String = tiles.joinToString(",", "[", "]") {
    "[${it.y0},${it.y1},${it.x0},${it.x1},${it.coreY0},${it.coreY1},${it.coreX0},${it.coreX1}]"
}

private fun quote(s: String): String = "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"") + "\""

/** One JSON line per case: {"tiles": [...]}, {"tile": N|null} or {"error": "..."}. */
private fun plans(cases: List<Map<*, *>>): String = cases.joinToString(",\n", "[\n", "\n]") { case ->
    try {
        val h = case.int("height")
        val w = case.int("width")
        when (case["kind"]) {
            "plan" -> "{\"tiles\": ${json(TilePlans.plan(h, w, case.intOrNull("tile"), case.int("overlap")))}}"
            "fixed" -> "{\"tiles\": ${json(TilePlans.planFixed(h, w, case.int("tile_height"), case.int("tile_width"), case.int("overlap")))}}"
            "core_tile" -> "{\"tile\": ${TilePlans.coreTile(h, w, case.intOrNull("tile"), case.int("overlap"), case.intOrNull("max_side"))}}"
            else -> throw IllegalStateException("unknown case kind ${case["kind"]}")
        }
    } catch (e: IllegalArgumentException) {
        "{\"error\": ${quote(e.message ?: "")}}"
    }
}

/**
 * A deterministic stand-in for the network with a known reach, layers * radius LR pixels:
 * [layers] convolutions of (2 radius + 1)^2 taps over the 3 channels (zero padding at the edges of
 * what it is given, a bias and a leaky ReLU, like CARN's layers), then each LR pixel spread to
 * scale x scale outputs with a weight per sub-pixel. The sums run in the same order for every
 * output pixel, so tiled and untiled results can be equal exactly.
 */
class LocalModel(private val scale: Int, private val layers: Int, private val radius: Int, private val layout: Layout) {
    private val norm = 1f / (3 * (2 * radius + 1) * (2 * radius + 1))

    fun run(input: FloatArray, h: Int, w: Int): FloatArray {
        var planes = Array(3) { c -> FloatArray(h * w) { i -> input[at(c, i / w, i % w, h, w)] } }
        for (layer in 0 until layers) planes = conv(planes, h, w, layer)
        val s = scale
        val out = FloatArray(3 * h * s * w * s)
        for (c in 0 until 3) for (y in 0 until h * s) for (x in 0 until w * s) {
            val sub = 1f + 0.125f * ((y % s) * s + x % s)
            out[at(c, y, x, h * s, w * s)] = planes[c][(y / s) * w + x / s] * sub
        }
        return out
    }

    private fun conv(src: Array<FloatArray>, h: Int, w: Int, layer: Int): Array<FloatArray> =
        Array(3) { c ->
            FloatArray(h * w) { i ->
                val y = i / w
                val x = i % w
                var acc = 0.05f * (c + 1)
                for (k in 0 until 3) for (dy in -radius..radius) for (dx in -radius..radius) {
                    val yy = y + dy
                    val xx = x + dx
                    if (yy in 0 until h && xx in 0 until w) acc += weight(layer, c, k, dy, dx) * src[k][yy * w + xx]
                }
                if (acc > 0f) acc else 0.1f * acc
            }
        }

    // Mostly positive taps (mean about 1.5 x norm): no layer's output fades, so a pixel at the far
    // edge of the reach still changes the result by far more than float rounding.
    private fun weight(layer: Int, c: Int, k: Int, dy: Int, dx: Int): Float =
        (((layer * 131 + c * 71 + k * 37 + (dy + radius) * 17 + (dx + radius) * 7) % 29) - 7) / 10f * norm

    private fun at(c: Int, y: Int, x: Int, h: Int, w: Int): Int =
        if (layout == Layout.NCHW) (c * h + y) * w + x else (y * w + x) * 3 + c
}

/** Per case: the largest |tiled - untiled|, the tile count, and whether the ARGB path equals the
 *  rounded float path. */
private fun local(cases: List<Map<*, *>>): String = cases.joinToString(",\n", "[\n", "\n]") { case ->
    val h = case.int("height")
    val w = case.int("width")
    val scale = case.int("scale")
    val layout = Layout.valueOf(case["layout"] as String)
    val model = LocalModel(scale, case.int("layers"), case.int("radius"), layout)
    val fixed = case["fixed_tile"] as List<*>?
    val spec = TilingSpec(scale, case.int("overlap"), fixed?.let { (it[0] as Double).toInt() },
        fixed?.let { (it[1] as Double).toInt() }, case.intOrNull("max_side"))
    val image = RgbImage(w, h, FloatArray(3 * w * h) { i -> ((i * 7919L + (i / 3) * 104729L) % 1000L) / 999f })
    val argbIn = image.toArgb()
    val untiled = RgbImage(w * scale, h * scale, model.run(imageIn(image, layout), h, w).let { toHwc(it, h * scale, w * scale, layout) })
    val tiler = TiledUpscaler(spec, layout, { t, th, tw -> model.run(t, th, tw) }, case.intOrNull("tile"))
    val tiled = tiler.upscale(image)
    var diff = 0.0
    for (i in tiled.pixels.indices) diff = max(diff, abs(tiled.pixels[i].toDouble() - untiled.pixels[i].toDouble()))
    // The ARGB path from the 8-bit version of the same image against its own untiled run.
    val fromArgb = RgbImage.fromArgb(argbIn, w, h)
    val untiledArgb = RgbImage(w * scale, h * scale, toHwc(model.run(imageIn(fromArgb, layout), h, w), h * scale, w * scale, layout)).toArgb()
    val argbOut = tiler.upscaleArgb(argbIn, w, h)
    "{\"max_abs_diff\": $diff, \"tiles\": ${tiler.plan(h, w).size}, \"argb_equal\": ${argbOut.contentEquals(untiledArgb)}, " +
        "\"argb_equals_rounded_floats\": ${argbOut.contentEquals(tiler.upscale(fromArgb).toArgb())}}"
}

private fun imageIn(image: RgbImage, layout: Layout): FloatArray {
    val h = image.height
    val w = image.width
    return FloatArray(3 * h * w) { i ->
        if (layout == Layout.NHWC) image.pixels[i] else {
            val c = i / (h * w)
            val p = i % (h * w)
            image.pixels[3 * p + c]
        }
    }
}

private fun toHwc(data: FloatArray, h: Int, w: Int, layout: Layout): FloatArray =
    if (layout == Layout.NHWC) data else FloatArray(3 * h * w) { i -> data[(i % 3) * h * w + i / 3] }

private fun floats(file: File): FloatArray {
    val buffer = ByteBuffer.wrap(file.readBytes()).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer()
    return FloatArray(buffer.remaining()).also { buffer.get(it) }
}

private fun writeFloats(file: File, data: FloatArray) {
    val buffer = ByteBuffer.allocate(4 * data.size).order(ByteOrder.LITTLE_ENDIAN)
    buffer.asFloatBuffer().put(data)
    file.writeBytes(buffer.array())
}

/**
 * DIR holds the artifact's manifest (manifest.json), case.json {"width", "height", "layout",
 * "argb": bool}, the LR image (lr.f32, interleaved RGB floats; or lr.argb, ARGB ints), and for
 * every box of Python's plan the tile as the model reads it and the model's output for it
 * (tiles/Y0_X0.in.f32 and tiles/Y0_X0.out.f32, in the layout). The tiler calls the model in plan
 * order; each call's input must equal Python's box. Writes plan.json and sr.f32 or sr.argb.
 */
private fun files(dir: File) {
    val case = MiniJson.parse(File(dir, "case.json").readText()) as Map<*, *>
    val w = case.int("width")
    val h = case.int("height")
    val layout = Layout.valueOf(case["layout"] as String)
    val spec = TilingSpec.fromManifest(File(dir, "manifest.json").readText())
    val plan = spec.plan(h, w)
    var calls = 0
    val model = { input: FloatArray, th: Int, tw: Int ->
        val tile = plan[calls++]
        check(th == tile.height && tw == tile.width) { "call $calls: a ${th}x$tw tile, the plan has ${tile.height}x${tile.width}" }
        val name = "tiles/${tile.y0}_${tile.x0}"
        val python = File(dir, "$name.in.f32")
        check(python.isFile) { "Python's plan has no box at y0=${tile.y0}, x0=${tile.x0}" }
        check(input.contentEquals(floats(python))) { "the tile cut at y0=${tile.y0}, x0=${tile.x0} differs from Python's box" }
        floats(File(dir, "$name.out.f32"))
    }
    val tiler = TiledUpscaler(spec, layout, model)
    File(dir, "plan.json").writeText(json(plan))
    if (case["argb"] == true) {
        val buffer = ByteBuffer.wrap(File(dir, "lr.argb").readBytes()).order(ByteOrder.LITTLE_ENDIAN).asIntBuffer()
        val argb = IntArray(buffer.remaining()).also { buffer.get(it) }
        val out = tiler.upscaleArgb(argb, w, h)
        val bytes = ByteBuffer.allocate(4 * out.size).order(ByteOrder.LITTLE_ENDIAN)
        bytes.asIntBuffer().put(out)
        File(dir, "sr.argb").writeBytes(bytes.array())
    } else {
        writeFloats(File(dir, "sr.f32"), tiler.upscale(RgbImage(w, h, floats(File(dir, "lr.f32")))).pixels)
    }
    println("stitched $calls tiles")
}

private fun spec(s: TilingSpec): String =
    "{\"scale\": ${s.scale}, \"overlap\": ${s.overlap}, \"fixed_tile\": " +
        (if (s.fixed) "[${s.fixedTileHeight}, ${s.fixedTileWidth}]" else "null") + ", \"max_side\": ${s.maxSide}}"

/** A 5x7 image padded to 9x8 for a fixed 8x9 (height x width) model: what padEdges keeps and
 *  repeats, whether crop undoes it, and what the tiler says about the unpadded image. */
private fun pad(): String {
    val image = RgbImage(5, 7, FloatArray(3 * 5 * 7) { i -> i / 104f })
    val padded = padEdges(image, 9, 8)
    fun px(im: RgbImage, x: Int, y: Int) = im.pixels.copyOfRange(3 * (y * im.width + x), 3 * (y * im.width + x) + 3)
    var kept = true
    var repeated = true
    for (y in 0 until 8) for (x in 0 until 9) {
        val same = px(padded, x, y).contentEquals(px(image, minOf(x, 4), minOf(y, 6)))
        if (x < 5 && y < 7) kept = kept && same else repeated = repeated && same
    }
    val tiler = TiledUpscaler(TilingSpec(2, 3, 8, 9), Layout.NCHW, { t, _, _ -> t })
    val refusal = try { tiler.upscale(image); "none" } catch (e: IllegalArgumentException) { e.message ?: "" }
    val paddedTiles = tiler.plan(padded.height, padded.width).size
    return "{\"size\": [${padded.width}, ${padded.height}], \"kept\": $kept, \"repeated\": $repeated, " +
        "\"crop_undoes\": ${padded.crop(5, 7).pixels.contentEquals(image.pixels)}, " +
        "\"refusal\": ${quote(refusal)}, \"padded_tiles\": $paddedTiles}"
}
