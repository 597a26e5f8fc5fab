// LiteRT (TensorFlow Lite): run a carn-export .tflite on an Android Bitmap, on the CPU (XNNPACK)
// or on the GPU delegate, and get a Bitmap back.
// Export: carn-export --target litert --layout nhwc --scale 4            (any size, resized here)
//         carn-export --target litert --layout nhwc --scale 4 --shape 128x128   (GPU: one tile size)
// Contract (NHWC): signature input "lr" float32 [1, H, W, 3] RGB in [0, 1];
//                  output "sr" float32 [1, sH, sW, 3] RGB in [0, 1] (clamped in the model).
// Gradle: implementation("com.google.ai.edge.litert:litert:<version>")
//         implementation("com.google.ai.edge.litert:litert-gpu:<version>")   // for useGpu = true
// Written for carn-mobile (MIT). Not compiled in this repository's CI (no Android toolchain).

import android.content.Context
import android.graphics.Bitmap
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.gpu.CompatibilityList
import org.tensorflow.lite.gpu.GpuDelegate
import java.io.FileInputStream
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.MappedByteBuffer
import java.nio.channels.FileChannel

class LiteRTSuperResolution(
    context: Context,
    assetName: String = "carn-m_x4_fp32.tflite",
    private val scale: Int = 4,
    useGpu: Boolean = false,
    threads: Int = 4,
) : AutoCloseable {
    private var gpu: GpuDelegate? = null
    private val interpreter: Interpreter

    init {
        val options = Interpreter.Options().setNumThreads(threads)   // XNNPACK is on by default
        val compat = CompatibilityList()
        if (useGpu && compat.isDelegateSupportedOnThisDevice) {
            // The graph has only ops the GPU delegate takes (CONV_2D, ADD, CONCATENATION, SPLIT,
            // DEPTH_TO_SPACE, RELU_0_TO_1; the manifest's export.details.gpu_compatible says so).
            gpu = GpuDelegate(compat.bestOptionsForThisDevice).also { options.addDelegate(it) }
        }
        interpreter = Interpreter(loadAsset(context, assetName), options)
    }

    /** Upscales one tile (for big images call it per tile, export/README.md "Memory and tiling"). */
    fun upscale(bitmap: Bitmap): Bitmap {
        val (w, h) = bitmap.width to bitmap.height
        val inShape = interpreter.getInputTensorFromSignature("lr", SIGNATURE).shape()   // [1, H, W, 3]
        if (inShape[1] != h || inShape[2] != w) {
            // The .tflite is stored at one size; its ops hold none, so it runs at any size after a
            // resize. With the GPU delegate prefer a fixed-size export and tiles of exactly that size.
            interpreter.resizeInput(0, intArrayOf(1, h, w, 3))   // the one input (graph tensor serving_default_lr)
            interpreter.allocateTensors()
        }
        val input = bitmapToNhwc(bitmap)
        val output = ByteBuffer.allocateDirect(4 * 3 * (h * scale) * (w * scale)).order(ByteOrder.nativeOrder())
        interpreter.runSignature(mapOf(INPUT to input), mapOf(OUTPUT to output), SIGNATURE)
        output.rewind()
        return nhwcToBitmap(output, w * scale, h * scale)
    }

    override fun close() {
        interpreter.close()
        gpu?.close()
    }

    companion object {
        const val SIGNATURE = "serving_default"
        const val INPUT = "lr"
        const val OUTPUT = "sr"

        private fun loadAsset(context: Context, name: String): MappedByteBuffer =
            context.assets.openFd(name).use { fd ->
                FileInputStream(fd.fileDescriptor).channel.use { ch ->
                    ch.map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)
                }
            }
    }
}

/** ARGB pixels -> interleaved RGB floats in [0, 1] (NHWC: what a Bitmap already is, less alpha). */
fun bitmapToNhwc(bitmap: Bitmap): ByteBuffer {
    val (w, h) = bitmap.width to bitmap.height
    val argb = IntArray(w * h).also { bitmap.getPixels(it, 0, w, 0, 0, w, h) }
    val buffer = ByteBuffer.allocateDirect(4 * 3 * w * h).order(ByteOrder.nativeOrder())
    for (p in argb) {
        buffer.putFloat(((p shr 16) and 0xFF) / 255f)
        buffer.putFloat(((p shr 8) and 0xFF) / 255f)
        buffer.putFloat((p and 0xFF) / 255f)
    }
    buffer.rewind()
    return buffer
}

/** Interleaved RGB floats in [0, 1] -> an opaque ARGB_8888 bitmap. */
fun nhwcToBitmap(rgb: ByteBuffer, width: Int, height: Int): Bitmap {
    val floats = rgb.asFloatBuffer()
    val argb = IntArray(width * height) {
        val r = Math.round(floats.get() * 255f)
        val g = Math.round(floats.get() * 255f)
        val b = Math.round(floats.get() * 255f)
        (0xFF shl 24) or (r shl 16) or (g shl 8) or b
    }
    return Bitmap.createBitmap(argb, width, height, Bitmap.Config.ARGB_8888)
}
