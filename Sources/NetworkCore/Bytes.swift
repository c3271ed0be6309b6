/// Big-endian reads over a byte array, bounds-checked, with no allocation.
///
/// Parsers use it to walk a datagram; every read returns `nil` past the end so a
/// truncated packet becomes a parse error instead of a trap.
public struct ByteReader {
    public let bytes: [UInt8]
    public private(set) var offset: Int
    public let end: Int

    public init(_ bytes: [UInt8], offset: Int = 0, end: Int? = nil) {
        self.bytes = bytes
        self.offset = offset
        self.end = min(end ?? bytes.count, bytes.count)
    }

    /// Bytes left to read.
    public var remaining: Int { end - offset }

    public mutating func u8() -> UInt8? {
        guard offset < end else { return nil }
        defer { offset += 1 }
        return bytes[offset]
    }

    public mutating func u16() -> UInt16? {
        guard offset + 2 <= end else { return nil }
        defer { offset += 2 }
        return UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
    }

    public mutating func u24() -> UInt32? {
        guard offset + 3 <= end else { return nil }
        defer { offset += 3 }
        return UInt32(bytes[offset]) << 16 | UInt32(bytes[offset + 1]) << 8 | UInt32(bytes[offset + 2])
    }

    public mutating func u32() -> UInt32? {
        guard offset + 4 <= end else { return nil }
        defer { offset += 4 }
        return bytes.readU32(at: offset)
    }

    public mutating func u64() -> UInt64? {
        guard let hi = u32(), let lo = u32() else { return nil }
        return UInt64(hi) << 32 | UInt64(lo)
    }

    public mutating func take(_ count: Int) -> ArraySlice<UInt8>? {
        guard count >= 0, offset + count <= end else { return nil }
        defer { offset += count }
        return bytes[offset..<offset + count]
    }

    public mutating func skip(_ count: Int) -> Bool {
        guard count >= 0, offset + count <= end else { return false }
        offset += count
        return true
    }
}

extension Array where Element == UInt8 {
    @inlinable public mutating func appendU16(_ v: UInt16) {
        append(UInt8(v >> 8)); append(UInt8(truncatingIfNeeded: v))
    }
    @inlinable public mutating func appendU24(_ v: UInt32) {
        append(UInt8(truncatingIfNeeded: v >> 16)); append(UInt8(truncatingIfNeeded: v >> 8)); append(UInt8(truncatingIfNeeded: v))
    }
    @inlinable public mutating func appendU32(_ v: UInt32) {
        append(UInt8(v >> 24)); append(UInt8(truncatingIfNeeded: v >> 16))
        append(UInt8(truncatingIfNeeded: v >> 8)); append(UInt8(truncatingIfNeeded: v))
    }
    @inlinable public mutating func appendU64(_ v: UInt64) {
        appendU32(UInt32(v >> 32)); appendU32(UInt32(truncatingIfNeeded: v))
    }
    @inlinable public func readU16(at i: Int) -> UInt16 {
        UInt16(self[i]) << 8 | UInt16(self[i + 1])
    }
    @inlinable public func readU32(at i: Int) -> UInt32 {
        UInt32(self[i]) << 24 | UInt32(self[i + 1]) << 16 | UInt32(self[i + 2]) << 8 | UInt32(self[i + 3])
    }
    @inlinable public mutating func writeU16(_ v: UInt16, at i: Int) {
        self[i] = UInt8(v >> 8); self[i + 1] = UInt8(truncatingIfNeeded: v)
    }
    @inlinable public mutating func writeU32(_ v: UInt32, at i: Int) {
        self[i] = UInt8(v >> 24); self[i + 1] = UInt8(truncatingIfNeeded: v >> 16)
        self[i + 2] = UInt8(truncatingIfNeeded: v >> 8); self[i + 3] = UInt8(truncatingIfNeeded: v)
    }
}

/// Hexadecimal helpers, used by fingerprints and test vectors.
public enum Hex {
    public static func encode<C: Collection>(_ bytes: C, separator: String = "", uppercase: Bool = false) -> String where C.Element == UInt8 {
        let digits: [Character] = Array(uppercase ? "0123456789ABCDEF" : "0123456789abcdef")
        var out = ""
        out.reserveCapacity(bytes.count * (2 + separator.count))
        var first = true
        for b in bytes {
            if !first { out += separator }
            first = false
            out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 0xF)])
        }
        return out
    }

    /// Decodes hex, ignoring whitespace and `:` separators; `nil` on any other character.
    public static func decode(_ text: String) -> [UInt8]? {
        var out: [UInt8] = []
        var pending: UInt8? = nil
        for c in text.utf8 {
            let v: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): v = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): v = c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): v = c - UInt8(ascii: "A") + 10
            case UInt8(ascii: ":"), UInt8(ascii: " "), UInt8(ascii: "\n"), UInt8(ascii: "\t"): continue
            default: return nil
            }
            if let p = pending { out.append(p << 4 | v); pending = nil } else { pending = v }
        }
        return pending == nil ? out : nil
    }
}

/// CRC-32 (ISO-HDLC, as used by STUN FINGERPRINT, RFC 8489 §14.7).
public enum CRC32 {
    private static let table: [UInt32] = (0..<256).map { i -> UInt32 in
        var c = UInt32(i)
        for _ in 0..<8 { c = (c & 1) != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    /// Contiguous bytes (arrays, their slices) go through the raw-buffer overload: iterating a
    /// collection in this unspecialized generic code mallocs per byte (each element read is a
    /// coroutine whose frame is allocated), which every STUN FINGERPRINT paid.
    public static func checksum<C: Collection>(_ bytes: C) -> UInt32 where C.Element == UInt8 {
        if let crc = bytes.withContiguousStorageIfAvailable({ checksum(UnsafeRawBufferPointer($0)) }) { return crc }
        var crc: UInt32 = 0xFFFF_FFFF
        for b in bytes { crc = step(crc, b) }
        return crc ^ 0xFFFF_FFFF
    }

    /// The CRC-32 of raw bytes.
    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for b in bytes { crc = step(crc, b) }
        return crc ^ 0xFFFF_FFFF
    }

    @inline(__always) private static func step(_ crc: UInt32, _ b: UInt8) -> UInt32 {
        table[Int((crc ^ UInt32(b)) & 0xFF)] ^ (crc >> 8)
    }
}
