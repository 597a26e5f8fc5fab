// Stubs (signatures only) of ONNX Runtime's Java API (ai.onnxruntime) the samples use; see README.md.
@file:Suppress("unused", "UNUSED_PARAMETER")

package ai.onnxruntime

import java.nio.FloatBuffer

interface OnnxValue : AutoCloseable
interface OnnxTensorLike : OnnxValue
interface ValueInfo

class TensorInfo private constructor() : ValueInfo {
    val shape: LongArray get() = throw UnsupportedOperationException("stub")
}

class NodeInfo private constructor() {
    val info: ValueInfo get() = throw UnsupportedOperationException("stub")
}

class OnnxTensor private constructor() : OnnxTensorLike {
    val floatBuffer: FloatBuffer get() = throw UnsupportedOperationException("stub")
    override fun close(): Unit = throw UnsupportedOperationException("stub")

    companion object {
        @JvmStatic
        fun createTensor(env: OrtEnvironment, data: FloatBuffer, shape: LongArray): OnnxTensor =
            throw UnsupportedOperationException("stub")
    }
}

class OrtEnvironment private constructor() : AutoCloseable {
    fun createSession(modelArray: ByteArray, options: OrtSession.SessionOptions): OrtSession =
        throw UnsupportedOperationException("stub")
    override fun close(): Unit = throw UnsupportedOperationException("stub")

    companion object {
        @JvmStatic
        fun getEnvironment(): OrtEnvironment = throw UnsupportedOperationException("stub")
    }
}

class OrtSession private constructor() : AutoCloseable {
    val inputInfo: Map<String, NodeInfo> get() = throw UnsupportedOperationException("stub")

    fun run(inputs: Map<String, OnnxTensorLike>): Result = throw UnsupportedOperationException("stub")
    override fun close(): Unit = throw UnsupportedOperationException("stub")

    class SessionOptions : AutoCloseable {
        fun addNnapi(): Unit = throw UnsupportedOperationException("stub")
        fun addQnn(providerOptions: Map<String, String>): Unit = throw UnsupportedOperationException("stub")
        fun addConfigEntry(configKey: String, configValue: String): Unit = throw UnsupportedOperationException("stub")
        override fun close(): Unit = throw UnsupportedOperationException("stub")
    }

    class Result private constructor() : AutoCloseable {
        operator fun get(index: Int): OnnxValue = throw UnsupportedOperationException("stub")
        override fun close(): Unit = throw UnsupportedOperationException("stub")
    }
}
