import NetworkCore

/// The one line `videophonectl pair-code` prints and `videophonectl add-peer` reads:
/// `vp1:` then base64url (no padding) of
///
///     version (1) · length of what follows up to the checksum (u16, big-endian)
///     · name (u8 length + UTF-8) · signalling URL (u8 length + UTF-8)
///     · fingerprint (u8 algorithm: 1 = sha-256, then its 32 bytes)
///     · token (u8 length + bytes) · CRC-32 of everything before it (u32, big-endian)
///
/// The token is the secret the issuing device will accept from the reader: the code is a
/// password, to be passed on like one. A truncated or mistyped code is refused, naming
/// what is wrong, before anything is written.
public struct PairCode: Equatable, Sendable {
    /// The issuing device's name (`device.name`).
    public var name: String
    /// Where it answers calls (`signalling.url`, or made from its addresses).
    public var url: String
    /// The SHA-256 of its certificate.
    public var fingerprint: [UInt8]
    /// What the issuer accepts from the reader: the reader's `[[peer]] token`.
    public var token: [UInt8]

    public init(name: String, url: String, fingerprint: [UInt8], token: [UInt8]) {
        self.name = name; self.url = url; self.fingerprint = fingerprint; self.token = token
    }

    static let prefix = "vp1:"

    /// The fingerprint as the config writes it: `sha-256 AB:CD:...`.
    public var fingerprintText: String { "sha-256 " + Hex.encode(fingerprint, separator: ":", uppercase: true) }
    /// The token as the config writes it (base64url).
    public var tokenText: String { Base64URL.encode(token) }

    /// The code line.
    public var encoded: String {
        var body: [UInt8] = []
        func field(_ b: [UInt8]) { body.append(UInt8(min(b.count, 255))); body += b.prefix(255) }
        field(Array(name.utf8))
        field(Array(url.utf8))
        body.append(1)
        body += fingerprint
        field(token)
        var bytes: [UInt8] = [1, UInt8(body.count >> 8), UInt8(body.count & 0xFF)] + body
        let crc = CRC32.checksum(bytes)
        bytes += [UInt8(crc >> 24), UInt8(crc >> 16 & 0xFF), UInt8(crc >> 8 & 0xFF), UInt8(crc & 0xFF)]
        return PairCode.prefix + Base64URL.encode(bytes)
    }

    /// What is wrong with a code, in words for the person who pasted it.
    public struct Problem: Error, CustomStringConvertible, Equatable {
        public var description: String
    }

    /// Reads a code line (surrounding whitespace is ignored).
    public init(parsing line: String) throws(Problem) {
        let text = line.trimmingWhitespace
        guard text.hasPrefix(PairCode.prefix) else {
            if text.hasPrefix("vp"), let colon = text.firstIndex(of: ":") {
                throw Problem(description: "this code is version '\(text[..<colon])'; this videophonectl reads vp1 codes")
            }
            throw Problem(description: "not a pairing code: it should start with 'vp1:' (copy the whole line `videophonectl pair-code` printed)")
        }
        let payload = text.dropFirst(PairCode.prefix.count)
        let bytes: [UInt8]
        let canonical: Bool
        switch Base64URL.decode(String(payload)) {
        case .success(let b): (bytes, canonical) = b
        case .failure(let bad):
            let position = bad.position
            let ch = payload[payload.index(payload.startIndex, offsetBy: position)]
            throw Problem(description: "character '\(ch)' at position \(position + 1 + PairCode.prefix.count) is not part of a pairing code: mistyped?")
        }
        guard bytes.count >= 8 else { throw Problem(description: "truncated: only \(text.count) characters (a code has about 130)") }
        guard bytes[0] == 1 else { throw Problem(description: "unknown code version \(bytes[0]) (checksum not checked): mistyped?") }
        let declared = Int(bytes[1]) << 8 | Int(bytes[2])
        let expected = 3 + declared + 4
        let expectedChars = PairCode.prefix.count + (expected * 4 + 2) / 3
        if bytes.count < expected {
            throw Problem(description: "truncated: the code has \(text.count) of its \(expectedChars) characters (checksum cannot match)")
        }
        if bytes.count > expected {
            throw Problem(description: "\(text.count - expectedChars) characters too many at the end: mistyped or two codes pasted together?")
        }
        guard canonical else {
            throw Problem(description: "checksum mismatch: the last character was mistyped or changed on the way")
        }
        let crc = CRC32.checksum(Array(bytes[..<(expected - 4)]))
        let stored = bytes[(expected - 4)...].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        guard crc == stored else {
            throw Problem(description: "checksum mismatch: the code was mistyped or changed on the way (compare it character by character)")
        }
        var r = bytes[3..<(expected - 4)]
        func field(_ what: String) throws(Problem) -> [UInt8] {
            guard let n = r.first, r.count > Int(n) else { throw Problem(description: "malformed code: \(what) is cut short") }
            let f = Array(r.dropFirst().prefix(Int(n)))
            r = r.dropFirst(1 + Int(n))
            return f
        }
        guard let n = String(validating: try field("the name"), as: UTF8.self), !n.isEmpty,
              let u = String(validating: try field("the URL"), as: UTF8.self) else {
            throw Problem(description: "malformed code: the name or URL is not text")
        }
        guard r.first == 1, r.count >= 33 else { throw Problem(description: "malformed code: the fingerprint is not sha-256") }
        fingerprint = Array(r.dropFirst().prefix(32))
        r = r.dropFirst(33)
        token = try field("the token")
        guard token.count >= 16 else { throw Problem(description: "malformed code: the token is too short") }
        guard r.isEmpty else { throw Problem(description: "malformed code: unexpected bytes after the token") }
        name = n
        url = u
    }
}

/// base64url without padding (RFC 4648 §5).
public enum Base64URL {
    static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    public static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        var i = 0
        while i < bytes.count {
            let n = min(3, bytes.count - i)
            var v = UInt32(bytes[i]) << 16
            if n > 1 { v |= UInt32(bytes[i + 1]) << 8 }
            if n > 2 { v |= UInt32(bytes[i + 2]) }
            for k in 0..<(n + 1) { out.append(alphabet[Int(v >> (18 - 6 * k) & 63)]) }
            i += 3
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Where a text stops being base64url.
    public struct BadCharacter: Error { public var position: Int }

    /// The bytes and whether the text was their canonical encoding, or the position of
    /// the first character that cannot be in base64url.
    public static func decode(_ text: String) -> Result<(bytes: [UInt8], canonical: Bool), BadCharacter> {
        var out: [UInt8] = []
        var acc: UInt32 = 0, bits = 0
        for (i, c) in text.utf8.enumerated() {
            guard let v = alphabet.firstIndex(of: c) else { return .failure(BadCharacter(position: i)) }
            acc = acc << 6 | UInt32(v)
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(acc >> UInt32(bits) & 0xFF))
            }
        }
        // The last character's unused bits are zero in a canonical encoding, and a lone
        // sixth of a byte cannot end one: anything else was changed on the way.
        return .success((out, bits < 6 && acc & ((1 << UInt32(bits)) - 1) == 0))
    }
}

/// CRC-32 (IEEE 802.3, as zlib computes it): catches every one- and two-character typo.
enum CRC32 {
    static let table: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB88320 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func checksum(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFFFFFF
        for b in bytes { c = table[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        return c ^ 0xFFFFFFFF
    }
}

extension String {
    var trimmingWhitespace: String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s = s.dropFirst() }
        while let l = s.last, l.isWhitespace { s = s.dropLast() }
        return String(s)
    }
}
