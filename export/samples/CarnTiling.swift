// Exact tiling for carn-mobile artifacts in iOS / macOS apps: the algorithm of CarnTiling.kt (and
// of carn_mobile.upscaling.tiling), in Swift. Cut an image into tiles, run the model on each,
// stitch the outputs back: the result equals one whole-image run.
//
// NOT compiled in this repository's CI: there is no Swift toolchain on the Linux machines it runs
// on. The Kotlin version is compiled and tested there (tests/test_kotlin_tiling.py); this file
// follows it function by function, so a change to one belongs in both.
//
// The overlap (21 LR px for CARN / CARN-M) and a fixed-shape model's tile size come from the
// artifact's manifest (its "tiling" section). Written for carn-mobile (MIT).

import Foundation

/// One model call: it reads the LR box [y0, y1) x [x0, x1) and keeps the LR core
/// [coreY0, coreY1) x [coreX0, coreX1) of its output (times the scale).
struct Tile: Equatable {
    let y0: Int, y1: Int, x0: Int, x1: Int
    let coreY0: Int, coreY1: Int, coreX0: Int, coreX1: Int
    var height: Int { y1 - y0 }
    var width: Int { x1 - x0 }
}

/// A plan or an input that cannot work; the message names the values.
struct TilingError: Error, CustomStringConvertible {
    let description: String
}

private func require(_ condition: Bool, _ message: @autoclosure () -> String) throws {
    if !condition { throw TilingError(description: message()) }
}

enum TilePlans {
    /// [0, length) in ceil(length / tile) contiguous near-equal parts, as (start, end).
    static func split(_ length: Int, _ tile: Int) throws -> [(Int, Int)] {
        try require(length >= 1 && tile >= 1, "length and tile must be positive, got \(length) and \(tile)")
        let n = (length + tile - 1) / tile
        return (0..<n).map { i in (i * length / n, (i + 1) * length / n) }
    }

    /// Cores of at most tile x tile LR pixels, each read with `overlap` around it and clipped at
    /// the border; tile = nil gives one tile, the whole image.
    static func plan(height: Int, width: Int, tile: Int?, overlap: Int) throws -> [Tile] {
        try require(height >= 1 && width >= 1, "the image must be at least 1x1, got \(height)x\(width)")
        try require(overlap >= 0, "overlap must be >= 0, got \(overlap)")
        guard let tile = tile else { return [Tile(y0: 0, y1: height, x0: 0, x1: width,
                                                  coreY0: 0, coreY1: height, coreX0: 0, coreX1: width)] }
        var tiles: [Tile] = []
        for (cy0, cy1) in try split(height, tile) {
            for (cx0, cx1) in try split(width, tile) {
                tiles.append(Tile(y0: max(cy0 - overlap, 0), y1: min(cy1 + overlap, height),
                                  x0: max(cx0 - overlap, 0), x1: min(cx1 + overlap, width),
                                  coreY0: cy0, coreY1: cy1, coreX0: cx0, coreX1: cx1))
            }
        }
        return tiles
    }

    /// The core side for a model that takes any size up to maxSide (nil: no bound): `tile` (nil:
    /// the whole image), small enough that a box fits in maxSide; nil when one tile covers all.
    static func coreTile(height: Int, width: Int, tile: Int?, overlap: Int, maxSide: Int?) throws -> Int? {
        try require(tile == nil || tile! >= 1, "tile must be positive, got \(tile!)")
        var core = tile
        if let maxSide = maxSide, max(height, width) > maxSide {
            let cap = maxSide - 2 * overlap
            try require(cap >= 1, "an artifact that accepts LR sides up to \(maxSide) leaves no core after an overlap of \(overlap) px on each side")
            if core == nil || core! > cap { core = cap }
        }
        if let c = core, c >= max(height, width) { return nil }
        return core
    }

    /// One axis of a fixed-size plan: (boxStart, coreStart, coreEnd) with boxes of exactly `box`
    /// pixels, the fewest of them, near-equal inner cores, boxes shifted inward at the border.
    static func splitFixed(_ length: Int, _ box: Int, _ overlap: Int) throws -> [(Int, Int, Int)] {
        try require(length >= 1 && box >= 1 && overlap >= 0,
                    "length and box must be positive and overlap >= 0, got \(length), \(box) and \(overlap)")
        try require(length >= box, "an image side of \(length) px is smaller than the fixed tile of \(box) px")
        try require(box > 2 * overlap, "a fixed tile of \(box) px leaves no core after an overlap of \(overlap) px on each side")
        let inner = length - 2 * overlap
        let n = (inner + (box - 2 * overlap) - 1) / (box - 2 * overlap)
        var bounds = (0...n).map { i in overlap + i * inner / n }
        bounds[0] = 0
        bounds[n] = length
        return (0..<n).map { i in (min(max(bounds[i] - overlap, 0), length - box), bounds[i], bounds[i + 1]) }
    }

    /// Boxes all exactly tileHeight x tileWidth LR pixels, row by row.
    static func planFixed(height: Int, width: Int, tileHeight: Int, tileWidth: Int, overlap: Int) throws -> [Tile] {
        let rows = try splitFixed(height, tileHeight, overlap)
        let cols = try splitFixed(width, tileWidth, overlap)
        return rows.flatMap { r in
            cols.map { c in
                Tile(y0: r.0, y1: r.0 + tileHeight, x0: c.0, x1: c.0 + tileWidth,
                     coreY0: r.1, coreY1: r.2, coreX0: c.1, coreX1: c.2)
            }
        }
    }
}

/// Scale, overlap and the fixed tile (or the largest accepted side) of one artifact.
struct TilingSpec {
    let scale: Int
    let overlap: Int
    let fixedTile: (height: Int, width: Int)?
    let maxSide: Int?

    /// Reads the manifest carn-export writes beside the artifact (`<artifact>.json`).
    init(manifest data: Data) throws {
        guard let root = try JSONSerialization.jsonObject(with: data) as? [String: Any],
              let scale = root["scale"] as? Int else { throw TilingError(description: "the manifest has no number \"scale\"") }
        guard let tiling = root["tiling"] as? [String: Any] else {
            throw TilingError(description: "the manifest has no \"tiling\" section: export the artifact again with this carn-mobile")
        }
        guard let overlap = tiling["overlap"] as? Int else { throw TilingError(description: "the manifest has no number \"overlap\"") }
        self.scale = scale
        self.overlap = overlap
        if let fixed = tiling["fixed_tile"] as? [Int], fixed.count == 2 {
            fixedTile = (fixed[0], fixed[1])
        } else {
            fixedTile = nil
        }
        maxSide = tiling["max_side"] as? Int
    }

    func plan(height: Int, width: Int, tile: Int? = nil) throws -> [Tile] {
        if let fixed = fixedTile {
            return try TilePlans.planFixed(height: height, width: width, tileHeight: fixed.height,
                                           tileWidth: fixed.width, overlap: overlap)
        }
        let core = try TilePlans.coreTile(height: height, width: width, tile: tile, overlap: overlap, maxSide: maxSide)
        return try TilePlans.plan(height: height, width: width, tile: core, overlap: overlap)
    }
}

/// How the model's tensors lay out a tile: [1, 3, H, W] (Core ML, ONNX) or [1, H, W, 3].
enum Layout { case nchw, nhwc }

/// Upscales RGBA images of any size through a model that runs one tile at a time. `runTile`
/// gets a tile as floats in [0, 1] in `layout` with its height and width, and returns the model's
/// output (3 x h*scale x w*scale floats, same layout).
struct TiledUpscaler {
    let spec: TilingSpec
    let layout: Layout
    /// The largest core side per call for models that take any size (memory); fixed ones ignore it.
    var coreTile: Int? = nil
    let runTile: ([Float], Int, Int) throws -> [Float]

    /// RGBA bytes (4 per pixel, row by row) in and out; alpha is dropped, the output is opaque.
    /// Each tile is rounded as it is stitched (clamp, times 255, half up: carn_mobile's rounding).
    func upscaleRGBA(_ rgba: [UInt8], width: Int, height: Int) throws -> [UInt8] {
        try require(rgba.count == 4 * width * height, "a \(width)x\(height) RGBA image has \(4 * width * height) bytes, got \(rgba.count)")
        let s = spec.scale
        let outWidth = width * s
        var out = [UInt8](repeating: 255, count: 4 * outWidth * height * s)
        for tile in try spec.plan(height: height, width: width, tile: coreTile) {
            let h = tile.height, w = tile.width
            var input = [Float](repeating: 0, count: 3 * h * w)
            for y in 0..<h {
                for x in 0..<w {
                    let from = 4 * ((tile.y0 + y) * width + tile.x0 + x)
                    for c in 0..<3 { input[index(c, y, x, h, w)] = Float(rgba[from + c]) / 255 }
                }
            }
            let hr = try runTile(input, h, w)
            try require(hr.count == 3 * h * s * w * s,
                        "the model returned \(hr.count) floats for a \(h)x\(w) tile, expected \(3 * h * s * w * s)")
            for y in (tile.coreY0 * s)..<(tile.coreY1 * s) {
                for x in (tile.coreX0 * s)..<(tile.coreX1 * s) {
                    let to = 4 * (y * outWidth + x)
                    for c in 0..<3 { out[to + c] = level(hr[index(c, y - tile.y0 * s, x - tile.x0 * s, h * s, w * s)]) }
                }
            }
        }
        return out
    }

    private func index(_ c: Int, _ y: Int, _ x: Int, _ h: Int, _ w: Int) -> Int {
        layout == .nchw ? (c * h + y) * w + x : (y * w + x) * 3 + c
    }

    private func level(_ v: Float) -> UInt8 {
        UInt8((min(max(Double(v), 0), 1) * 255 + 0.5).rounded(.down))
    }
}
