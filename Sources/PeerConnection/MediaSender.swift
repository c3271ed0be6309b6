import NetworkCore
import RTP
import SDP
import SRTP

/// The send side: RTP packetization, SRTP protection, the retransmission ring, sender
/// reports. Media threads call in directly; one lock covers everything here because
/// libsrtp's outbound context is not thread-safe. The hot path reuses its buffers.
final class MediaSender: @unchecked Sendable {
    struct Stream {
        var ssrc: UInt32
        var payloadType: UInt8 = 0
        var sequence = UInt16.random(in: 0...UInt16.max)
        var timestampOffset = UInt32.random(in: 0...UInt32.max)
        var clockRate: UInt32
        var active = false
        var packets: UInt64 = 0
        var octets: UInt64 = 0
        var lastRTPTimestamp: UInt32 = 0
        var lastNTP: UInt64 = 0
        var frames: UInt64 = 0
        var keyframes: UInt64 = 0
        var retransmitted: UInt64 = 0
        var retransmissionsRefused: UInt64 = 0
        var nacks: UInt64 = 0
        var plis: UInt64 = 0
        var firs: UInt64 = 0
        var width = 0
        var height = 0
        var fps = RateMeter()
        var bitrate = RateMeter()
    }

    let lock = Lock()
    let videoSSRC = UInt32.random(in: 1...UInt32.max)
    let audioSSRC = UInt32.random(in: 1...UInt32.max)
    let cname = randomICEString(16)
    private var video: Stream
    private var audio: Stream
    private var srtp: SRTPSession?
    private var socket: UDPSocket?
    private var remote: TransportAddress?
    /// Set when the selected pair's local candidate is a TURN relay.
    private var relay: RelayAllocation?
    private var midID: UInt8?
    private var absCaptureID: UInt8?
    private var videoMid: [UInt8] = []
    private var audioMid: [UInt8] = []
    private var packetizer = H264Packetizer(maxPayloadSize: 1200 - 12 - 24 - 16)
    private var scratch: [UInt8] = []
    private var audioStart: Instant?
    /// Protected video packets by sequence number, for NACK (RFC 4585).
    private var ring: [(seq: UInt16, valid: Bool, bytes: [UInt8])]
    private let ringMask = 511
    /// NACK answers: no resend of one packet within ~a round trip, and a byte budget.
    private var resendLimiter = RetransmissionLimiter(slots: 512)
    private var stopped = false
    /// Recent capture → wire latencies in ms.
    let captureToWire = Locked<[Double]>([])

    init() {
        video = Stream(ssrc: videoSSRC, clockRate: 90000)
        audio = Stream(ssrc: audioSSRC, clockRate: 48000)
        ring = Array(repeating: (0, false, []), count: 512)
        scratch.reserveCapacity(1500 + SRTPSession.maxTrailer)
    }

    func configure(session: NegotiatedSession) {
        lock.withLock {
            if let v = session.video {
                video.payloadType = v.codec.payloadType
                video.active = v.send
                midID = v.extensions[RTPExtensionURI.mid]
                absCaptureID = v.extensions[RTPExtensionURI.absCaptureTime]
                videoMid = Array(v.mid.utf8)
            }
            if let a = session.audio {
                audio.payloadType = a.codec.payloadType
                audio.active = a.send
                if midID == nil { midID = a.extensions[RTPExtensionURI.mid] }
                audioMid = Array(a.mid.utf8)
            }
        }
    }

    func setKeys(suite: SRTPSuite, keyAndSalt: [UInt8]) throws {
        let s = try SRTPSession(suite: suite, keyAndSalt: keyAndSalt, inbound: false)
        lock.withLock { srtp = s }
    }

    func setDestination(socket: UDPSocket, remote: TransportAddress, relay: RelayAllocation? = nil) {
        lock.withLock { self.socket = socket; self.remote = remote; self.relay = relay }
    }

    /// One datagram out, directly or through the relay. Call with the lock held.
    private func transmit(_ bytes: [UInt8], _ socket: UDPSocket, _ remote: TransportAddress) {
        if let relay { relay.send(bytes, to: remote) } else { socket.send(bytes, to: remote) }
    }

    func stop() { lock.withLock { stopped = true } }

    /// Writes header, extensions and payload into `scratch`, protects and sends it.
    /// Call with the lock held.
    private func emit(_ s: inout Stream, marker: Bool, timestamp: UInt32, payload: ArraySlice<UInt8>, mid: [UInt8], captureNTP: UInt64?) -> Bool {
        guard let srtp, let socket, let remote else { return false }
        scratch.removeAll(keepingCapacity: true)
        var hasExt = false
        var extBytes = 0
        if midID != nil, !mid.isEmpty { hasExt = true; extBytes += 1 + mid.count }
        if absCaptureID != nil && captureNTP != nil { hasExt = true; extBytes += 9 }
        scratch.append(hasExt ? 0x90 : 0x80)
        scratch.append((marker ? 0x80 : 0) | s.payloadType)
        scratch.appendU16(s.sequence)
        scratch.appendU32(timestamp)
        scratch.appendU32(s.ssrc)
        if hasExt {
            let words = (extBytes + 3) / 4
            scratch.appendU16(0xBEDE)
            scratch.appendU16(UInt16(words))
            if let id = midID, !mid.isEmpty {
                scratch.append(id << 4 | UInt8(mid.count - 1))
                scratch.append(contentsOf: mid)
            }
            if let id = absCaptureID, let ntp = captureNTP {
                scratch.append(id << 4 | 7)
                scratch.appendU64(ntp)
            }
            for _ in extBytes..<(words * 4) { scratch.append(0) }
        }
        scratch.append(contentsOf: payload)
        do { try srtp.protectRTP(&scratch) } catch { return false }
        transmit(scratch, socket, remote)
        if s.ssrc == videoSSRC {
            let i = Int(s.sequence) & ringMask
            ring[i].seq = s.sequence
            ring[i].valid = true
            ring[i].bytes.removeAll(keepingCapacity: true)
            ring[i].bytes.append(contentsOf: scratch)
        }
        s.sequence &+= 1
        s.packets += 1
        s.octets += UInt64(payload.count)
        return true
    }

    /// Packetizes and sends one access unit; returns true when anything went out.
    func sendVideo(_ data: [UInt8], isKeyframe: Bool, width: Int, height: Int, captureTime: Instant, captureNTP: UInt64) -> Bool {
        lock.withLock {
            guard !stopped, video.active, srtp != nil, socket != nil else { return false }
            let ts = video.timestampOffset &+ UInt32(truncatingIfNeeded: captureTime.nanoseconds * 9 / 100_000)
            var sent = false
            var firstSentAt: Instant? = nil
            var stream = video
            let mid = videoMid
            packetizer.packetize(accessUnit: data) { payload, last in
                if emit(&stream, marker: last, timestamp: ts, payload: payload, mid: mid, captureNTP: captureNTP) {
                    sent = true
                    if firstSentAt == nil { firstSentAt = Instant.now() }
                }
            }
            video = stream
            guard sent else { return false }
            let now = Instant.now()
            video.frames += 1
            if isKeyframe { video.keyframes += 1 }
            video.width = width
            video.height = height
            video.lastRTPTimestamp = ts
            video.lastNTP = captureNTP
            video.fps.add(1, now: now)
            video.bitrate.add(Double(data.count), now: now)
            if let first = firstSentAt {
                let ms = (first - captureTime).milliseconds
                captureToWire.withLock { s in
                    if s.count >= 4096 { s.removeFirst(1024) }
                    s.append(ms)
                }
            }
            return true
        }
    }

    func sendAudio(_ payload: [UInt8], samples: Int) -> Bool {
        lock.withLock {
            guard !stopped, audio.active, srtp != nil, socket != nil else { return false }
            let now = Instant.now()
            if audioStart == nil { audioStart = now; audio.lastRTPTimestamp = audio.timestampOffset }
            let ts = audio.lastRTPTimestamp
            var stream = audio
            let ok = emit(&stream, marker: stream.packets == 0, timestamp: ts, payload: payload[...], mid: audioMid, captureNTP: nil)
            audio = stream
            audio.lastRTPTimestamp = ts &+ UInt32(samples)
            audio.lastNTP = NTPTime.now()
            audio.bitrate.add(Double(payload.count), now: now)
            return ok
        }
    }

    /// Resends the protected packets for the NACKed sequence numbers we still hold, within
    /// the limiter's rules; returns how many were refused as repeats and over the budget.
    @discardableResult
    func retransmit(_ seqs: [UInt16], now: Instant = Instant.now()) -> (duplicates: Int, overBudget: Int) {
        lock.withLock {
            guard let socket, let remote else { return (0, 0) }
            video.nacks += 1
            var refused = (duplicates: 0, overBudget: 0)
            // The rate on the wire: payload bytes per second plus ~4 % of headers.
            let sending = video.bitrate.current(now: now) * 1.04
            for seq in seqs {
                let i = Int(seq) & ringMask
                guard ring[i].valid && ring[i].seq == seq else { continue }
                switch resendLimiter.allow(sequence: seq, bytes: ring[i].bytes.count, sendingBytesPerSecond: sending, now: now) {
                case nil:
                    transmit(ring[i].bytes, socket, remote)
                    video.retransmitted += 1
                case .duplicate?:
                    refused.duplicates += 1
                case .budget?:
                    refused.overBudget += 1
                }
            }
            video.retransmissionsRefused += UInt64(refused.duplicates + refused.overBudget)
            return refused
        }
    }

    func countKeyframeRequest(fir: Bool) {
        lock.withLock { if fir { video.firs += 1 } else { video.plis += 1 } }
    }

    /// SR packets for the streams we send (RFC 3550 §6.4.1), report blocks on the first.
    func senderReports(blocks: [ReceptionReport]) -> [RTCPPacket] {
        lock.withLock {
            var out: [RTCPPacket] = []
            let ntp = NTPTime.now()
            for s in [video, audio] where s.active && s.packets > 0 {
                // Extrapolate the RTP timestamp to now from the last packet's NTP time.
                let elapsed = Double(NTPTime.toUnixNanoseconds(ntp) - NTPTime.toUnixNanoseconds(s.lastNTP)) / 1e9
                let ts = s.lastRTPTimestamp &+ UInt32(truncatingIfNeeded: Int64(max(0, elapsed) * Double(s.clockRate)))
                out.append(.senderReport(ssrc: s.ssrc, ntp: ntp, rtpTimestamp: ts, packetCount: UInt32(truncatingIfNeeded: s.packets),
                                         octetCount: UInt32(truncatingIfNeeded: s.octets), reports: out.isEmpty ? blocks : []))
            }
            return out
        }
    }

    func sendRTCP(_ compound: [UInt8]) {
        lock.withLock {
            guard let srtp, let socket, let remote else { return }
            var bytes = compound
            do { try srtp.protectRTCP(&bytes) } catch { return }
            transmit(bytes, socket, remote)
        }
    }

    func stats(now: Instant) -> [OutboundRTPStats] {
        lock.withLock {
            var out: [OutboundRTPStats] = []
            if video.active {
                var v = OutboundRTPStats(kind: "video", ssrc: video.ssrc)
                v.packetsSent = video.packets; v.bytesSent = video.octets; v.framesEncoded = video.frames
                v.keyFramesEncoded = video.keyframes; v.retransmittedPacketsSent = video.retransmitted
                v.retransmissionsRefused = video.retransmissionsRefused
                v.nackCount = video.nacks; v.pliCount = video.plis; v.firCount = video.firs
                v.frameWidth = video.width; v.frameHeight = video.height
                v.framesPerSecond = video.fps.current(now: now); v.bitrate = video.bitrate.current(now: now) * 8
                out.append(v)
            }
            if audio.active {
                var a = OutboundRTPStats(kind: "audio", ssrc: audio.ssrc)
                a.packetsSent = audio.packets; a.bytesSent = audio.octets
                a.bitrate = audio.bitrate.current(now: now) * 8
                out.append(a)
            }
            return out
        }
    }
}
