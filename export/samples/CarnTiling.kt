// Exact tiling for carn-mobile artifacts in apps: cut an image into tiles, run the model on each,
// stitch the outputs back, and get exactly what one whole-image run would give.
//
// Pure Kotlin (no Android imports), so it compiles with kotlinc 1.3 and every newer Kotlin. CI
// compiles it and runs it on the JVM (tests/test_kotlin_tiling.py): its tile plans equal
// carn_mobile.upscaling.tiling's, and stitched tiles equal the untiled output. The runtime samples
// beside it (LiteRT, ONNX Runtime, the QNN NPU, ExecuTorch) call TiledUpscaler for every image.
//
// Why it is exact: the network's convolutions zero-pad at the edges of whatever they are given, so
// a tile's outer pixels differ from a whole-image run, but only within the receptive field
// (21 LR pixels for CARN and CARN-M at x2, x3 and x4). Each tile is read with that overlap around
// the core it is responsible for, and only the core of its output is kept. Where a tile touches the
// image border, the padding is the image's own, so no overlap is needed there.
//
// The plan (the same as the Python tiler's):
//  - models that take any size: near-equal cores of at most `tile` LR pixels per side, each box
//    the core plus `overlap`, clipped at the border; a box never exceeds the artifact's max_side;
//  - fixed-size models (NPU and GPU programs): every box exactly the model's size, a box that would
//    cross the border shifted inward so it ends there; images smaller than the tile are refused
//    (padEdges makes them big enough, but not exactly: it changes the pixels near that edge).
// The overlap and the fixed size come from the artifact's manifest (its "tiling" section).
//
// Written for carn-mobile (MIT).

import kotlin.math.floor
import kotlin.math.max
import kotlin.math.min

/** One model call: it reads the LR box [y0, y1) x [x0, x1) and keeps the LR core
 *  [coreY0, coreY1) x [coreX0, coreX1) of its output (times the scale). */
data class Tile(
    val y0: Int, val y1: Int, val x0: Int, val x1: Int,
    val coreY0: Int, val coreY1: Int, val coreX0: Int, val coreX1: Int
) {
    val height: Int get() = y1 - y0
    val width: Int get() = x1 - x0
}

/** One axis of a fixed-size plan: the box starts at [boxStart] and the core is [coreStart, coreEnd). */
data class FixedSpan(val boxStart: Int, val coreStart: Int, val coreEnd: Int)

/** The tile plans. Invalid arguments throw IllegalArgumentException naming the values. */
object TilePlans {
    /** [0, length) in ceil(length / tile) contiguous near-equal parts, as (start, end) pairs. */
    fun split(length: Int, tile: Int): List<Pair<Int, Int>> {
        require(length >= 1 && tile >= 1) { "length and tile must be positive, got $length and $tile" }
        val n = (length + tile - 1) / tile
        return (0 until n).map { i -> Pair(part(i, length, n), part(i + 1, length, n)) }
    }

    /** Tiles with cores of at most tile x tile LR pixels, each read with [overlap] around it and
     *  clipped at the border; tile = null gives one tile, the whole image. */
    fun plan(height: Int, width: Int, tile: Int?, overlap: Int): List<Tile> {
        require(height >= 1 && width >= 1) { "the image must be at least 1x1, got ${height}x$width" }
        require(overlap >= 0) { "overlap must be >= 0, got $overlap" }
        if (tile == null) return listOf(Tile(0, height, 0, width, 0, height, 0, width))
        val tiles = ArrayList<Tile>()
        for ((cy0, cy1) in split(height, tile)) for ((cx0, cx1) in split(width, tile)) {
            tiles.add(Tile(max(cy0 - overlap, 0), min(cy1 + overlap, height),
                max(cx0 - overlap, 0), min(cx1 + overlap, width), cy0, cy1, cx0, cx1))
        }
        return tiles
    }

    /** The core tile side for a model that takes any size up to [maxSide] LR pixels (null: no
     *  bound): [tile] (null: the whole image), made small enough that a box fits in maxSide, and
     *  null when one tile covers the image anyway. */
    fun coreTile(height: Int, width: Int, tile: Int?, overlap: Int, maxSide: Int?): Int? {
        require(tile == null || tile >= 1) { "tile must be positive, got $tile" }
        var core = tile
        if (maxSide != null && max(height, width) > maxSide) {
            val cap = maxSide - 2 * overlap
            require(cap >= 1) {
                "an artifact that accepts LR sides up to $maxSide leaves no core after an overlap of $overlap px on each side"
            }
            if (core == null || core > cap) core = cap
        }
        return if (core != null && core >= max(height, width)) null else core
    }

    /** One axis of a fixed-size plan: boxes of exactly [box] pixels over [0, length). Edge cores
     *  may be box - overlap long, inner ones box - 2 * overlap, which gives the fewest boxes,
     *  ceil((length - 2 overlap) / (box - 2 overlap)), with near-equal inner parts; each box starts
     *  at its core minus the overlap, shifted inward where it would leave the image. */
    fun splitFixed(length: Int, box: Int, overlap: Int): List<FixedSpan> {
        require(length >= 1 && box >= 1 && overlap >= 0) {
            "length and box must be positive and overlap >= 0, got $length, $box and $overlap"
        }
        require(length >= box) { "an image side of $length px is smaller than the fixed tile of $box px" }
        require(box > 2 * overlap) {
            "a fixed tile of $box px leaves no core after an overlap of $overlap px on each side"
        }
        val inner = length - 2 * overlap
        val n = (inner + (box - 2 * overlap) - 1) / (box - 2 * overlap)
        val bounds = IntArray(n + 1) { i -> overlap + part(i, inner, n) }
        bounds[0] = 0
        bounds[n] = length
        return (0 until n).map { i ->
            FixedSpan(min(max(bounds[i] - overlap, 0), length - box), bounds[i], bounds[i + 1])
        }
    }

    /** Tiles whose boxes are all exactly tileHeight x tileWidth LR pixels, row by row. */
    fun planFixed(height: Int, width: Int, tileHeight: Int, tileWidth: Int, overlap: Int): List<Tile> {
        val rows = splitFixed(height, tileHeight, overlap)
        val cols = splitFixed(width, tileWidth, overlap)
        val tiles = ArrayList<Tile>()
        for (r in rows) for (c in cols) {
            tiles.add(Tile(r.boxStart, r.boxStart + tileHeight, c.boxStart, c.boxStart + tileWidth,
                r.coreStart, r.coreEnd, c.coreStart, c.coreEnd))
        }
        return tiles
    }

    // floor(i * length / n) without overflow for any image side.
    private fun part(i: Int, length: Int, n: Int): Int = (i.toLong() * length / n).toInt()
}

/** What an app needs to tile one artifact exactly: its scale, the overlap, and its fixed LR size
 *  (fixed-shape artifacts) or largest accepted side (maxSide; null: no bound). */
class TilingSpec(
    val scale: Int,
    val overlap: Int,
    val fixedTileHeight: Int? = null,
    val fixedTileWidth: Int? = null,
    val maxSide: Int? = null
) {
    init {
        require(scale >= 1) { "scale must be positive, got $scale" }
        require(overlap >= 0) { "overlap must be >= 0, got $overlap" }
        require((fixedTileHeight == null) == (fixedTileWidth == null)) {
            "give both sides of the fixed tile or neither, got $fixedTileHeight and $fixedTileWidth"
        }
    }

    val fixed: Boolean get() = fixedTileHeight != null

    /** The tiles for a height x width image; [tile] is the core side for models that take any size
     *  (null: the whole image, where maxSide allows). */
    fun plan(height: Int, width: Int, tile: Int? = null): List<Tile> =
        if (fixedTileHeight != null && fixedTileWidth != null) {
            TilePlans.planFixed(height, width, fixedTileHeight, fixedTileWidth, overlap)
        } else {
            TilePlans.plan(height, width, TilePlans.coreTile(height, width, tile, overlap, maxSide), overlap)
        }

    companion object {
        /** Reads scale and tiling from an artifact manifest (the .json carn-export writes beside it). */
        fun fromManifest(json: String): TilingSpec {
            val manifest = MiniJson.parse(json) as? Map<*, *>
                ?: throw IllegalArgumentException("the manifest is not a JSON object")
            val tiling = manifest["tiling"] as? Map<*, *>
                ?: throw IllegalArgumentException("the manifest has no \"tiling\" section: export the artifact again with this carn-mobile")
            val fixed = (tiling["fixed_tile"] as? List<*>)?.map { (it as? Double)?.toInt() }
            require(fixed == null || (fixed.size == 2 && fixed[0] != null && fixed[1] != null)) {
                "the manifest's fixed_tile is not [height, width]: ${tiling["fixed_tile"]}"
            }
            return TilingSpec(
                scale = number(manifest, "scale"),
                overlap = number(tiling, "overlap"),
                fixedTileHeight = fixed?.get(0),
                fixedTileWidth = fixed?.get(1),
                maxSide = (tiling["max_side"] as? Double)?.toInt()
            )
        }

        private fun number(map: Map<*, *>, key: String): Int =
            (map[key] as? Double)?.toInt() ?: throw IllegalArgumentException("the manifest has no number \"$key\"")
    }
}

/** How the model's input and output tensors lay out a tile: [1, 3, H, W] or [1, H, W, 3]. */
enum class Layout { NCHW, NHWC }

/** An RGB image as interleaved floats (R, G, B per pixel, row by row) in [0, 1]. */
class RgbImage(val width: Int, val height: Int, val pixels: FloatArray = FloatArray(3 * width * height)) {
    init {
        require(width >= 1 && height >= 1) { "an image is at least 1x1, got ${width}x$height" }
        require(pixels.size == 3 * width * height) {
            "a ${width}x$height RGB image has ${3 * width * height} floats, got ${pixels.size}"
        }
    }

    /** Opaque ARGB pixels (Android's Bitmap.createBitmap takes them): clamped to [0, 1], times 255,
     *  rounded half up, as carn_mobile.metrics.to_uint8. */
    fun toArgb(): IntArray = IntArray(width * height) { i ->
        argb(pixels[3 * i], pixels[3 * i + 1], pixels[3 * i + 2])
    }

    /** The top-left width x height pixels. */
    fun crop(width: Int, height: Int): RgbImage {
        require(width in 1..this.width && height in 1..this.height) {
            "cannot crop ${width}x$height out of ${this.width}x${this.height}"
        }
        val out = RgbImage(width, height)
        for (y in 0 until height) System.arraycopy(pixels, 3 * y * this.width, out.pixels, 3 * y * width, 3 * width)
        return out
    }

    companion object {
        /** ARGB pixels (Android's Bitmap.getPixels) to RGB floats (byte / 255); alpha is dropped. */
        fun fromArgb(argb: IntArray, width: Int, height: Int): RgbImage {
            require(argb.size == width * height) { "a ${width}x$height image has ${width * height} pixels, got ${argb.size}" }
            return RgbImage(width, height, FloatArray(3 * width * height) { i -> channel(argb[i / 3], i % 3) })
        }
    }
}

/** [image] made at least minWidth x minHeight by repeating its last column and row, for a
 *  fixed-size model and a smaller image. Not exact: the pixels near the padded edge change. */
fun padEdges(image: RgbImage, minWidth: Int, minHeight: Int): RgbImage {
    if (image.width >= minWidth && image.height >= minHeight) return image
    val w = max(image.width, minWidth)
    val h = max(image.height, minHeight)
    val out = RgbImage(w, h)
    for (y in 0 until h) for (x in 0 until w) {
        val from = 3 * (min(y, image.height - 1) * image.width + min(x, image.width - 1))
        System.arraycopy(image.pixels, from, out.pixels, 3 * (y * w + x), 3)
    }
    return out
}

/**
 * Upscales images of any size through a model that runs one tile at a time.
 *
 * [runTile] gets one LR tile as floats in [layout] with its height and width, and returns the
 * model's output for it in the same layout (3 x height*scale x width*scale floats). [coreTile] is
 * the largest core side per call for models that take any size (memory); fixed-size models ignore it.
 */
class TiledUpscaler(
    val spec: TilingSpec,
    val layout: Layout,
    private val runTile: (FloatArray, Int, Int) -> FloatArray,
    val coreTile: Int? = null
) {
    /** The tiles one height x width image is cut into. */
    fun plan(height: Int, width: Int): List<Tile> = spec.plan(height, width, coreTile)

    /** The upscaled image, unrounded: exactly the whole-image output of the model. */
    fun upscale(image: RgbImage, progress: ((Int, Int) -> Unit)? = null): RgbImage {
        val s = spec.scale
        val out = RgbImage(image.width * s, image.height * s)
        run(image.height, image.width, { p, c -> image.pixels[3 * p + c] }, progress) { tile, hr ->
            forCore(tile, s, out.width) { index, outIndex, c -> out.pixels[3 * outIndex + c] = hr[index] }
        }
        return out
    }

    /** ARGB in, ARGB out (what Android's Bitmap holds): tiles are cut straight from the ARGB
     *  pixels and rounded as they are stitched, so memory holds the two pixel arrays and one
     *  tile's floats. Same values as upscale(RgbImage.fromArgb(...)).toArgb(). */
    fun upscaleArgb(argb: IntArray, width: Int, height: Int, progress: ((Int, Int) -> Unit)? = null): IntArray {
        require(argb.size == width * height) { "a ${width}x$height image has ${width * height} pixels, got ${argb.size}" }
        val s = spec.scale
        val out = IntArray(width * s * height * s)
        val rgb = FloatArray(3)
        val read = { p: Int, c: Int -> channel(argb[p], c) }
        run(height, width, read, progress) { tile, hr ->
            forCore(tile, s, width * s) { index, outIndex, c ->
                rgb[c] = hr[index]
                if (c == 2) out[outIndex] = argb(rgb[0], rgb[1], rgb[2])
            }
        }
        return out
    }

    /** Plans, then for each tile: cut its box with [read] (pixel index, channel -> value), run the
     *  model, check the output's size, and hand it to [write]. */
    private fun run(
        height: Int,
        width: Int,
        read: (Int, Int) -> Float,
        progress: ((Int, Int) -> Unit)?,
        write: (Tile, FloatArray) -> Unit
    ) {
        val tiles = plan(height, width)
        val s = spec.scale
        for ((i, tile) in tiles.withIndex()) {
            val h = tile.height
            val w = tile.width
            val box = FloatArray(3 * h * w)
            for (y in 0 until h) for (x in 0 until w) {
                val p = (tile.y0 + y) * width + tile.x0 + x
                for (c in 0 until 3) box[index(c, y, x, h, w)] = read(p, c)
            }
            val hr = runTile(box, h, w)
            val expected = 3 * h * s * w * s
            check(hr.size == expected) {
                "the model returned ${hr.size} floats for a ${h}x$w tile, expected $expected (3 x ${h * s} x ${w * s})"
            }
            write(tile, hr)
            progress?.invoke(i + 1, tiles.size)
        }
    }

    /** Visits the core of a tile's output: (index in the output tensor, pixel index in the
     *  outWidth-wide upscaled image, channel), the channels of one pixel in order R, G, B. */
    private inline fun forCore(tile: Tile, s: Int, outWidth: Int, visit: (Int, Int, Int) -> Unit) {
        val h = tile.height * s
        val w = tile.width * s
        for (y in tile.coreY0 * s until tile.coreY1 * s) for (x in tile.coreX0 * s until tile.coreX1 * s) {
            val outIndex = y * outWidth + x
            for (c in 0 until 3) visit(index(c, y - tile.y0 * s, x - tile.x0 * s, h, w), outIndex, c)
        }
    }

    private fun index(c: Int, y: Int, x: Int, h: Int, w: Int): Int =
        if (layout == Layout.NCHW) (c * h + y) * w + x else (y * w + x) * 3 + c
}

/** Channel c (0 R, 1 G, 2 B) of an ARGB pixel as a float in [0, 1]: byte / 255. */
private fun channel(argb: Int, c: Int): Float = ((argb shr (16 - 8 * c)) and 0xFF) / 255f

private fun argb(r: Float, g: Float, b: Float): Int =
    (0xFF shl 24) or (level(r) shl 16) or (level(g) shl 8) or level(b)

// Double arithmetic, as numpy's float64 in to_uint8, so both round the same values the same way.
private fun level(v: Float): Int = floor(min(max(v.toDouble(), 0.0), 1.0) * 255.0 + 0.5).toInt()

/** The small JSON reader the manifest needs (objects, arrays, strings, numbers as Double, true,
 *  false, null); pure Kotlin, so the core needs no Android or library classes. */
internal object MiniJson {
    fun parse(text: String): Any? {
        val reader = Reader(text)
        val value = reader.value()
        reader.skipSpace()
        require(reader.pos == text.length) { "unexpected text after the JSON value at offset ${reader.pos}" }
        return value
    }

    private class Reader(val text: String) {
        var pos = 0

        fun skipSpace() {
            while (pos < text.length && text[pos].isWhitespace()) pos++
        }

        fun value(): Any? {
            skipSpace()
            require(pos < text.length) { "JSON ends early" }
            return when (text[pos]) {
                '{' -> obj()
                '[' -> array()
                '"' -> string()
                't' -> literal("true", true)
                'f' -> literal("false", false)
                'n' -> literal("null", null)
                else -> number()
            }
        }

        private fun obj(): Map<String, Any?> {
            val out = LinkedHashMap<String, Any?>()
            pos++
            skipSpace()
            if (peek() == '}') { pos++; return out }
            while (true) {
                skipSpace()
                val key = string()
                skipSpace()
                expect(':')
                out[key] = value()
                skipSpace()
                if (peek() == ',') { pos++; continue }
                expect('}')
                return out
            }
        }

        private fun array(): List<Any?> {
            val out = ArrayList<Any?>()
            pos++
            skipSpace()
            if (peek() == ']') { pos++; return out }
            while (true) {
                out.add(value())
                skipSpace()
                if (peek() == ',') { pos++; continue }
                expect(']')
                return out
            }
        }

        private fun string(): String {
            expect('"')
            val out = StringBuilder()
            while (true) {
                require(pos < text.length) { "unterminated JSON string" }
                val ch = text[pos++]
                when (ch) {
                    '"' -> return out.toString()
                    '\\' -> {
                        val esc = text[pos++]
                        when (esc) {
                            'n' -> out.append('\n')
                            't' -> out.append('\t')
                            'r' -> out.append('\r')
                            'b' -> out.append('\b')
                            'f' -> out.append('\u000C')
                            'u' -> { out.append(text.substring(pos, pos + 4).toInt(16).toChar()); pos += 4 }
                            else -> out.append(esc)
                        }
                    }
                    else -> out.append(ch)
                }
            }
        }

        private fun number(): Double {
            val start = pos
            while (pos < text.length && (text[pos].isDigit() || text[pos] in "+-.eE")) pos++
            return text.substring(start, pos).toDoubleOrNull()
                ?: throw IllegalArgumentException("bad JSON number at offset $start")
        }

        private fun literal(word: String, value: Any?): Any? {
            require(text.startsWith(word, pos)) { "bad JSON literal at offset $pos" }
            pos += word.length
            return value
        }

        private fun peek(): Char? = if (pos < text.length) text[pos] else null

        private fun expect(ch: Char) {
            require(peek() == ch) { "expected '$ch' at offset $pos of the JSON" }
            pos++
        }
    }
}
