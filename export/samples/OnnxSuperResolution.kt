// ONNX Runtime Mobile: upscale an Android Bitmap of any size with a carn-export .onnx or .ort,
// tile by tile through CarnTiling.kt (exact: the result equals one whole-image run).
// Contract: input "lr" float32 [1, 3, H, W] RGB in [0, 1]; output "sr" [1, 3, sH, sW] in [0, 1].
// Assets: the artifact and its manifest (carn-m_x4_fp32.ort and carn-m_x4_fp32.ort.json): the
// manifest gives the scale, the overlap (21 LR px) and, for a fixed-size export, the tile size.
// Gradle: implementation("com.microsoft.onnxruntime:onnxruntime-android:<version>"), or a reduced
// build made from the .ort's <artifact>.required_operators.config (ORT's build.py --include_ops_by_config).
// The .ort (carn-export --target ort) is DCR-form: with useNnapi every node can go to NNAPI once H and
// W are fixed (export a tile size: --shape 128x128; every tile is then that size); the manifest's
// export.details.mobile_usability has the estimate.
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
    coreTile: Int = 256                        // LR core side per call for any-size models (memory)
) : AutoCloseable {
    private val env = OrtEnvironment.getEnvironment()
    private val session: OrtSession = run {
        val options = OrtSession.SessionOptions()
        if (useNnapi) options.addNnapi()   // nodes NNAPI cannot take stay on the CPU provider
        env.createSession(context.assets.open(assetName).use { it.readBytes() }, options)
    }
    private val tiler = TiledUpscaler(tilingSpecFromAsset(context, assetName), Layout.NCHW, ::runTile, coreTile)

    /** Upscales a bitmap of any size, tile by tile. */
    fun upscale(bitmap: Bitmap): Bitmap = tiler.upscale(bitmap)

    private fun runTile(tile: FloatArray, h: Int, w: Int): FloatArray = runOrtTile(env, session, tile, h, w)

    override fun close() = session.close()
}

/** One tile through an ONNX Runtime session: planar RGB floats [1, 3, h, w] in, [1, 3, sh, sw] out
 *  (also used by QnnSuperResolution.kt). */
fun runOrtTile(env: OrtEnvironment, session: OrtSession, tile: FloatArray, h: Int, w: Int): FloatArray {
    val dims = longArrayOf(1, 3, h.toLong(), w.toLong())
    OnnxTensor.createTensor(env, FloatBuffer.wrap(tile), dims).use { input ->
        session.run(mapOf("lr" to input)).use { result ->
            val sr = (result[0] as OnnxTensor).floatBuffer
            return FloatArray(sr.remaining()).also { sr.get(it) }
        }
    }
}
