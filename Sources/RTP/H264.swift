import NetworkCore

/// H.264 NAL unit types used by the packetizer (ITU-T H.264 Table 7-1, RFC 6184 §5.2).
public enum H264NALType {
    public static let slice: UInt8 = 1
    public static let idr: UInt8 = 5
    public static let sei: UInt8 = 6
    public static let sps: UInt8 = 7
    public static let pps: UInt8 = 8
    public static let aud: UInt8 = 9
    public static let stapA: UInt8 = 24
    public static let fuA: UInt8 = 28
}

/// Annex B byte-stream helpers.
public enum AnnexB {
    /// The NAL units of an Annex B access unit, in order, found one at a time without
    /// allocating (the packetizer runs once per frame on the send path).
    public struct NALUnits: IteratorProtocol {
        private let data: [UInt8]
        /// Where the scan for the next start code resumes, and the payload start of the NAL
        /// unit found last (nil before the first start code, or at the end).
        private var scan = 0
        private var pending: Int?

        public init(_ data: [UInt8]) {
            self.data = data
            pending = nextStart().map { $0.payload }
        }

        /// The next start code at or after `scan`: where it begins and where its NAL unit does.
        private mutating func nextStart() -> (code: Int, payload: Int)? {
            let n = data.count
            var i = scan
            while i + 2 < n {
                if data[i] == 0 && data[i + 1] == 0 {
                    if data[i + 2] == 1 { scan = i + 3; return (i, i + 3) }
                    if data[i + 2] == 0 && i + 3 < n && data[i + 3] == 1 { scan = i + 4; return (i, i + 4) }
                }
                i += 1
            }
            scan = n
            return nil
        }

        /// The next non-empty NAL unit's range.
        public mutating func next() -> Range<Int>? {
            while let begin = pending {
                let following = nextStart()
                pending = following?.payload
                let end = following?.code ?? data.count
                if end > begin { return begin..<end }
            }
            return nil
        }
    }

    /// Splits an Annex B access unit at its start codes; returns the NAL units' ranges.
    public static func nalUnitRanges(_ data: [UInt8]) -> [Range<Int>] {
        var ranges: [Range<Int>] = []
        var units = NALUnits(data)
        while let r = units.next() { ranges.append(r) }
        return ranges
    }

    public static let startCode: [UInt8] = [0, 0, 0, 1]
}

/// Splits H.264 access units into RTP payloads, packetization-mode 1 (RFC 6184 §5.6–5.8):
/// small NAL units are aggregated into STAP-A, large ones fragmented into FU-A, the rest
/// go as single NAL unit packets. `maxPayloadSize` keeps packets under the path MTU.
///
/// One packetizer per stream: it keeps one payload-sized buffer, so that a frame is cut
/// into packets without a heap allocation once the first frame has sized it.
public struct H264Packetizer: Sendable {
    public var maxPayloadSize: Int
    private var buffer: [UInt8] = []

    public init(maxPayloadSize: Int = 1200) { self.maxPayloadSize = maxPayloadSize }

    /// Calls `emit(payload, isLastOfFrame)` once per RTP payload, in order. Access unit
    /// delimiters are left out. The payload slice is valid only during the call.
    public mutating func packetize(accessUnit data: [UInt8], emit: (ArraySlice<UInt8>, Bool) -> Void) {
        if buffer.capacity < maxPayloadSize { buffer.reserveCapacity(maxPayloadSize) }
        var stap = buffer
        buffer = []  // `stap` is the only reference while the frame is cut: appends stay in place
        defer { stap.removeAll(keepingCapacity: true); buffer = stap }
        stap.removeAll(keepingCapacity: true)
        var stapCount = 0
        var stapNRI: UInt8 = 0
        func flushStap(last: Bool) {
            guard stapCount > 0 else { return }
            if stapCount == 1 {
                // One NAL alone: send it as a single NAL unit packet instead.
                emit(stap[3...], last)
            } else {
                stap[0] = stapNRI | H264NALType.stapA
                emit(stap[...], last)
            }
            stap.removeAll(keepingCapacity: true)
            stapCount = 0
            stapNRI = 0
        }
        func addToStap(_ r: Range<Int>) {
            if stapCount == 0 { stap.append(0) }
            stap.appendU16(UInt16(r.count))
            stap.append(contentsOf: data[r])
            stapNRI = max(stapNRI, data[r.lowerBound] & 0x60)
            stapCount += 1
        }
        var units = NALUnitsSkippingAUD(data)
        var next = units.next()
        while let r = next {
            next = units.next()
            let isLast = next == nil
            if stapCount > 0 {
                if stap.count + 2 + r.count <= maxPayloadSize {
                    addToStap(r)
                    if isLast { flushStap(last: true) }
                    continue
                }
                flushStap(last: false)
            }
            if !isLast && r.count + 3 <= maxPayloadSize {
                addToStap(r)  // may aggregate with the next NAL unit (SPS+PPS+small slices)
            } else if r.count <= maxPayloadSize {
                emit(data[r], isLast)
            } else {
                fragment(data, r, isLastNAL: isLast, into: &stap, emit: emit)
            }
        }
        flushStap(last: true)
    }

    /// The access unit's NAL units without its delimiters (AUD), which RTP does not carry.
    private struct NALUnitsSkippingAUD {
        var units: AnnexB.NALUnits
        let data: [UInt8]
        init(_ data: [UInt8]) { self.data = data; units = AnnexB.NALUnits(data) }
        mutating func next() -> Range<Int>? {
            while let r = units.next() {
                if data[r.lowerBound] & 0x1F != H264NALType.aud { return r }
            }
            return nil
        }
    }

    private func fragment(_ data: [UInt8], _ r: Range<Int>, isLastNAL: Bool, into buf: inout [UInt8],
                          emit: (ArraySlice<UInt8>, Bool) -> Void) {
        let header = data[r.lowerBound]
        let indicator = (header & 0xE0) | H264NALType.fuA
        let type = header & 0x1F
        var offset = r.lowerBound + 1
        let chunk = maxPayloadSize - 2
        // Even out fragment sizes so the last one is not a runt.
        let total = r.upperBound - offset
        let count = (total + chunk - 1) / chunk
        let per = (total + count - 1) / count
        var first = true
        while offset < r.upperBound {
            let end = min(offset + per, r.upperBound)
            let last = end == r.upperBound
            buf.removeAll(keepingCapacity: true)
            buf.append(indicator)
            buf.append((first ? 0x80 : 0) | (last ? 0x40 : 0) | type)
            buf.append(contentsOf: data[offset..<end])
            emit(buf[...], last && isLastNAL)
            first = false
            offset = end
        }
        buf.removeAll(keepingCapacity: true)
    }
}

/// Facts about one RTP payload of H.264, read without copying.
public enum H264Payload {
    /// True when the payload begins a NAL unit that starts a keyframe: an SPS, or the first
    /// slice of an IDR picture. A later slice of a multi-slice IDR is no start: a frame
    /// assembled from it would lack the slices before it.
    public static func startsKeyframe(_ p: ArraySlice<UInt8>) -> Bool {
        guard let first = p.first else { return false }
        let type = first & 0x1F
        switch type {
        case H264NALType.sps: return true
        case H264NALType.idr: return firstSlice(p, at: p.startIndex + 1)
        case H264NALType.stapA:
            let i = p.startIndex + 3
            guard i < p.endIndex else { return false }
            let t = p[i] & 0x1F
            return t == H264NALType.sps || (t == H264NALType.idr && firstSlice(p, at: i + 1))
        case H264NALType.fuA:
            guard p.count >= 2 else { return false }
            let fu = p[p.startIndex + 1]
            return fu & 0x80 != 0 && fu & 0x1F == H264NALType.idr && firstSlice(p, at: p.startIndex + 2)
        default: return false
        }
    }

    /// Whether the slice header at `i` has first_mb_in_slice = 0: its ue(v) code is the
    /// single bit 1 (H.264 §7.3.3, §9.1).
    private static func firstSlice(_ p: ArraySlice<UInt8>, at i: Int) -> Bool {
        i < p.endIndex && p[i] & 0x80 != 0
    }

    /// True when the payload contains an IDR slice (any part).
    public static func containsIDR(_ p: ArraySlice<UInt8>) -> Bool {
        guard let first = p.first else { return false }
        switch first & 0x1F {
        case H264NALType.idr: return true
        case H264NALType.fuA: return p.count >= 2 && p[p.startIndex + 1] & 0x1F == H264NALType.idr
        case H264NALType.stapA:
            var i = p.startIndex + 1
            while i + 2 < p.endIndex {
                let len = Int(p[i]) << 8 | Int(p[i + 1])
                if p[i + 2] & 0x1F == H264NALType.idr { return true }
                i += 2 + len
            }
            return false
        default: return false
        }
    }

    /// Appends the payload's NAL units to `out` in Annex B form. Returns false when the
    /// payload is malformed. `fuOpen` tracks an FU-A in progress across packets.
    public static func depacketize(_ p: ArraySlice<UInt8>, into out: inout [UInt8], fuOpen: inout Bool) -> Bool {
        guard let first = p.first else { return false }
        let type = first & 0x1F
        switch type {
        case 1...23:
            out.append(contentsOf: AnnexB.startCode)
            out.append(contentsOf: p)
            return true
        case H264NALType.stapA:
            // A STAP-A without a single aggregation unit carries nothing: malformed, or the
            // frame it completes would be empty.
            guard p.count > 1 else { return false }
            var i = p.startIndex + 1
            while i < p.endIndex {
                guard i + 2 <= p.endIndex else { return false }
                let len = Int(p[i]) << 8 | Int(p[i + 1])
                guard len > 0, i + 2 + len <= p.endIndex else { return false }
                out.append(contentsOf: AnnexB.startCode)
                out.append(contentsOf: p[(i + 2)..<(i + 2 + len)])
                i += 2 + len
            }
            return true
        case H264NALType.fuA:
            guard p.count >= 2 else { return false }
            let fu = p[p.startIndex + 1]
            let start = fu & 0x80 != 0, end = fu & 0x40 != 0
            if start {
                out.append(contentsOf: AnnexB.startCode)
                out.append((first & 0xE0) | (fu & 0x1F))
                fuOpen = true
            } else if !fuOpen {
                return false
            }
            out.append(contentsOf: p.dropFirst(2))
            if end { fuOpen = false }
            return true
        default:
            return false
        }
    }
}
