/// Why an SDP was refused: the line and what was wrong with it.
public struct SDPError: Error, Equatable, CustomStringConvertible {
    public let line: Int?
    public let reason: String
    public init(line: Int? = nil, _ reason: String) { self.line = line; self.reason = reason }
    public var description: String { line.map { "SDP line \($0): \(reason)" } ?? "SDP: \(reason)" }
}

/// One `a=` attribute: `a=name` or `a=name:value`.
public struct SDPAttribute: Equatable, Sendable {
    public var name: String
    public var value: String?
    public init(_ name: String, _ value: String? = nil) { self.name = name; self.value = value }
    var line: String { value.map { "a=\(name):\($0)" } ?? "a=\(name)" }
}

/// An `m=` section and the lines under it (RFC 8866 §5.14).
public struct MediaDescription: Equatable, Sendable {
    public var kind: String
    public var port: Int
    public var proto: String
    public var formats: [String]
    public var connection: String?
    public var bandwidth: [String] = []
    public var attributes: [SDPAttribute] = []

    public init(kind: String, port: Int = 9, proto: String = "UDP/TLS/RTP/SAVPF", formats: [String],
                connection: String? = "IN IP4 0.0.0.0", attributes: [SDPAttribute] = []) {
        self.kind = kind; self.port = port; self.proto = proto; self.formats = formats
        self.connection = connection; self.attributes = attributes
    }

    /// The first value of `a=name`.
    public func value(_ name: String) -> String? { attributes.first { $0.name == name }?.value }
    /// Every value of `a=name`.
    public func values(_ name: String) -> [String] { attributes.filter { $0.name == name }.compactMap(\.value) }
    public func has(_ name: String) -> Bool { attributes.contains { $0.name == name } }

    public var mid: String? { value("mid") }
    /// `sendrecv`, `sendonly`, `recvonly` or `inactive` (default `sendrecv`).
    public var direction: String {
        for d in ["sendrecv", "sendonly", "recvonly", "inactive"] where has(d) { return d }
        return "sendrecv"
    }

    /// Codecs from `a=rtpmap`, `a=fmtp` and `a=rtcp-fb`, in `m=` line order.
    public var codecs: [Codec] {
        formats.compactMap { fmt -> Codec? in
            guard let pt = UInt8(fmt) else { return nil }
            guard let map = values("rtpmap").first(where: { $0.hasPrefix("\(fmt) ") }) else {
                // Static payload types need no rtpmap (RFC 3551); none of them matter here.
                return nil
            }
            let parts = map.dropFirst(fmt.count + 1).split(separator: "/")
            guard parts.count >= 2, let rate = UInt32(parts[1]) else { return nil }
            let channels = parts.count > 2 ? Int(parts[2]) ?? 1 : 1
            let fmtp = values("fmtp").first { $0.hasPrefix("\(fmt) ") }.map { String($0.dropFirst(fmt.count + 1)) } ?? ""
            // "nack", "NACK ", "nack  pli": one meaning, whatever the spacing and case
            // (a popular Go stack writes a trailing space).
            let fb = values("rtcp-fb").compactMap { v -> String? in
                // Already in canonical form (what browsers write): one slice, no splitting.
                if v.hasPrefix(fmt + " ") || v.hasPrefix("* "), Codec.isCanonicalFeedback(v.utf8) {
                    return String(v.utf8.drop(while: { $0 != 0x20 }).dropFirst())
                }
                let tokens = v.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
                guard let pt = tokens.first, pt == fmt || pt == "*", tokens.count > 1 else { return nil }
                return tokens.dropFirst().map { $0.lowercased() }.joined(separator: " ")
            }
            return Codec(payloadType: pt, name: String(parts[0]), clockRate: rate, channels: channels,
                         parameters: Codec.parseParameters(fmtp), feedback: fb)
        }
    }

    /// `a=extmap` entries as URI → ID.
    public var headerExtensions: [String: UInt8] {
        var out: [String: UInt8] = [:]
        for v in values("extmap") {
            let parts = v.split(separator: " ")
            guard parts.count >= 2 else { continue }
            // "a=extmap:/ uri" splits into nothing: no ID, not a trap.
            if let idPart = parts[0].split(separator: "/").first, let id = UInt8(idPart) { out[String(parts[1])] = id }
        }
        return out
    }

    /// SSRCs from `a=ssrc` lines, first first.
    public var ssrcs: [UInt32] {
        var out: [UInt32] = []
        for v in values("ssrc") {
            if let s = UInt32(v.prefix { $0 != " " }), !out.contains(s) { out.append(s) }
        }
        return out
    }
}

/// A codec from an `m=` section.
public struct Codec: Equatable, Sendable {
    public var payloadType: UInt8
    public var name: String
    public var clockRate: UInt32
    public var channels: Int
    /// `a=fmtp` parameters, keys in lower case, in order.
    public var parameters: [(key: String, value: String)]
    public var feedback: [String]

    public init(payloadType: UInt8, name: String, clockRate: UInt32, channels: Int = 1,
                parameters: [(key: String, value: String)] = [], feedback: [String] = []) {
        self.payloadType = payloadType; self.name = name; self.clockRate = clockRate
        self.channels = channels; self.parameters = parameters; self.feedback = feedback
    }

    public static func == (a: Codec, b: Codec) -> Bool {
        a.payloadType == b.payloadType && a.name == b.name && a.clockRate == b.clockRate && a.channels == b.channels
            && a.parameters.map(\.key) == b.parameters.map(\.key) && a.parameters.map(\.value) == b.parameters.map(\.value)
            && a.feedback == b.feedback
    }

    /// Lower case, single spaces, no space at either end: nothing to normalise.
    static func isCanonicalFeedback(_ v: String.UTF8View) -> Bool {
        var previousSpace = true
        for b in v {
            if b == 0x20 { if previousSpace { return false }; previousSpace = true; continue }
            if b == 0x09 || b == 0x0D || (b >= 0x41 && b <= 0x5A) { return false }
            previousSpace = false
        }
        return !previousSpace
    }

    public func parameter(_ key: String) -> String? {
        parameters.first { $0.key == key.lowercased() }?.value
    }

    public var fmtpLine: String { parameters.map { "\($0.key)=\($0.value)" }.joined(separator: ";") }

    static func parseParameters(_ s: String) -> [(key: String, value: String)] {
        s.split(separator: ";").compactMap { item in
            let kv = item.trimmingSpaces.split(separator: "=", maxSplits: 1)
            guard let k = kv.first else { return nil }
            return (k.lowercased(), kv.count > 1 ? String(kv[1]) : "")
        }
    }
}

extension Substring {
    var trimmingSpaces: Substring {
        var s = self
        while s.first == " " || s.first == "\t" { s = s.dropFirst() }
        while s.last == " " || s.last == "\t" || s.last == "\r" { s = s.dropLast() }
        return s
    }
}

/// A session description (RFC 8866), parsed liberally as INTEROP.md asks: unknown lines
/// and attributes are kept, codec names compared in any case, `\n` or `\r\n` line ends.
public struct SessionDescription: Equatable, Sendable {
    public var origin: String
    public var sessionName: String
    public var attributes: [SDPAttribute]
    public var media: [MediaDescription]

    public init(origin: String, sessionName: String = "-", attributes: [SDPAttribute] = [], media: [MediaDescription] = []) {
        self.origin = origin; self.sessionName = sessionName; self.attributes = attributes; self.media = media
    }

    public func value(_ name: String) -> String? { attributes.first { $0.name == name }?.value }
    public func values(_ name: String) -> [String] { attributes.filter { $0.name == name }.compactMap(\.value) }

    /// Parses SDP text; errors name the line.
    public init(parsing text: String) throws(SDPError) {
        var origin: String? = nil
        var name = "-"
        var attributes: [SDPAttribute] = []
        var media: [MediaDescription] = []
        var sawVersion = false
        var lineNumber = 0
        for raw in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            lineNumber += 1
            // Every trailing CR goes ("a=x\r\r\n"): values never end in one, so the text
            // this description serializes to parses back to it.
            var line = raw
            while line.hasSuffix("\r") { line = line.dropLast() }
            if line.isEmpty { continue }
            guard line.count >= 2, line.dropFirst().first == "=", let type = line.first else {
                throw SDPError(line: lineNumber, "expected 'x=value', got '\(line.prefix(40))'")
            }
            let value = String(line.dropFirst(2))
            switch type {
            case "v":
                guard value == "0" else { throw SDPError(line: lineNumber, "unsupported version v=\(value)") }
                sawVersion = true
            case "o": origin = value
            case "s": name = value
            case "m":
                // A stray CR ends a field too: "96 97\r " would otherwise keep it in a format.
                let parts = value.split { $0 == " " || $0 == "\r" }
                guard parts.count >= 3, let port = parts[1].split(separator: "/").first.flatMap({ Int($0) }), port >= 0, port <= 65535 else {
                    throw SDPError(line: lineNumber, "malformed m= line '\(value)'")
                }
                media.append(MediaDescription(kind: String(parts[0]), port: port, proto: String(parts[2]),
                                              formats: parts.dropFirst(3).map(String.init), connection: nil))
            case "c":
                if media.isEmpty { continue }
                media[media.count - 1].connection = value
            case "b":
                if !media.isEmpty { media[media.count - 1].bandwidth.append(value) }
            case "a":
                let attr: SDPAttribute
                if let colon = value.firstIndex(of: ":") {
                    attr = SDPAttribute(String(value[..<colon]), String(value[value.index(after: colon)...]))
                } else {
                    attr = SDPAttribute(value)
                }
                if media.isEmpty { attributes.append(attr) } else { media[media.count - 1].attributes.append(attr) }
            default:
                continue  // t=, i=, u=, e=, p=, z=, k=, r=: not needed
            }
        }
        guard sawVersion else { throw SDPError(line: 1, "missing v=0") }
        guard let o = origin else { throw SDPError("missing o= line") }
        self.origin = o
        self.sessionName = name
        self.attributes = attributes
        self.media = media
    }

    /// The SDP text, CRLF line ends.
    public var text: String {
        var lines = ["v=0", "o=\(origin)", "s=\(sessionName)", "t=0 0"]
        lines += attributes.map(\.line)
        for m in media {
            lines.append("m=\(m.kind) \(m.port) \(m.proto) \(m.formats.joined(separator: " "))")
            if let c = m.connection { lines.append("c=\(c)") }
            lines += m.bandwidth.map { "b=\($0)" }
            lines += m.attributes.map(\.line)
        }
        return lines.joined(separator: "\r\n") + "\r\n"
    }

    /// A session- or media-level attribute, media level first (as JSEP resolves BUNDLE).
    public func attribute(_ name: String, media index: Int) -> String? {
        if index < media.count, let v = media[index].value(name) { return v }
        return value(name)
    }
}
