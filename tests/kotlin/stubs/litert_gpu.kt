// Stubs (signatures only) of LiteRT's GPU delegate (org.tensorflow.lite.gpu) the samples use; see README.md.
@file:Suppress("unused", "UNUSED_PARAMETER")

package org.tensorflow.lite.gpu

import org.tensorflow.lite.Delegate
import java.io.Closeable

class CompatibilityList : Closeable {
    val isDelegateSupportedOnThisDevice: Boolean get() = throw UnsupportedOperationException("stub")
    val bestOptionsForThisDevice: GpuDelegate.Options get() = throw UnsupportedOperationException("stub")
    override fun close(): Unit = throw UnsupportedOperationException("stub")
}

class GpuDelegate(options: Options) : Delegate, Closeable {
    class Options
    override fun close(): Unit = throw UnsupportedOperationException("stub")
}
