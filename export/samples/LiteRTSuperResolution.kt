// LiteRT (TensorFlow Lite): upscale an Android Bitmap of any size with a carn-export .tflite, on the
// CPU (XNNPACK) or on the GPU delegate, tile by tile through CarnTiling.kt (exact: the result
// equals one whole-image run).
// Export: carn-export --target litert --layout nhwc --scale 4            (any size, resized per tile)
//         carn-export --target litert --layout nhwc --scale 4 --shape 128x128   (GPU: one tile size)
// Contract (NHWC): signature input "lr" float32 [1, H, W, 3] RGB in [0, 1];
//                  output "sr" float32 [1, sH, sW, 3] RGB in [0, 1] (clamped in the model).
// Assets: the .tflite and its manifest (<artifact>.json): scale, overlap and the fixed tile size.
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
    useGpu: Boolean = false,
    threads: Int = 4,
    coreTile: Int = 256   // LR core side per call for any-size exports (memory); fixed ones use their size
) : AutoCloseable {
    private var gpu: GpuDelegate? = null
    private val interpreter: Interpreter
    private val tiler: TiledUpscaler

    init {
        val options = Interpreter.Options().setNumThreads(threads)   // XNNPACK is on by default
        val compat = CompatibilityList()
        if (useGpu && compat.isDelegateSupportedOnThisDevice) {
            // The graph has only ops the GPU delegate takes (CONV_2D, ADD, CONCATENATION, SPLIT,
            // DEPTH_TO_SPACE, RELU_0_TO_1; the manifest's export.details.gpu_compatible says so).
            gpu = GpuDelegate(compat.bestOptionsForThisDevice).also { options.addDelegate(it) }
        }
        interpreter = Interpreter(loadAsset(context, assetName), options)
        tiler = TiledUpscaler(tilingSpecFromAsset(context, assetName), Layout.NHWC, ::runTile, coreTile)
    }

    /** Upscales a bitmap of any size, tile by tile. */
    fun upscale(bitmap: Bitmap): Bitmap = tiler.upscale(bitmap)

    private fun runTile(tile: FloatArray, h: Int, w: Int): FloatArray {
        val inShape = interpreter.getInputTensorFromSignature(INPUT, SIGNATURE).shape()   // [1, H, W, 3]
        if (inShape[1] != h || inShape[2] != w) {
            // The .tflite is stored at one size; its ops hold none, so it runs at any size after a
            // resize. A fixed-size export never gets here: every tile has its size.
            interpreter.resizeInput(0, intArrayOf(1, h, w, 3))   // the one input (graph tensor serving_default_lr)
            interpreter.allocateTensors()
        }
        val input = ByteBuffer.allocateDirect(4 * tile.size).order(ByteOrder.nativeOrder())
        input.asFloatBuffer().put(tile)
        val s = tiler.spec.scale
        val output = ByteBuffer.allocateDirect(4 * 3 * (h * s) * (w * s)).order(ByteOrder.nativeOrder())
        interpreter.runSignature(mapOf(INPUT to input), mapOf(OUTPUT to output), SIGNATURE)
        output.rewind()
        return FloatArray(3 * (h * s) * (w * s)).also { output.asFloatBuffer().get(it) }
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
