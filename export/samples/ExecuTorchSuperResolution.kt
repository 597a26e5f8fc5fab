// ExecuTorch: run a carn-export .pte (XNNPACK delegate) on an Android Bitmap.
// Contract: input "lr" float32 [1, 3, H, W] RGB in [0, 1]; output "sr" [1, 3, sH, sW] in [0, 1].
// Gradle: implementation("org.pytorch:executorch-android:<the version in the manifest's versions.executorch>")
// Uses bitmapToPlanarRgb / planarRgbToBitmap from OnnxSuperResolution.kt. Written for carn-mobile (MIT).
//
// Ship a fixed-size program: carn-export --target executorch --scale 4 --shape 128x128
// ExecuTorch reserves activation memory for the largest input a program accepts when it loads:
// the dynamic program (LR sides up to 256) reserves 512 MiB, the 128x128 one only what a 128x128
// tile needs. Cut images into 128x128 LR tiles that overlap by 21 pixels, shifting the last tile
// of each row and column inward so it ends at the border (see export/README.md, "Memory and tiling").

import android.content.Context
import android.graphics.Bitmap
import java.io.File
import org.pytorch.executorch.EValue
import org.pytorch.executorch.Module
import org.pytorch.executorch.Tensor

class ExecuTorchSuperResolution(context: Context, assetName: String = "carn-m_x4_fp32_128x128.pte") {
    private val module: Module

    init {
        // Module.load needs a file path: copy the asset to app storage once.
        val file = File(context.filesDir, assetName)
        if (!file.exists()) {
            context.assets.open(assetName).use { input -> file.outputStream().use { input.copyTo(it) } }
        }
        module = Module.load(file.path)
    }

    /** The program's scale, stored as a constant method by carn-export. */
    val scale: Long get() = module.execute("scale")[0].toInt()

    /** Upscales one 128x128 tile (the program's fixed size; see the manifest's accepted_lr_sizes). */
    fun upscale(bitmap: Bitmap): Bitmap {
        val (w, h) = bitmap.width to bitmap.height
        val input = Tensor.fromBlob(bitmapToPlanarRgb(bitmap), longArrayOf(1, 3, h.toLong(), w.toLong()))
        val sr = module.forward(EValue.from(input))[0].toTensor()
        val shape = sr.shape()                                   // [1, 3, sH, sW]
        return planarRgbToBitmap(sr.dataAsFloatArray, shape[3].toInt(), shape[2].toInt())
    }
}
