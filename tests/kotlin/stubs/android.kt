// Stubs (signatures only) of the Android classes the samples use; see README.md.
@file:Suppress("unused", "UNUSED_PARAMETER")

package android.graphics

class Bitmap private constructor() {
    val width: Int get() = throw UnsupportedOperationException("stub")
    val height: Int get() = throw UnsupportedOperationException("stub")

    fun getPixels(pixels: IntArray, offset: Int, stride: Int, x: Int, y: Int, width: Int, height: Int): Unit =
        throw UnsupportedOperationException("stub")

    enum class Config { ARGB_8888 }

    companion object {
        @JvmStatic
        fun createBitmap(colors: IntArray, width: Int, height: Int, config: Config): Bitmap =
            throw UnsupportedOperationException("stub")
    }
}
