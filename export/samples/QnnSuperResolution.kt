// ONNX Runtime Android + the QNN execution provider: run a carn-export qnn artifact on the phone's
// Hexagon NPU, tile by tile, and get a Bitmap back.
//
// Files (carn-export --target qnn --scale 4 --shape 128x128), all in the app's assets:
//   carn-m_x4_int8_128x128.qnn.onnx                  the QDQ ONNX (any SoC; compiled on the phone)
//   carn-m_x4_int8_128x128.qnn.onnx.sm8650_ctx.onnx  one EPContext model per SoC, context binary
//   ...                                              embedded: loads without compiling
// The model takes one fixed LR size (the HTP has no dynamic shapes), so bigger images are cut
// into tiles of that size with 21 LR pixels of overlap (the network's receptive field): the
// result equals a whole-image run exactly. An image smaller than the tile is padded by repeating
// its edge, which changes the pixels near that edge (not exact there).
//
// Order tried, and reported in `backend`: the SoC's EPContext model on the HTP, then the QDQ model
// compiled on the HTP, then the QDQ model on the CPU EP. QNN sessions are made with
// session.disable_cpu_ep_fallback=1, so a graph the HTP cannot take fully fails here and the next
// choice is tried, instead of silently running partly on the CPU.
//
// Gradle: implementation("com.microsoft.onnxruntime:onnxruntime-android-qnn:<version>") (ONNX
// Runtime with the QNN EP and Qualcomm's HTP libraries; pick the version whose QNN SDK matches the
// manifest's versions.qnn-sdk: a context binary needs a runtime at least as new as the SDK that
// built it). Written for carn-mobile (MIT). Not compiled in this repository's CI (no Android
// toolchain); bitmapToPlanarRgb / planarRgbToBitmap are in OnnxSuperResolution.kt.

import ai.onnxruntime.OnnxTensor
import ai.onnxruntime.OrtEnvironment
import ai.onnxruntime.OrtSession
import ai.onnxruntime.TensorInfo
import android.content.Context
import android.graphics.Bitmap
import android.os.Build
import java.nio.FloatBuffer

class QnnSuperResolution(
    context: Context,
    artifact: String = "carn-m_x4_int8_128x128.qnn.onnx",
    private val scale: Int = 4,
) : AutoCloseable {
    private val env = OrtEnvironment.getEnvironment()
    private val session: OrtSession

    /** Which path runs: "htp-context (sm8650)", "htp-compiled" or "cpu". */
    val backend: String

    /** LR tile height and width the model takes (from its input shape). */
    val tileH: Int
    val tileW: Int

    init {
        val assets = context.assets.list("")?.toSet() ?: emptySet()
        val soc = socName()
        val contextModel = soc?.let { "$artifact.${it}_ctx.onnx" }?.takeIf { it in assets }
        val tries = buildList {
            if (contextModel != null) add(Triple("htp-context ($soc)", contextModel, true))
            add(Triple("htp-compiled", artifact, true))
            add(Triple("cpu", artifact, false))
        }
        var opened: Pair<String, OrtSession>? = null
        val failures = mutableListOf<String>()
        for ((name, asset, htp) in tries) {
            try {
                val bytes = context.assets.open(asset).use { it.readBytes() }
                opened = name to env.createSession(bytes, options(htp))
                break
            } catch (e: Exception) {   // no HTP on this phone, an older QNN runtime, a partial graph ...
                failures += "$name: ${e.message?.lineSequence()?.firstOrNull()}"
            }
        }
        val (name, s) = opened ?: error("no way to run $artifact: ${failures.joinToString("; ")}")
        backend = name
        session = s
        val shape = (session.inputInfo.getValue("lr").info as TensorInfo).shape   // [1, 3, H, W]
        tileH = shape[2].toInt()
        tileW = shape[3].toInt()
    }

    private fun options(htp: Boolean) = OrtSession.SessionOptions().apply {
        if (htp) {
            addConfigEntry("session.disable_cpu_ep_fallback", "1")
            addQnn(mapOf("backend_path" to "libQnnHtp.so"))
        }
    }

    /** "sm8650" from Build.SOC_MODEL (API 31+); null where the phone does not say. */
    private fun socName(): String? =
        if (Build.VERSION.SDK_INT >= 31) Build.SOC_MODEL.lowercase().takeIf { it.startsWith("sm") } else null

    /** Upscales a bitmap of any size through the fixed-size model, tile by tile. */
    fun upscale(bitmap: Bitmap): Bitmap {
        val (w, h) = bitmap.width to bitmap.height
        val rgb = padToAtLeast(bitmapToPlanarRgb(bitmap), w, h, tileW, tileH)
        val pw = maxOf(w, tileW)
        val ph = maxOf(h, tileH)
        val out = FloatArray(3 * ph * scale * pw * scale)
        val tile = FloatArray(3 * tileH * tileW)
        for (rows in tiles(ph, tileH)) for (cols in tiles(pw, tileW)) {
            for (c in 0 until 3) for (y in 0 until tileH) {
                System.arraycopy(rgb, (c * ph + rows.start + y) * pw + cols.start, tile, (c * tileH + y) * tileW, tileW)
            }
            val sr = run(tile)                                         // [3, tileH*s, tileW*s]
            val srW = tileW * scale
            for (c in 0 until 3) for (y in rows.keepFrom * scale until rows.keepTo * scale) {
                val from = (c * tileH * scale + y - rows.start * scale) * srW + (cols.keepFrom - cols.start) * scale
                val to = (c * ph * scale + y) * pw * scale + cols.keepFrom * scale
                System.arraycopy(sr, from, out, to, (cols.keepTo - cols.keepFrom) * scale)
            }
        }
        return planarRgbToBitmap(crop(out, pw * scale, ph * scale, w * scale, h * scale), w * scale, h * scale)
    }

    private fun run(tile: FloatArray): FloatArray {
        val dims = longArrayOf(1, 3, tileH.toLong(), tileW.toLong())
        OnnxTensor.createTensor(env, FloatBuffer.wrap(tile), dims).use { input ->
            session.run(mapOf("lr" to input)).use { result ->
                val sr = (result[0] as OnnxTensor).floatBuffer
                return FloatArray(sr.remaining()).also { sr.get(it) }
            }
        }
    }

    override fun close() = session.close()
}

/** One tile along an axis: it reads [start, start + size) and keeps [keepFrom, keepTo) of its output. */
data class Span(val start: Int, val keepFrom: Int, val keepTo: Int)

/** Exact tiles of `size` over `length` (>= size) LR pixels: consecutive tiles overlap by 2 * OVERLAP,
 *  each keeps only pixels at least OVERLAP from its inner edges, and the last tile is shifted inward
 *  to end at the border instead of being padded. */
fun tiles(length: Int, size: Int, overlap: Int = OVERLAP): List<Span> {
    require(size > 2 * overlap) { "a tile of $size px leaves nothing after $overlap px of overlap per side" }
    val spans = mutableListOf<Span>()
    var kept = 0
    var start = 0
    while (kept < length) {
        start = minOf(start, length - size)
        val keepTo = if (start + size >= length) length else start + size - overlap
        spans += Span(start, kept, keepTo)
        kept = keepTo
        start = keepTo - overlap
    }
    return spans
}

/** The receptive field of CARN-M at every scale, in LR pixels (carn_mobile.upscaling.receptive_field). */
const val OVERLAP = 21

/** Planar RGB of w x h, edge-repeated to at least minW x minH (unchanged when already that big). */
fun padToAtLeast(rgb: FloatArray, w: Int, h: Int, minW: Int, minH: Int): FloatArray {
    if (w >= minW && h >= minH) return rgb
    val pw = maxOf(w, minW)
    val ph = maxOf(h, minH)
    return FloatArray(3 * pw * ph) { i ->
        val c = i / (pw * ph)
        val y = minOf((i / pw) % ph, h - 1)
        val x = minOf(i % pw, w - 1)
        rgb[(c * h + y) * w + x]
    }
}

/** The top-left w x h of a planar RGB image of width pw and height ph. */
fun crop(rgb: FloatArray, pw: Int, ph: Int, w: Int, h: Int): FloatArray {
    if (pw == w && ph == h) return rgb
    val out = FloatArray(3 * w * h)
    for (c in 0 until 3) for (y in 0 until h) System.arraycopy(rgb, (c * ph + y) * pw, out, (c * h + y) * w, w)
    return out
}
