import CZlib

/// Writes framebuffers as PNG (8-bit RGB, no interlace; zlib deflate and its CRC-32).
/// Foundation has no PNG encoder; the format is small enough to write directly.
public enum PNGWriter {
    public static let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

    /// The PNG file for `fb` (alpha dropped: the screen is opaque).
    public static func encode(_ fb: Framebuffer, level: Int32 = 6) -> [UInt8] {
        // Scanlines: filter byte 0 (none), then RGB.
        let rowBytes = 1 + fb.width * 3
        var raw = [UInt8](repeating: 0, count: rowBytes * fb.height)
        raw.withUnsafeMutableBufferPointer { out in
            fb.pixels.withUnsafeBufferPointer { px in
                for y in 0..<fb.height {
                    var o = y * rowBytes + 1
                    for x in 0..<fb.width {
                        let c = px[y * fb.width + x]
                        out[o] = UInt8(truncatingIfNeeded: c >> 16)
                        out[o + 1] = UInt8(truncatingIfNeeded: c >> 8)
                        out[o + 2] = UInt8(truncatingIfNeeded: c)
                        o += 3
                    }
                }
            }
        }
        var bound = compressBound(uLong(raw.count))
        var deflated = [UInt8](repeating: 0, count: Int(bound))
        let rc = deflated.withUnsafeMutableBufferPointer { d in
            raw.withUnsafeBufferPointer { r in compress2(d.baseAddress!, &bound, r.baseAddress!, uLong(r.count), level) }
        }
        precondition(rc == Z_OK, "compress2 cannot fail with a compressBound-sized buffer")
        deflated.removeLast(deflated.count - Int(bound))

        var png = signature
        var header: [UInt8] = []
        appendBE(&header, UInt32(fb.width))
        appendBE(&header, UInt32(fb.height))
        header += [8, 2, 0, 0, 0] // depth 8, colour type 2 (RGB), deflate, filter 0, no interlace
        chunk(&png, "IHDR", header)
        chunk(&png, "IDAT", deflated)
        chunk(&png, "IEND", [])
        return png
    }

    static func chunk(_ png: inout [UInt8], _ type: String, _ data: [UInt8]) {
        appendBE(&png, UInt32(data.count))
        let typeBytes = Array(type.utf8)
        var crc = crc32(0, nil, 0)
        crc = typeBytes.withUnsafeBufferPointer { crc32(crc, $0.baseAddress, uInt($0.count)) }
        if !data.isEmpty { crc = data.withUnsafeBufferPointer { crc32(crc, $0.baseAddress, uInt($0.count)) } }
        png += typeBytes
        png += data
        appendBE(&png, UInt32(truncatingIfNeeded: crc))
    }

    static func appendBE(_ out: inout [UInt8], _ v: UInt32) {
        out += [UInt8(v >> 24), UInt8(truncatingIfNeeded: v >> 16), UInt8(truncatingIfNeeded: v >> 8), UInt8(truncatingIfNeeded: v)]
    }
}
