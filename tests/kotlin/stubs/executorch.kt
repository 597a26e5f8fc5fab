// Stubs (signatures only) of ExecuTorch's Android API (org.pytorch.executorch) the samples use; see README.md.
@file:Suppress("unused", "UNUSED_PARAMETER")

package org.pytorch.executorch

class Tensor private constructor() {
    val dataAsFloatArray: FloatArray get() = throw UnsupportedOperationException("stub")

    companion object {
        @JvmStatic
        fun fromBlob(data: FloatArray, shape: LongArray): Tensor = throw UnsupportedOperationException("stub")
    }
}

class EValue private constructor() {
    fun toTensor(): Tensor = throw UnsupportedOperationException("stub")

    companion object {
        @JvmStatic
        fun from(tensor: Tensor): EValue = throw UnsupportedOperationException("stub")
    }
}

class Module private constructor() {
    fun forward(vararg inputs: EValue): Array<EValue> = throw UnsupportedOperationException("stub")

    companion object {
        @JvmStatic
        fun load(modelPath: String): Module = throw UnsupportedOperationException("stub")
    }
}
