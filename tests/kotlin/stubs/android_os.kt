// Stubs (signatures only) of the Android classes the samples use; see README.md.
@file:Suppress("unused")

package android.os

object Build {
    @JvmField val SOC_MODEL: String = "stub"

    object VERSION {
        @JvmField val SDK_INT: Int = 0
    }
}
