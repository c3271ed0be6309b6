import NetworkCore

/// Why an RTP or RTCP packet could not be parsed; names the packet kind and sizes.
public struct RTPParseError: Error, Equatable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// One RTP header extension element (RFC 8285): a local ID and its bytes.
public struct RTPHeaderExtension: Equatable, Sendable {
    public var id: UInt8
    public var data: [UInt8]
    public init(id: UInt8, data: [UInt8]) { self.id = id; self.data = data }
}

/// An RTP packet (RFC 3550 §5.1).
///
/// ```
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |V=2|P|X|  CC   |M|     PT      |       sequence number         |
/// |                           timestamp                           |
/// |           synchronization source (SSRC) identifier            |
/// |            contributing source (CSRC) identifiers             |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
/// Extensions use the one-byte (0xBEDE) or two-byte (0x100X) form of RFC 8285. A parsed
/// packet keeps its extension block as a slice of the received bytes and reads elements
/// from it on demand: parsing allocates nothing (the receive path parses every packet).
public struct RTPPacket: Equatable, Sendable {
    public var marker: Bool
    public var payloadType: UInt8
    public var sequenceNumber: UInt16
    public var timestamp: UInt32
    public var ssrc: UInt32
    public var csrcs: [UInt32]
    public var payload: ArraySlice<UInt8>
    /// 0xBEDE (one-byte form) or 0x100X (two-byte form); 0 when there is no extension.
    private var extensionProfile: UInt16
    /// The extension elements, padding included (a multiple of 4 bytes).
    private var extensionBlock: ArraySlice<UInt8>

    public init(marker: Bool = false, payloadType: UInt8, sequenceNumber: UInt16, timestamp: UInt32,
                ssrc: UInt32, csrcs: [UInt32] = [], extensions: [RTPHeaderExtension] = [],
                payload: ArraySlice<UInt8>) {
        self.marker = marker
        self.payloadType = payloadType
        self.sequenceNumber = sequenceNumber
        self.timestamp = timestamp
        self.ssrc = ssrc
        self.csrcs = csrcs
        self.payload = payload
        (extensionProfile, extensionBlock) = RTPPacket.encode(extensions)
    }

    /// Parses a plain (already decrypted) RTP packet.
    public init(parsing bytes: [UInt8]) throws(RTPParseError) {
        guard bytes.count >= 12 else { throw RTPParseError("RTP packet too short: \(bytes.count) < 12 bytes") }
        guard bytes[0] >> 6 == 2 else { throw RTPParseError("RTP version \(bytes[0] >> 6), expected 2") }
        let padding = bytes[0] & 0x20 != 0
        let hasExtension = bytes[0] & 0x10 != 0
        let cc = Int(bytes[0] & 0x0F)
        marker = bytes[1] & 0x80 != 0
        payloadType = bytes[1] & 0x7F
        sequenceNumber = bytes.readU16(at: 2)
        timestamp = bytes.readU32(at: 4)
        ssrc = bytes.readU32(at: 8)
        var offset = 12
        guard bytes.count >= offset + 4 * cc else { throw RTPParseError("RTP packet too short for \(cc) CSRCs: \(bytes.count) bytes") }
        csrcs = cc == 0 ? [] : (0..<cc).map { bytes.readU32(at: 12 + 4 * $0) }
        offset += 4 * cc
        extensionProfile = 0
        extensionBlock = []
        if hasExtension {
            guard bytes.count >= offset + 4 else { throw RTPParseError("RTP extension header truncated at \(bytes.count) bytes") }
            let profile = bytes.readU16(at: offset)
            let length = Int(bytes.readU16(at: offset + 2)) * 4
            let start = offset + 4
            guard bytes.count >= start + length else { throw RTPParseError("RTP extension of \(length) bytes overruns packet of \(bytes.count)") }
            // Other profiles (not RFC 8285) are skipped, as before: no element is read from them.
            if length > 0 && (profile == 0xBEDE || profile & 0xFFF0 == 0x1000) {
                let block = bytes[start..<start + length]
                try RTPPacket.validate(profile, block)
                extensionProfile = profile
                extensionBlock = block
            }
            offset = start + length
        }
        var end = bytes.count
        if padding {
            let pad = Int(bytes[bytes.count - 1])
            guard pad >= 1, end - pad >= offset else { throw RTPParseError("RTP padding of \(pad) bytes exceeds payload") }
            end -= pad
        }
        payload = bytes[offset..<end]
    }

    /// The header extensions, decoded (allocates: for building and tests, not per packet).
    public var extensions: [RTPHeaderExtension] {
        get {
            var out: [RTPHeaderExtension] = []
            RTPPacket.forEachElement(extensionProfile, extensionBlock) { id, r in
                out.append(RTPHeaderExtension(id: id, data: Array(extensionBlock[r]))); return true
            }
            return out
        }
        set { (extensionProfile, extensionBlock) = RTPPacket.encode(newValue) }
    }

    /// The bytes of the extension with `id`, if present; a slice of the packet, no copy.
    public func `extension`(_ id: UInt8) -> ArraySlice<UInt8>? {
        var found: Range<Int>?
        RTPPacket.forEachElement(extensionProfile, extensionBlock) { element, r in
            if element == id { found = r; return false }
            return true
        }
        return found.map { extensionBlock[$0] }
    }

    public static func == (a: RTPPacket, b: RTPPacket) -> Bool {
        a.marker == b.marker && a.payloadType == b.payloadType && a.sequenceNumber == b.sequenceNumber
            && a.timestamp == b.timestamp && a.ssrc == b.ssrc && a.csrcs == b.csrcs && a.payload == b.payload
            && a.extensions == b.extensions
    }

    /// Calls `body(id, range)` for each element of an extension block, in order, until it
    /// returns false. The block must have passed ``validate(_:_:)``.
    private static func forEachElement(_ profile: UInt16, _ block: ArraySlice<UInt8>, _ body: (UInt8, Range<Int>) -> Bool) {
        var i = block.startIndex
        let end = block.endIndex
        if profile == 0xBEDE {
            while i < end {
                let b = block[i]
                if b == 0 { i += 1; continue }  // padding
                let id = b >> 4
                if id == 15 { return }
                let len = Int(b & 0x0F) + 1
                guard i + 1 + len <= end, body(id, i + 1..<i + 1 + len) else { return }
                i += 1 + len
            }
        } else if profile & 0xFFF0 == 0x1000 {
            while i + 1 < end {
                let id = block[i]
                if id == 0 { i += 1; continue }
                let len = Int(block[i + 1])
                guard i + 2 + len <= end, body(id, i + 2..<i + 2 + len) else { return }
                i += 2 + len
            }
        }
    }

    /// Throws when an element overruns its block (the same checks ``forEachElement`` relies on).
    private static func validate(_ profile: UInt16, _ block: ArraySlice<UInt8>) throws(RTPParseError) {
        var i = block.startIndex
        let end = block.endIndex
        if profile == 0xBEDE {
            while i < end {
                let b = block[i]
                if b == 0 { i += 1; continue }
                let id = b >> 4
                if id == 15 { return }
                let len = Int(b & 0x0F) + 1
                guard i + 1 + len <= end else { throw RTPParseError("RTP one-byte extension id \(id) overruns its block") }
                i += 1 + len
            }
        } else {
            while i + 1 < end {
                let id = block[i]
                if id == 0 { i += 1; continue }
                let len = Int(block[i + 1])
                guard i + 2 + len <= end else { throw RTPParseError("RTP two-byte extension id \(id) overruns its block") }
                i += 2 + len
            }
        }
    }

    /// The block for `extensions`: the one-byte form when every element fits it.
    private static func encode(_ extensions: [RTPHeaderExtension]) -> (UInt16, ArraySlice<UInt8>) {
        guard !extensions.isEmpty else { return (0, []) }
        let twoByte = extensions.contains { $0.id > 14 || $0.data.count > 16 || $0.data.isEmpty }
        var block: [UInt8] = []
        for e in extensions {
            if twoByte {
                block.append(e.id); block.append(UInt8(e.data.count))
            } else {
                block.append(e.id << 4 | UInt8(e.data.count - 1))
            }
            block.append(contentsOf: e.data)
        }
        while block.count % 4 != 0 { block.append(0) }
        return (twoByte ? 0x1000 : 0xBEDE, block[...])
    }

    /// Appends the serialized packet to `buffer` (reused by the sender to avoid allocation).
    public func serialize(into buffer: inout [UInt8]) {
        let hasExt = extensionProfile != 0
        buffer.append(0x80 | (hasExt ? 0x10 : 0) | UInt8(csrcs.count & 0x0F))
        buffer.append((marker ? 0x80 : 0) | (payloadType & 0x7F))
        buffer.appendU16(sequenceNumber)
        buffer.appendU32(timestamp)
        buffer.appendU32(ssrc)
        for c in csrcs { buffer.appendU32(c) }
        if hasExt {
            buffer.appendU16(extensionProfile)
            buffer.appendU16(UInt16(extensionBlock.count / 4))
            buffer.append(contentsOf: extensionBlock)
        }
        buffer.append(contentsOf: payload)
    }

    public func serialized() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(12 + payload.count + 32)
        serialize(into: &out)
        return out
    }
}

/// Sequence-number arithmetic modulo 2^16 (RFC 3550 §A.1).
public enum SequenceNumber {
    /// Signed distance from `a` to `b`, in [-32768, 32767].
    @inlinable public static func distance(from a: UInt16, to b: UInt16) -> Int {
        Int(Int16(bitPattern: b &- a))
    }
    @inlinable public static func isNewer(_ a: UInt16, than b: UInt16) -> Bool { distance(from: b, to: a) > 0 }
}

/// The abs-capture-time header extension
/// (`http://www.webrtc.org/experiments/rtp-hdrext/abs-capture-time`): the NTP time at
/// which the frame was captured, so a receiver can measure capture-to-render latency.
public enum AbsCaptureTime {
    public static let uri = "http://www.webrtc.org/experiments/rtp-hdrext/abs-capture-time"
    public static func encode(ntp: UInt64) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(8)
        out.appendU64(ntp)
        return out
    }
    public static func decode(_ data: ArraySlice<UInt8>) -> UInt64? {
        guard data.count >= 8 else { return nil }
        return data.prefix(8).reduce(0) { $0 << 8 | UInt64($1) }
    }
    public static func decode(_ data: [UInt8]) -> UInt64? { decode(data[...]) }
}

/// Well-known header extension URIs this stack negotiates.
public enum RTPExtensionURI {
    public static let mid = "urn:ietf:params:rtp-hdrext:sdes:mid"
    public static let absCaptureTime = AbsCaptureTime.uri
}
