/// A rectangle in pixels: top-left corner and size (text regions, where a picture went).
public struct Rect: Sendable, Equatable, CustomStringConvertible {
    public var x: Int, y: Int, width: Int, height: Int
    public init(x: Int, y: Int, width: Int, height: Int) { self.x = x; self.y = y; self.width = width; self.height = height }
    public var maxX: Int { x + width }
    public var maxY: Int { y + height }
    public var isEmpty: Bool { width <= 0 || height <= 0 }
    public var description: String { "\(width)x\(height)+\(x)+\(y)" }
    /// The part inside `other`.
    public func clipped(to other: Rect) -> Rect {
        let x0 = max(x, other.x), y0 = max(y, other.y)
        let x1 = min(maxX, other.maxX), y1 = min(maxY, other.maxY)
        return Rect(x: x0, y: y0, width: max(0, x1 - x0), height: max(0, y1 - y0))
    }
}

/// An XRGB8888 picture in memory (the layout of a DRM dumb buffer: 0x00RRGGBB per pixel,
/// rows `width` pixels apart). The simulator's screen, and what every backend draws into.
public struct Framebuffer: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public var pixels: [UInt32]

    /// A `width` × `height` picture (at least 1 × 1) filled with `color` (XRGB8888).
    public init(width: Int, height: Int, color: UInt32 = 0) {
        self.width = max(1, width)
        self.height = max(1, height)
        pixels = [UInt32](repeating: color, count: self.width * self.height)
    }

    public var bounds: Rect { Rect(x: 0, y: 0, width: width, height: height) }

    /// The pixel at (`x`, `y`) as 0x00RRGGBB.
    public subscript(x: Int, y: Int) -> UInt32 {
        get { pixels[y * width + x] }
        set { pixels[y * width + x] = newValue }
    }

    /// Fills `rect` (clipped to the picture) with `color`.
    public mutating func fill(_ rect: Rect, color: UInt32) {
        let r = rect.clipped(to: bounds)
        guard !r.isEmpty else { return }
        let w = width
        pixels.withUnsafeMutableBufferPointer { p in
            for row in r.y..<r.maxY {
                (p.baseAddress! + row * w + r.x).update(repeating: color, count: r.width)
            }
        }
    }

    public mutating func clear(_ color: UInt32 = 0) { fill(bounds, color: color) }
}

/// Colours as XRGB8888.
public enum Colour {
    public static let black: UInt32 = 0x000000
    public static let white: UInt32 = 0xFFFFFF
    public static let background: UInt32 = 0x10202C
    public static let accent: UInt32 = 0x2E8B57
    public static let ringing: UInt32 = 0x1E5AA8
    public static let fault: UInt32 = 0xA02020
    public static let dim: UInt32 = 0x303030
    public static func rgb(_ r: UInt8, _ g: UInt8, _ b: UInt8) -> UInt32 { UInt32(r) << 16 | UInt32(g) << 8 | UInt32(b) }
    public static func red(_ c: UInt32) -> UInt8 { UInt8(truncatingIfNeeded: c >> 16) }
    public static func green(_ c: UInt32) -> UInt8 { UInt8(truncatingIfNeeded: c >> 8) }
    public static func blue(_ c: UInt32) -> UInt8 { UInt8(truncatingIfNeeded: c) }
}
