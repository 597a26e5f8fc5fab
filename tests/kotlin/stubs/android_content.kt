// Stubs (signatures only) of the Android classes the samples use; see README.md.
@file:Suppress("unused", "UNUSED_PARAMETER")

package android.content

import android.content.res.AssetManager
import java.io.File

abstract class Context {
    abstract val assets: AssetManager
    abstract val filesDir: File
}
