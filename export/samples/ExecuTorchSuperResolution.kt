// ExecuTorch: upscale an Android Bitmap of any size with a carn-export .pte (XNNPACK delegate),
// tile by tile through CarnTiling.kt (exact: the result equals one whole-image run).
// Contract: input "lr" float32 [1, 3, H, W] RGB in [0, 1]; output "sr" [1, 3, sH, sW] in [0, 1].
// Assets: the .pte and its manifest (<artifact>.json): scale, overlap and the fixed tile size.
// Gradle: implementation("org.pytorch:executorch-android:<the version in the manifest's versions.executorch>")
// Written for carn-mobile (MIT). Not compiled in this repository's CI (no Android toolchain).
//
// Ship a fixed-size program: carn-export --target executorch --scale 4 --shape 128x128
// ExecuTorch reserves activation memory for the largest input a program accepts when it loads:
// the dynamic program (LR sides up to 256) reserves 512 MiB, the 128x128 one only what a 128x128
// tile needs. The tiler then cuts every image into 128x128 boxes (21 LR px of overlap, the last
// box of each row and column shifted inward to end at the border); for a dynamic program it keeps
// every box within the manifest's max_side.

import android.content.Context
import android.graphics.Bitmap
import java.io.File
import org.pytorch.executorch.EValue
import org.pytorch.executorch.Module
import org.pytorch.executorch.Tensor

class ExecuTorchSuperResolution(context: Context, assetName: String = "carn-m_x4_fp32_128x128.pte") {
    private val module: Module
    private val tiler: TiledUpscaler

    init {
        // Module.load needs a file path: copy the asset to app storage once.
        val file = File(context.filesDir, assetName)
        if (!file.exists()) {
            context.assets.open(assetName).use { input -> file.outputStream().use { input.copyTo(it) } }
        }
        module = Module.load(file.path)
        tiler = TiledUpscaler(tilingSpecFromAsset(context, assetName), Layout.NCHW, ::runTile)
    }

    /** Upscales a bitmap of any size, tile by tile. */
    fun upscale(bitmap: Bitmap): Bitmap = tiler.upscale(bitmap)

    private fun runTile(tile: FloatArray, h: Int, w: Int): FloatArray {
        val input = Tensor.fromBlob(tile, longArrayOf(1, 3, h.toLong(), w.toLong()))
        return module.forward(EValue.from(input))[0].toTensor().dataAsFloatArray   // [1, 3, sH, sW]
    }
}
