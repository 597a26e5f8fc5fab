// ExecuTorch: run a carn-export .pte (XNNPACK delegate) on an Android Bitmap.
// Contract: input "lr" float32 [1, 3, H, W] RGB in [0, 1]; output "sr" [1, 3, sH, sW] in [0, 1].
// Gradle: implementation("org.pytorch:executorch-android:<the version in the manifest's versions.executorch>")
// Uses bitmapToPlanarRgb / planarRgbToBitmap from OnnxSuperResolution.kt. Written for carn-mobile (MIT).

import android.content.Context
import android.graphics.Bitmap
import java.io.File
import org.pytorch.executorch.EValue
import org.pytorch.executorch.Module
import org.pytorch.executorch.Tensor

class ExecuTorchSuperResolution(context: Context, assetName: String = "carn-m_x4_fp32.pte") {
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

    /** Upscales one tile; the input must be within the exported size range (see the manifest). */
    fun upscale(bitmap: Bitmap): Bitmap {
        val (w, h) = bitmap.width to bitmap.height
        val input = Tensor.fromBlob(bitmapToPlanarRgb(bitmap), longArrayOf(1, 3, h.toLong(), w.toLong()))
        val sr = module.forward(EValue.from(input))[0].toTensor()
        val shape = sr.shape()                                   // [1, 3, sH, sW]
        return planarRgbToBitmap(sr.dataAsFloatArray, shape[3].toInt(), shape[2].toInt())
    }
}
