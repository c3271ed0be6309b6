/// Chooses the picture size and frame rate the encoder gets from the congestion
/// controller's target, as WebRTC's "balanced" degradation does: a starved 720p picture
/// looks worse than a fed 540p or 360p one, and below that half the frames beat smeared
/// ones. I/O-free: targets and time come in, the rung comes out.
///
/// Rungs are fractions of the configured size (1, 3/4, 1/2), then half the frame rate at
/// the smallest. A rung is left downwards when the target gives it less than
/// ``downBitsPerPixel`` per pixel per frame, and upwards when the higher rung would get
/// ``upBitsPerPixel``; the gap between the two, and ``minimumHold`` between changes, keep
/// it from flapping (each change costs the receiver a keyframe).
public struct EncodingLadder: Sendable, Equatable {
    public struct Rung: Sendable, Equatable {
        public var width: Int
        public var height: Int
        public var fps: Int
    }

    public static let downBitsPerPixel = 0.025
    public static let upBitsPerPixel = 0.036
    public static let minimumHoldSeconds = 2.0

    public let rungs: [Rung]
    public private(set) var index = 0
    private var lastChangeSeconds: Double?

    /// Rungs for a camera of `width`×`height` at `fps`; sizes stay even (I420).
    public init(width: Int, height: Int, fps: Int) {
        func even(_ x: Double) -> Int { max(2, Int(x) & ~1) }
        var r = [Rung(width: width, height: height, fps: fps)]
        for f in [0.75, 0.5] where height >= 360 {
            r.append(Rung(width: even(Double(width) * f), height: even(Double(height) * f), fps: fps))
        }
        if fps >= 20 { r.append(Rung(width: r.last!.width, height: r.last!.height, fps: fps / 2)) }
        rungs = r
    }

    public var current: Rung { rungs[index] }

    static func bitsPerPixel(_ kbps: Int, _ r: Rung) -> Double {
        Double(kbps) * 1000 / Double(r.width * r.height * r.fps)
    }

    /// Halving the frame rate is the last resort: only under half the size rungs' bound
    /// (about 85 kbit/s for 360p30), so that a 300 kbit/s link keeps its 30 frames.
    static func downBound(_ from: Rung, _ to: Rung) -> Double {
        to.fps < from.fps ? downBitsPerPixel / 2 : downBitsPerPixel
    }

    /// The rung for `targetKbps` at time `seconds` (any monotonic clock); returns the new
    /// rung when it changed. A rung changes only when the target has called for it for a
    /// while (``downAfterSeconds`` down, ``upAfterSeconds`` up): congestion control's brief
    /// dips, as it drains a queue, must not cost the receiver two keyframes.
    public mutating func update(targetKbps: Int, seconds: Double) -> Rung? {
        var i = index
        while i + 1 < rungs.count, Self.bitsPerPixel(targetKbps, rungs[i]) < Self.downBound(rungs[i], rungs[i + 1]) { i += 1 }
        if i == index {
            while i > 0, Self.bitsPerPixel(targetKbps, rungs[i - 1]) >= Self.upBitsPerPixel * (rungs[i - 1].fps > rungs[i].fps ? 0.5 : 1) { i -= 1 }
        }
        guard i != index else { wanted = nil; return nil }
        let direction = i > index ? 1 : -1
        if wanted?.direction != direction { wanted = (direction, seconds) }
        let held = seconds - wanted!.since
        // A collapse (under half the bound) goes down at once: a keyframe at the old size
        // would take seconds to cross the link.
        let collapse = direction > 0 && Self.bitsPerPixel(targetKbps, rungs[index]) < Self.downBound(rungs[index], rungs[index + 1]) / 2
        guard collapse || held >= (direction > 0 ? Self.downAfterSeconds : Self.upAfterSeconds) else { return nil }
        if let last = lastChangeSeconds, seconds - last < Self.minimumHoldSeconds { return nil }
        index = i
        lastChangeSeconds = seconds
        wanted = nil
        return rungs[i]
    }

    public static let downAfterSeconds = 1.5
    public static let upAfterSeconds = 4.0
    private var wanted: (direction: Int, since: Double)?

    public static func == (a: EncodingLadder, b: EncodingLadder) -> Bool { a.rungs == b.rungs && a.index == b.index }
}

/// Downscales I420 pictures (≥ 1/2 per axis) by averaging the 2×2 source block under each
/// output pixel: cheap enough per frame on a small board, and without nearest-neighbour's
/// shimmer. The output buffer is reused.
public struct I420Scaler: Sendable {
    public private(set) var output: [UInt8] = []

    public init() {}

    public mutating func scale(_ src: UnsafeRawBufferPointer, width: Int, height: Int, toWidth dw: Int, toHeight dh: Int) {
        let needed = dw * dh * 3 / 2
        if output.count != needed { output = [UInt8](repeating: 0, count: needed) }
        guard src.count >= width * height * 3 / 2, let base = src.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
        output.withUnsafeMutableBufferPointer { out in
            let o = out.baseAddress!
            Self.plane(base, width, height, o, dw, dh)
            let sw = width / 2, sh = height / 2, ow = dw / 2, oh = dh / 2
            Self.plane(base + width * height, sw, sh, o + dw * dh, ow, oh)
            Self.plane(base + width * height + sw * sh, sw, sh, o + dw * dh + ow * oh, ow, oh)
        }
    }

    private static func plane(_ s: UnsafePointer<UInt8>, _ w: Int, _ h: Int, _ d: UnsafeMutablePointer<UInt8>, _ dw: Int, _ dh: Int) {
        guard dw > 0, dh > 0, w > 1, h > 1 else { return }
        // 16.16 fixed point steps from output to source coordinates.
        let xStep = (w << 16) / dw, yStep = (h << 16) / dh
        for y in 0..<dh {
            let sy = min((y * yStep) >> 16, h - 2)
            let row0 = s + sy * w, row1 = row0 + w
            let out = d + y * dw
            var sx16 = 0
            for x in 0..<dw {
                let sx = min(sx16 >> 16, w - 2)
                let sum = Int(row0[sx]) + Int(row0[sx + 1]) + Int(row1[sx]) + Int(row1[sx + 1])
                out[x] = UInt8(truncatingIfNeeded: (sum + 2) >> 2)
                sx16 += xStep
            }
        }
    }
}
