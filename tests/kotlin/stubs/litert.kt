// Stubs (signatures only) of LiteRT's Java API (org.tensorflow.lite) the samples use; see README.md.
@file:Suppress("unused", "UNUSED_PARAMETER")

package org.tensorflow.lite

import java.nio.ByteBuffer

interface Delegate

class Tensor private constructor() {
    fun shape(): IntArray = throw UnsupportedOperationException("stub")
}

class Interpreter(byteBuffer: ByteBuffer, options: Options) : AutoCloseable {
    class Options {
        fun setNumThreads(numThreads: Int): Options = throw UnsupportedOperationException("stub")
        fun addDelegate(delegate: Delegate): Options = throw UnsupportedOperationException("stub")
    }

    fun getInputTensorFromSignature(inputName: String, signatureKey: String): Tensor =
        throw UnsupportedOperationException("stub")
    fun resizeInput(idx: Int, dims: IntArray): Unit = throw UnsupportedOperationException("stub")
    fun allocateTensors(): Unit = throw UnsupportedOperationException("stub")
    fun runSignature(inputs: Map<String, Any>, outputs: Map<String, Any>, signatureKey: String): Unit =
        throw UnsupportedOperationException("stub")
    override fun close(): Unit = throw UnsupportedOperationException("stub")
}
