// Core ML: upscale a CGImage of any size with a carn-export .mlpackage (tensor I/O), tile by tile
// through CarnTiling.swift, and get a CGImage back.
// Contract: input "lr" float32 [1, 3, H, W] RGB in [0, 1]; output "sr" [1, 3, sH, sW] in [0, 1].
// For the Neural Engine export a fixed size (carn-export --target coreml --scale 4 --shape 128x128):
// every tile is then that size. Written for carn-mobile (MIT). iOS 16+ / macOS 13+.
// NOT compiled in this repository's CI (no Swift toolchain on its Linux machines).

import CoreGraphics
import CoreML

final class CoreMLSuperResolution {
    private let model: MLModel
    private let tiling: TilingSpec

    /// `name` is the artifact's base name, e.g. "carn-m_x4_fp16_128x128" (Xcode bundles it as
    /// .mlmodelc); bundle its manifest too ("carn-m_x4_fp16_128x128.mlpackage.json").
    init(name: String, computeUnits: MLComputeUnits = .all) throws {
        let config = MLModelConfiguration()
        config.computeUnits = computeUnits
        guard let url = Bundle.main.url(forResource: name, withExtension: "mlmodelc"),
              let manifest = Bundle.main.url(forResource: name + ".mlpackage", withExtension: "json") else {
            throw NSError(domain: "CARN", code: 1, userInfo: [NSLocalizedDescriptionKey: "\(name) or its manifest not bundled"])
        }
        model = try MLModel(contentsOf: url, configuration: config)
        tiling = try TilingSpec(manifest: Data(contentsOf: manifest))
    }

    /// Upscales an image of any size, tile by tile (CarnTiling.swift): the result equals one
    /// whole-image run. A fixed-size package refuses images smaller than its tile.
    func upscale(_ image: CGImage, coreTile: Int = 256) throws -> CGImage {
        let (w, h) = (image.width, image.height)
        let tiler = TiledUpscaler(spec: tiling, layout: .nchw, coreTile: coreTile, runTile: self.runTile)
        let pixels = try tiler.upscaleRGBA(try rgbaBytes(of: image), width: w, height: h)
        return try makeImage(pixels, width: w * tiling.scale, height: h * tiling.scale)
    }

    /// One tile: planar RGB floats [1, 3, h, w] in, [1, 3, h*s, w*s] out.
    private func runTile(_ tile: [Float], _ h: Int, _ w: Int) throws -> [Float] {
        let lr = try MLMultiArray(shape: [1, 3, NSNumber(value: h), NSNumber(value: w)], dataType: .float32)
        let dst = lr.dataPointer.bindMemory(to: Float.self, capacity: tile.count)
        for i in 0..<tile.count { dst[i] = tile[i] }
        let output = try model.prediction(from: MLDictionaryFeatureProvider(dictionary: ["lr": lr]))
        guard let sr = output.featureValue(for: "sr")?.multiArrayValue else {
            throw NSError(domain: "CARN", code: 2, userInfo: [NSLocalizedDescriptionKey: "no sr output"])
        }
        // The float32 output array is contiguous for these models; if you request a float16
        // output or read strides from a custom model, honour `sr.strides` instead.
        let count = sr.count
        let src = sr.dataPointer.bindMemory(to: Float.self, capacity: count)
        return Array(UnsafeBufferPointer(start: src, count: count))
    }

    private func rgbaBytes(of image: CGImage) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 4 * image.width * image.height)
        let drawn = bytes.withUnsafeMutableBytes { buffer -> Bool in
            guard let ctx = CGContext(data: buffer.baseAddress, width: image.width, height: image.height,
                                      bitsPerComponent: 8, bytesPerRow: 4 * image.width,
                                      space: CGColorSpace(name: CGColorSpace.sRGB)!,
                                      bitmapInfo: CGImageAlphaInfo.noneSkipLast.rawValue) else { return false }
            ctx.draw(image, in: CGRect(x: 0, y: 0, width: image.width, height: image.height))
            return true
        }
        guard drawn else { throw NSError(domain: "CARN", code: 3) }
        return bytes
    }

    private func makeImage(_ pixels: [UInt8], width: Int, height: Int) throws -> CGImage {
        let data = CFDataCreate(nil, pixels, pixels.count)!
        guard let provider = CGDataProvider(data: data),
              let image = CGImage(width: width, height: height, bitsPerComponent: 8, bitsPerPixel: 32,
                                  bytesPerRow: 4 * width, space: CGColorSpace(name: CGColorSpace.sRGB)!,
                                  bitmapInfo: CGBitmapInfo(rawValue: CGImageAlphaInfo.noneSkipLast.rawValue),
                                  provider: provider, decode: nil, shouldInterpolate: false,
                                  intent: .defaultIntent) else { throw NSError(domain: "CARN", code: 4) }
        return image
    }
}
