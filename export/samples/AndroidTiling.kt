// Android glue for CarnTiling.kt: Bitmaps in and out of a TiledUpscaler, and the artifact's
// manifest read from the app's assets. Used by every *SuperResolution.kt sample here.
// Written for carn-mobile (MIT). Not compiled in this repository's CI (no Android SDK); the
// tiling it calls is (tests/test_kotlin_tiling.py).

import android.content.Context
import android.graphics.Bitmap

/** The tiling of an artifact bundled as an asset, from the manifest carn-export wrote beside it
 *  (bundle `<artifact>.json` with the artifact). */
fun tilingSpecFromAsset(context: Context, artifact: String): TilingSpec =
    TilingSpec.fromManifest(context.assets.open("$artifact.json").bufferedReader().use { it.readText() })

/**
 * Upscales a Bitmap of any size; the result equals one whole-image run of the model.
 *
 * The one exception: a fixed-size model and an image smaller than its tile. The image is then
 * padded by repeating its edges (padEdges), which changes the output near those edges; export a
 * smaller --shape, or use a model that takes any size, where small images matter.
 */
fun TiledUpscaler.upscale(bitmap: Bitmap, progress: ((Int, Int) -> Unit)? = null): Bitmap {
    val s = spec.scale
    val w = bitmap.width
    val h = bitmap.height
    val argb = IntArray(w * h).also { bitmap.getPixels(it, 0, w, 0, 0, w, h) }
    val tileH = spec.fixedTileHeight
    val tileW = spec.fixedTileWidth
    val out = if (tileH != null && tileW != null && (h < tileH || w < tileW)) {
        upscale(padEdges(RgbImage.fromArgb(argb, w, h), tileW, tileH), progress).crop(w * s, h * s).toArgb()
    } else {
        upscaleArgb(argb, w, h, progress)
    }
    return Bitmap.createBitmap(out, w * s, h * s, Bitmap.Config.ARGB_8888)
}
