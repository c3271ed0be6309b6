/// Signalling messages that travel through a broker the devices do not trust: each one is
/// signed with the sender's identity key (the DTLS ECDSA P-256 key) and carries the
/// sender's certificate, the recipient's fingerprint, a nonce and a timestamp. The
/// receiver checks the certificate against the fingerprints it pinned, the signature, the
/// recipient, the clock window and a bounded replay cache (``SignalVerifier``), so the
/// broker can relay a call but can neither forge one nor replay one.
///
/// Wire form (all in one MQTT payload):
///
///     u16 certificate length | certificate (DER) | u8 signature length | signature (DER) | signed text
///
/// The signed text is UTF-8 header lines (`key value`), an empty line, and the body (an
/// SDP offer or answer, or trickle fragment lines). No I/O here; the fuzzer drives
/// ``SignalMessage/parse(_:)``.
public struct SignalMessage: Equatable, Sendable {
    /// What the message asks for. Requests (`offer`, `patch`, `delete`) name a call; a
    /// `reply` answers the request whose nonce it names in ``ref``.
    public enum Kind: String, Sendable, CaseIterable {
        case offer, reply, patch, delete
    }

    public var kind: Kind
    /// SHA-256 of the sender's certificate (checked against the certificate carried).
    public var from: [UInt8]
    /// SHA-256 of the recipient's certificate: a message for one device is refused by another.
    public var to: [UInt8]
    /// 16 random bytes, never reused by the sender.
    public var nonce: [UInt8]
    /// The sender's wall clock, ms since 1970.
    public var time: Int64
    /// For an offer: the caller's own call id (the callee addresses patches and hang-ups
    /// back to it). For a patch or delete: the recipient's call id.
    public var call: String
    /// For a reply: the nonce of the request answered.
    public var ref: [UInt8]?
    /// For a reply: the outcome, with HTTP's status codes (201 answered, 409 busy, ...).
    public var status: Int?
    /// For a reply to an offer: the callee's call id.
    public var location: String?
    /// For a reply: a glare mark (`ours`: the callee's own call wins).
    public var glare: String?
    /// The sender's device name (informational; the pinned name is what counts).
    public var name: String?
    public var body: String

    public init(kind: Kind, from: [UInt8], to: [UInt8], nonce: [UInt8], time: Int64, call: String, ref: [UInt8]? = nil,
                status: Int? = nil, location: String? = nil, glare: String? = nil, name: String? = nil, body: String = "") {
        self.kind = kind; self.from = from; self.to = to; self.nonce = nonce; self.time = time; self.call = call; self.ref = ref
        self.status = status; self.location = location; self.glare = glare; self.name = name; self.body = body
    }

    /// Limits: a message larger than this is refused unread.
    public static let maxSize = 24 * 1024
    public static let maxBody = 16 * 1024
    static let maxCertificate = 2048
    static let magic = "VPS1"

    /// The text the signature covers.
    public var signedText: [UInt8] {
        var s = "\(Self.magic)\nkind \(kind.rawValue)\nfrom \(hex(from))\nto \(hex(to))\nnonce \(hex(nonce))\ntime \(time)\ncall \(call)\n"
        if let ref { s += "ref \(hex(ref))\n" }
        if let status { s += "status \(status)\n" }
        if let location { s += "location \(location)\n" }
        if let glare { s += "glare \(glare)\n" }
        if let name { s += "name \(name)\n" }
        s += "\n" + body
        return Array(s.utf8)
    }

    /// The wire form: `certificate` (DER) and a signature over ``signedText`` made by `sign`.
    public func encode(certificate: [UInt8], sign: ([UInt8]) throws -> [UInt8]) rethrows -> [UInt8] {
        let text = signedText
        let sig = try sign(text)
        precondition(certificate.count <= Self.maxCertificate && sig.count <= 255)
        var out: [UInt8] = []
        out.reserveCapacity(3 + certificate.count + sig.count + text.count)
        out.append(UInt8(certificate.count >> 8)); out.append(UInt8(certificate.count & 0xff))
        out += certificate
        out.append(UInt8(sig.count))
        out += sig
        out += text
        return out
    }

    /// A message read off the wire, not verified yet.
    public struct Unverified: Sendable {
        public var message: SignalMessage
        public var certificate: [UInt8]
        public var signature: [UInt8]
        public var signedText: [UInt8]
    }

    /// Reads the wire form; nothing is trusted yet (see ``SignalVerifier``).
    public static func parse(_ bytes: [UInt8]) -> Result<Unverified, SignalRefusal> {
        func bad(_ why: String) -> Result<Unverified, SignalRefusal> { .failure(.malformed(why)) }
        guard bytes.count <= maxSize else { return bad("\(bytes.count) bytes (at most \(maxSize))") }
        guard bytes.count >= 3 else { return bad("too short") }
        let certLen = Int(bytes[0]) << 8 | Int(bytes[1])
        guard certLen > 0, certLen <= maxCertificate, bytes.count >= 2 + certLen + 1 else { return bad("certificate length \(certLen)") }
        let cert = Array(bytes[2..<(2 + certLen)])
        let sigLen = Int(bytes[2 + certLen])
        let sigStart = 3 + certLen
        guard sigLen >= 8, bytes.count >= sigStart + sigLen else { return bad("signature length \(sigLen)") }
        let sig = Array(bytes[sigStart..<(sigStart + sigLen)])
        let text = Array(bytes[(sigStart + sigLen)...])
        // Headers end at the first empty line; the body is the rest, verbatim.
        var headerEnd: Int? = nil
        var i = 0
        while i + 1 < text.count {
            if text[i] == 0x0a && text[i + 1] == 0x0a { headerEnd = i; break }
            i += 1
        }
        guard let headerEnd else { return bad("no end of headers") }
        guard let head = String(validating: text[0..<headerEnd], as: UTF8.self),
              let body = String(validating: text[(headerEnd + 2)...], as: UTF8.self) else { return bad("not UTF-8") }
        guard body.utf8.count <= maxBody else { return bad("body of \(body.utf8.count) bytes (at most \(maxBody))") }
        let lines = head.split(separator: "\n", omittingEmptySubsequences: false)
        guard lines.first == Substring(magic) else { return bad("not a \(magic) message") }
        var fields: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let sp = line.firstIndex(of: " ") else { return bad("header line without a value") }
            let key = String(line[..<sp]), value = String(line[line.index(after: sp)...])
            guard fields[key] == nil else { return bad("header '\(key.prefix(16))' twice") }
            guard fields.count < 12 else { return bad("too many headers") }
            fields[key] = value
        }
        guard let k = fields["kind"], let kind = Kind(rawValue: k) else { return bad("unknown kind") }
        guard let from = fields["from"].flatMap(unhex), from.count == 32 else { return bad("from is not a SHA-256 fingerprint") }
        guard let to = fields["to"].flatMap(unhex), to.count == 32 else { return bad("to is not a SHA-256 fingerprint") }
        guard let nonce = fields["nonce"].flatMap(unhex), nonce.count == 16 else { return bad("nonce is not 16 bytes") }
        guard let t = fields["time"], t.utf8.count <= 16, let time = Int64(t) else { return bad("time is not a number") }
        guard let call = fields["call"], isToken(call, max: 64) else { return bad("call id is not 1 to 64 of A-Z a-z 0-9 -") }
        var m = SignalMessage(kind: kind, from: from, to: to, nonce: nonce, time: time, call: call, body: body)
        if let r = fields["ref"] {
            guard let ref = unhex(r), ref.count == 16 else { return bad("ref is not 16 bytes") }
            m.ref = ref
        }
        if let s = fields["status"] {
            guard s.utf8.count <= 3, let status = Int(s), (100...599).contains(status) else { return bad("status is not 100 to 599") }
            m.status = status
        }
        if let l = fields["location"] {
            guard isToken(l, max: 64) else { return bad("location is not a call id") }
            m.location = l
        }
        if let g = fields["glare"] {
            guard isToken(g, max: 16) else { return bad("glare mark") }
            m.glare = g
        }
        if let n = fields["name"] {
            guard !n.isEmpty, n.utf8.count <= 64 else { return bad("name longer than 64 bytes") }
            m.name = n
        }
        switch kind {
        case .reply: guard m.ref != nil, m.status != nil else { return bad("a reply needs ref and status") }
        default: guard m.ref == nil, m.status == nil else { return bad("only a reply has ref and status") }
        }
        return .success(Unverified(message: m, certificate: cert, signature: sig, signedText: text))
    }
}

/// Why a signalling message was refused; ``label`` names the metrics series.
public enum SignalRefusal: Error, Equatable, Sendable, CustomStringConvertible {
    case malformed(String)
    /// Signed by a certificate no peer of ours is pinned to (hex fingerprint).
    case unpinned(String)
    /// The certificate does not hash to the `from` it claims.
    case wrongSender
    /// Meant for another device.
    case notForUs(peer: String)
    case badSignature(peer: String)
    /// Outside the clock window (skew in ms, positive: from the future).
    case stale(peer: String, skewMs: Int64)
    case replayed(peer: String)
    /// The replay cache is full of live entries: a flood; refused rather than forgotten.
    case replayCacheFull(peer: String)

    public var label: String {
        switch self {
        case .malformed: "malformed"
        case .unpinned: "unpinned"
        case .wrongSender: "wrong_sender"
        case .notForUs: "not_for_us"
        case .badSignature: "bad_signature"
        case .stale: "stale"
        case .replayed: "replayed"
        case .replayCacheFull: "replay_cache_full"
        }
    }

    /// All labels, so every series exists from start at zero.
    public static let labels = ["malformed", "unpinned", "wrong_sender", "not_for_us", "bad_signature", "stale", "replayed", "replay_cache_full"]

    /// The peer it claims to come from, when the signature check got that far.
    public var peer: String? {
        switch self {
        case .notForUs(let p), .badSignature(let p), .stale(let p, _), .replayed(let p), .replayCacheFull(let p): p
        default: nil
        }
    }

    public var description: String {
        switch self {
        case .malformed(let why): "malformed signalling message: \(why)"
        case .unpinned(let fp): "signed by sha-256 \(fp.prefix(23))..., which no peer is pinned to"
        case .wrongSender: "the certificate carried does not match the sender's fingerprint"
        case .notForUs(let p): "from \(p) but addressed to another device"
        case .badSignature(let p): "signature does not verify with \(p)'s pinned certificate (forged or altered)"
        case .stale(let p, let skew): "from \(p) with a timestamp \(skew) ms off (replayed, or a clock is wrong)"
        case .replayed(let p): "from \(p): nonce seen before (replayed)"
        case .replayCacheFull(let p): "from \(p): too many messages in the replay window"
        }
    }
}

/// Lower-case hex.
public func hex(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out = [UInt8](); out.reserveCapacity(bytes.count * 2)
    for b in bytes { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
    return String(decoding: out, as: UTF8.self)
}

/// Hex (either case) to bytes; nil for anything else.
public func unhex(_ s: String) -> [UInt8]? {
    let u = Array(s.utf8)
    guard u.count % 2 == 0, u.count <= 512 else { return nil }
    func v(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: c - 0x30
        case 0x61...0x66: c - 0x61 + 10
        case 0x41...0x46: c - 0x41 + 10
        default: nil
        }
    }
    var out = [UInt8](); out.reserveCapacity(u.count / 2)
    var i = 0
    while i < u.count {
        guard let hi = v(u[i]), let lo = v(u[i + 1]) else { return nil }
        out.append(hi << 4 | lo)
        i += 2
    }
    return out
}

func isToken(_ s: String, max: Int) -> Bool {
    let u = s.utf8
    guard !u.isEmpty, u.count <= max else { return false }
    return u.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5a) || ($0 >= 0x61 && $0 <= 0x7a) || $0 == 0x2d }
}
