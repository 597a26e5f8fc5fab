// Core ML: run a carn-export .mlpackage (tensor I/O) on a CGImage and get a CGImage back.
// Contract: input "lr" float32 [1, 3, H, W] RGB in [0, 1]; output "sr" [1, 3, sH, sW] in [0, 1].
// Written for carn-mobile (MIT). iOS 16+ / macOS 13+.

import CoreGraphics
import CoreML

final class CoreMLSuperResolution {
    private let model: MLModel

    /// `name` is the artifact's base name, e.g. "carn-m_x4_fp16" (Xcode bundles it as .mlmodelc).
    init(name: String, computeUnits: MLComputeUnits = .all) throws {
        let config = MLModelConfiguration()
        config.computeUnits = computeUnits
        guard let url = Bundle.main.url(forResource: name, withExtension: "mlmodelc") else {
            throw NSError(domain: "CARN", code: 1, userInfo: [NSLocalizedDescriptionKey: "\(name) not bundled"])
        }
        model = try MLModel(contentsOf: url, configuration: config)
    }

    /// Upscales one tile. For big images call this per tile (see export/README.md, "Memory and tiling").
    func upscale(_ image: CGImage) throws -> CGImage {
        let (w, h) = (image.width, image.height)
        let rgba = try rgbaBytes(of: image)

        // Preprocessing: RGBA bytes -> planar RGB floats in [0, 1].
        let lr = try MLMultiArray(shape: [1, 3, NSNumber(value: h), NSNumber(value: w)], dataType: .float32)
        let dst = lr.dataPointer.bindMemory(to: Float.self, capacity: 3 * h * w)
        let plane = h * w
        for i in 0..<plane {
            dst[i] = Float(rgba[4 * i]) / 255
            dst[plane + i] = Float(rgba[4 * i + 1]) / 255
            dst[2 * plane + i] = Float(rgba[4 * i + 2]) / 255
        }

        let output = try model.prediction(from: MLDictionaryFeatureProvider(dictionary: ["lr": lr]))
        guard let sr = output.featureValue(for: "sr")?.multiArrayValue else {
            throw NSError(domain: "CARN", code: 2, userInfo: [NSLocalizedDescriptionKey: "no sr output"])
        }

        // Postprocessing: planar RGB in [0, 1] (already clamped by the model) -> RGBA bytes.
        let outH = sr.shape[2].intValue, outW = sr.shape[3].intValue
        let src = sr.dataPointer.bindMemory(to: Float.self, capacity: 3 * outH * outW)
        let outPlane = outH * outW
        var pixels = [UInt8](repeating: 255, count: 4 * outPlane)
        for i in 0..<outPlane {
            pixels[4 * i] = UInt8((src[i] * 255).rounded())
            pixels[4 * i + 1] = UInt8((src[outPlane + i] * 255).rounded())
            pixels[4 * i + 2] = UInt8((src[2 * outPlane + i] * 255).rounded())
        }
        return try makeImage(pixels, width: outW, height: outH)
    }
    // Note: the float32 output array is contiguous for these models; if you request a float16
    // output or read strides from a custom model, honour `sr.strides` instead.

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
