// Stubs (signatures only) of the Android classes the samples use; see README.md.
@file:Suppress("unused", "UNUSED_PARAMETER")

package android.content.res

import java.io.Closeable
import java.io.FileDescriptor
import java.io.InputStream

abstract class AssetManager {
    abstract fun open(fileName: String): InputStream
    abstract fun openFd(fileName: String): AssetFileDescriptor
    abstract fun list(path: String): Array<String>?
}

abstract class AssetFileDescriptor : Closeable {
    abstract val fileDescriptor: FileDescriptor
    abstract val startOffset: Long
    abstract val declaredLength: Long
}
