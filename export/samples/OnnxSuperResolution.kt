// ONNX Runtime Mobile: run a carn-export .onnx or .ort on an Android Bitmap and get a Bitmap back.
// Contract: input "lr" float32 [1, 3, H, W] RGB in [0, 1]; output "sr" [1, 3, sH, sW] in [0, 1].
// Gradle: implementation("com.microsoft.onnxruntime:onnxruntime-android:<version>"), or a reduced
// build made from the .ort's <artifact>.required_operators.config (ORT's build.py --include_ops_by_config).
// The .ort (carn-export --target ort) is DCR-form: with useNnapi every node can go to NNAPI once H and
// W are fixed (export a tile size: --shape 128x128); the manifest's export.details.mobile_usability
// has the estimate.
// Written for carn-mobile (MIT). Not compiled in this repository's CI (no Android toolchain).

import ai.onnxruntime.OnnxTensor
import ai.onnxruntime.OrtEnvironment
import ai.onnxruntime.OrtSession
import android.content.Context
import android.graphics.Bitmap
import java.nio.FloatBuffer

class OnnxSuperResolution(
    context: Context,
    assetName: String = "carn-m_x4_fp32.ort",   // or the .onnx; ORT reads both
    useNnapi: Boolean = false,
) : AutoCloseable {
    private val env = OrtEnvironment.getEnvironment()
    private val session: OrtSession = run {
        val options = OrtSession.SessionOptions()
        if (useNnapi) options.addNnapi()   // nodes NNAPI cannot take stay on the CPU provider
        env.createSession(context.assets.open(assetName).use { it.readBytes() }, options)
    }

    /** Upscales one tile; for big images call it per tile (export/README.md, "Memory and tiling"). */
    fun upscale(bitmap: Bitmap): Bitmap {
        val (w, h) = bitmap.width to bitmap.height
        val lr = bitmapToPlanarRgb(bitmap)
        OnnxTensor.createTensor(env, FloatBuffer.wrap(lr), longArrayOf(1, 3, h.toLong(), w.toLong())).use { input ->
            session.run(mapOf("lr" to input)).use { result ->
                val sr = result[0] as OnnxTensor
                val shape = sr.info.shape                          // [1, 3, sH, sW]
                val out = FloatArray(sr.floatBuffer.remaining()).also { sr.floatBuffer.get(it) }
                return planarRgbToBitmap(out, shape[3].toInt(), shape[2].toInt())
            }
        }
    }

    override fun close() = session.close()
}

/** ARGB pixels -> planar RGB floats in [0, 1] (R plane, then G, then B). */
fun bitmapToPlanarRgb(bitmap: Bitmap): FloatArray {
    val (w, h) = bitmap.width to bitmap.height
    val argb = IntArray(w * h).also { bitmap.getPixels(it, 0, w, 0, 0, w, h) }
    val plane = w * h
    val out = FloatArray(3 * plane)
    for (i in 0 until plane) {
        val p = argb[i]
        out[i] = ((p shr 16) and 0xFF) / 255f
        out[plane + i] = ((p shr 8) and 0xFF) / 255f
        out[2 * plane + i] = (p and 0xFF) / 255f
    }
    return out
}

/** Planar RGB floats in [0, 1] (the model clamps them) -> an opaque ARGB_8888 bitmap. */
fun planarRgbToBitmap(rgb: FloatArray, width: Int, height: Int): Bitmap {
    val plane = width * height
    val argb = IntArray(plane) { i ->
        val r = Math.round(rgb[i] * 255f)
        val g = Math.round(rgb[plane + i] * 255f)
        val b = Math.round(rgb[2 * plane + i] * 255f)
        (0xFF shl 24) or (r shl 16) or (g shl 8) or b
    }
    return Bitmap.createBitmap(argb, width, height, Bitmap.Config.ARGB_8888)
}
