// ONNX Runtime Android + the QNN execution provider: run a carn-export qnn artifact on the phone's
// Hexagon NPU, tile by tile, and get a Bitmap back.
//
// Files (carn-export --target qnn --scale 4 --shape 128x128), all in the app's assets:
//   carn-m_x4_int8_128x128.qnn.onnx                  the QDQ ONNX (any SoC; compiled on the phone)
//   carn-m_x4_int8_128x128.qnn.onnx.sm8650_ctx.onnx  one EPContext model per SoC, context binary
//   ...                                              embedded: loads without compiling
// The model takes one fixed LR size (the HTP has no dynamic shapes): CarnTiling.kt cuts images
// into boxes of exactly that size with 21 LR pixels of overlap (the network's receptive field,
// read from the manifest, carn-m_x4_int8_128x128.qnn.onnx.json, bundled with the files above), so
// the result equals a whole-image run exactly. An image smaller than the tile is padded by
// repeating its edges (AndroidTiling.kt), which changes the pixels near them (not exact there).
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
// toolchain); the tiling it calls is (tests/test_kotlin_tiling.py). runOrtTile is in OnnxSuperResolution.kt.

import ai.onnxruntime.OrtEnvironment
import ai.onnxruntime.OrtSession
import ai.onnxruntime.TensorInfo
import android.content.Context
import android.graphics.Bitmap
import android.os.Build

class QnnSuperResolution(
    context: Context,
    artifact: String = "carn-m_x4_int8_128x128.qnn.onnx"
) : AutoCloseable {
    private val env = OrtEnvironment.getEnvironment()
    private val session: OrtSession

    /** Which path runs: "htp-context (sm8650)", "htp-compiled" or "cpu". */
    val backend: String

    private val tiler: TiledUpscaler

    init {
        val assets = context.assets.list("")?.toSet() ?: emptySet()
        val soc = socName()
        val contextModel = soc?.let { "$artifact.${it}_ctx.onnx" }?.takeIf { it in assets }
        val tries = mutableListOf<Triple<String, String, Boolean>>()
        if (contextModel != null) tries += Triple("htp-context ($soc)", contextModel, true)
        tries += Triple("htp-compiled", artifact, true)
        tries += Triple("cpu", artifact, false)
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
        val spec = tilingSpecFromAsset(context, artifact)
        val shape = (session.inputInfo.getValue("lr").info as TensorInfo).shape   // [1, 3, H, W]
        check(spec.fixedTileHeight == shape[2].toInt() && spec.fixedTileWidth == shape[3].toInt()) {
            "$artifact.json says a ${spec.fixedTileHeight}x${spec.fixedTileWidth} tile, the model takes ${shape[2]}x${shape[3]}"
        }
        tiler = TiledUpscaler(spec, Layout.NCHW, ::runTile)
    }

    private fun options(htp: Boolean) = OrtSession.SessionOptions().apply {
        if (htp) {
            addConfigEntry("session.disable_cpu_ep_fallback", "1")
            addQnn(mapOf("backend_path" to "libQnnHtp.so"))
        }
    }

    /** "sm8650" from Build.SOC_MODEL ("SM8650", API 31+); null where the phone does not say. */
    private fun socName(): String? {
        if (Build.VERSION.SDK_INT < 31) return null
        val model = Build.SOC_MODEL
        return if (model.startsWith("SM", ignoreCase = true)) "sm" + model.substring(2) else null
    }

    /** Upscales a bitmap of any size through the fixed-size model, tile by tile. */
    fun upscale(bitmap: Bitmap): Bitmap = tiler.upscale(bitmap)

    private fun runTile(tile: FloatArray, h: Int, w: Int): FloatArray = runOrtTile(env, session, tile, h, w)

    override fun close() = session.close()
}
