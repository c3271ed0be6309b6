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
/// Extensions use the one-byte (0xBEDE) or two-byte (0x100X) form of RFC 8285.
public struct RTPPacket: Equatable, Sendable {
    public var marker: Bool
    public var payloadType: UInt8
    public var sequenceNumber: UInt16
    public var timestamp: UInt32
    public var ssrc: UInt32
    public var csrcs: [UInt32]
    public var extensions: [RTPHeaderExtension]
    public var payload: ArraySlice<UInt8>

    public init(marker: Bool = false, payloadType: UInt8, sequenceNumber: UInt16, timestamp: UInt32,
                ssrc: UInt32, csrcs: [UInt32] = [], extensions: [RTPHeaderExtension] = [],
                payload: ArraySlice<UInt8>) {
        self.marker = marker
        self.payloadType = payloadType
        self.sequenceNumber = sequenceNumber
        self.timestamp = timestamp
        self.ssrc = ssrc
        self.csrcs = csrcs
        self.extensions = extensions
        self.payload = payload
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
        csrcs = (0..<cc).map { bytes.readU32(at: 12 + 4 * $0) }
        offset += 4 * cc
        extensions = []
        if hasExtension {
            guard bytes.count >= offset + 4 else { throw RTPParseError("RTP extension header truncated at \(bytes.count) bytes") }
            let profile = bytes.readU16(at: offset)
            let length = Int(bytes.readU16(at: offset + 2)) * 4
            let start = offset + 4
            guard bytes.count >= start + length else { throw RTPParseError("RTP extension of \(length) bytes overruns packet of \(bytes.count)") }
            if profile == 0xBEDE {
                var i = start
                while i < start + length {
                    let b = bytes[i]
                    if b == 0 { i += 1; continue }  // padding
                    let id = b >> 4
                    if id == 15 { break }
                    let len = Int(b & 0x0F) + 1
                    guard i + 1 + len <= start + length else { throw RTPParseError("RTP one-byte extension id \(id) overruns its block") }
                    extensions.append(RTPHeaderExtension(id: id, data: Array(bytes[i + 1..<i + 1 + len])))
                    i += 1 + len
                }
            } else if profile & 0xFFF0 == 0x1000 {
                var i = start
                while i + 1 < start + length {
                    let id = bytes[i]
                    if id == 0 { i += 1; continue }
                    let len = Int(bytes[i + 1])
                    guard i + 2 + len <= start + length else { throw RTPParseError("RTP two-byte extension id \(id) overruns its block") }
                    extensions.append(RTPHeaderExtension(id: id, data: Array(bytes[i + 2..<i + 2 + len])))
                    i += 2 + len
                }
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

    /// The extension with `id`, if present.
    public func `extension`(_ id: UInt8) -> [UInt8]? {
        extensions.first { $0.id == id }?.data
    }

    /// Appends the serialized packet to `buffer` (reused by the sender to avoid allocation).
    public func serialize(into buffer: inout [UInt8]) {
        let hasExt = !extensions.isEmpty
        buffer.append(0x80 | (hasExt ? 0x10 : 0) | UInt8(csrcs.count & 0x0F))
        buffer.append((marker ? 0x80 : 0) | (payloadType & 0x7F))
        buffer.appendU16(sequenceNumber)
        buffer.appendU32(timestamp)
        buffer.appendU32(ssrc)
        for c in csrcs { buffer.appendU32(c) }
        if hasExt {
            let twoByte = extensions.contains { $0.id > 14 || $0.data.count > 16 || $0.data.isEmpty }
            let lengthAt = buffer.count + 2
            buffer.appendU16(twoByte ? 0x1000 : 0xBEDE)
            buffer.appendU16(0)
            let start = buffer.count
            for e in extensions {
                if twoByte {
                    buffer.append(e.id); buffer.append(UInt8(e.data.count))
                } else {
                    buffer.append(e.id << 4 | UInt8(e.data.count - 1))
                }
                buffer.append(contentsOf: e.data)
            }
            while (buffer.count - start) % 4 != 0 { buffer.append(0) }
            buffer.writeU16(UInt16((buffer.count - start) / 4), at: lengthAt)
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
    public static func decode(_ data: [UInt8]) -> UInt64? {
        guard data.count >= 8 else { return nil }
        var r = ByteReader(data)
        return r.u64()
    }
}

/// Well-known header extension URIs this stack negotiates.
public enum RTPExtensionURI {
    public static let mid = "urn:ietf:params:rtp-hdrext:sdes:mid"
    public static let absCaptureTime = AbsCaptureTime.uri
}
