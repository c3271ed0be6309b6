import NetworkCore
import RTP
import SDP
import SRTP

/// The send side: RTP packetization, pacing, SRTP protection, transport-wide sequence
/// numbers, the retransmission ring and sender reports.
///
/// Media threads only hand frames and audio packets over (``queueVideo(_:)``,
/// ``queueAudio(_:samples:)``): a short lock around a bounded queue, no packetizing, no
/// SRTP, no `sendto`. The transport thread does the rest in ``service(now:)``: audio goes
/// out at once, video packets leave at the pacer's rate in bursts into the call core's
/// ``DatagramOutbox`` (its driver sends a burst with one `sendmmsg`), each stamped with its transport-wide sequence number and protected just before
/// it is sent. The hot path reuses its buffers: a fixed pool of packet buffers, one scratch
/// buffer, the burst's datagram slots, the NACK ring.
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
        /// Quarter-second windows: congestion control and its benchmark read this rate.
        var bitrate = RateMeter(window: 0.25)
        /// Bytes resent (NACK answers) per second lately (a quarter-second time constant).
        var resent = DecayingRate(tau: 0.25)
    }

    /// An encoded frame handed over by the camera thread.
    struct VideoFrame {
        var data: [UInt8]
        var isKeyframe: Bool
        var width: Int
        var height: Int
        var captureTime: Instant
        var captureNTP: UInt64
    }

    /// Audio packets handed over: a ring of reused payload buffers (the transport thread
    /// swaps a filled one for an empty one of its own), so no packet allocates.
    struct AudioRing {
        var payloads: [[UInt8]]
        var samples: [Int]
        var head = 0
        var count = 0

        init(slots: Int) {
            payloads = (0..<slots).map { _ in var b = [UInt8](); b.reserveCapacity(MediaSender.maxAudioPayload); return b }
            samples = Array(repeating: 0, count: slots)
        }

        /// The slot that takes the next packet.
        var tail: Int { (head + count) % payloads.count }
    }

    /// What media threads hand over; bounded, emptied by the transport thread.
    struct Handoff {
        var video: [VideoFrame] = []
        var audio = AudioRing(slots: MediaSender.maxQueuedAudio)
        var droppedFrames: UInt64 = 0
        var droppedAudio: UInt64 = 0
    }
    /// Frames waiting for the transport thread. More means it is stuck or far behind:
    /// the oldest is dropped (the receiver asks for a keyframe if it needs one).
    static let maxQueuedFrames = 4
    static let maxQueuedAudio = 16
    /// The largest Opus packet (RFC 6716 §3.4: 1275 bytes per frame, one 20 ms frame).
    static let maxAudioPayload = 1275
    let handoff = Locked(Handoff())

    /// A packet waiting for the pacer: an unprotected RTP packet in a pooled buffer.
    struct Queued {
        var buffer: Int
        var length: Int
        /// Where the transport-wide sequence number goes (nil: not negotiated).
        var twccOffset: Int?
        var sequence: UInt16
        /// The first packet of a frame: its capture time, for capture → wire latency.
        var captureTime: Instant?
    }
    /// IPv4 and UDP headers: what a datagram costs the path beyond its payload.
    static let udpIPHeaderBytes = 28
    /// Packets the pacer holds at most; a frame that does not fit goes out unpaced.
    static let poolSize = 512

    let lock = Lock()
    let videoSSRC = UInt32.random(in: 1...UInt32.max)
    let audioSSRC = UInt32.random(in: 1...UInt32.max)
    /// Retransmissions go out here when the peer takes RTX (RFC 4588).
    let rtxSSRC = UInt32.random(in: 1...UInt32.max)
    private var rtxPT: UInt8?
    private var rtxSequence = UInt16.random(in: 0...UInt16.max)
    let cname = randomICEString(16)
    private var video: Stream
    private var audio: Stream
    private var srtp: SRTPSession?
    /// Where media goes: the selected pair's local candidate (by index) and remote address.
    private var destination: (path: Int, remote: TransportAddress)?
    /// Every datagram leaves through here; the driver puts them on the wire.
    let outbox: DatagramOutbox
    /// Wall-clock time (NTP format) at a monotonic instant: sender reports and audio timing.
    let ntpClock: @Sendable (Instant) -> UInt64
    private var midID: UInt8?
    private var absCaptureID: UInt8?
    private var twccID: UInt8?
    private var videoMid: [UInt8] = []
    private var audioMid: [UInt8] = []
    private var packetizer = H264Packetizer(maxPayloadSize: 1200 - 12 - 28 - 16)
    private var scratch: [UInt8] = []
    /// RTCP being protected and sent (lock held).
    private var rtcpOut: [UInt8] = []
    private var audioStart: Instant?
    // The pacer's queue: a ring of indices into a pool of reused buffers.
    private var pool: [[UInt8]]
    private var queue: [Queued]
    private var queueHead = 0
    private var queueCount = 0
    private var queuedBytes = 0
    private var pacer: Pacer
    private var taken: [VideoFrame] = []
    /// The transport thread's side of the audio ring: packets taken, and the empty
    /// buffers it swaps in.
    private var takenAudio = AudioRing(slots: MediaSender.maxQueuedAudio)
    /// Transport-wide sequence numbers and what was sent with them.
    private var twccSequence = UInt16.random(in: 0...UInt16.max)
    private var history = SendHistory()
    /// Protected video packets by sequence number, for NACK (RFC 4585), with the
    /// transport-wide sequence number they went out with.
    private var ring: [(seq: UInt16, valid: Bool, twcc: UInt16?, sentAt: Instant, bytes: [UInt8])]
    /// NACKs for packets older than this are not answered: no receiver still waits for
    /// them (a NACK generator gives up after a second), and a copy that old would only
    /// confuse its jitter buffer. With RTX such a copy would even pass SRTP's replay check.
    static let maxRetransmissionAge: Duration = .seconds(1)
    private let ringMask = 511
    /// NACK answers: no resend of one packet within ~a round trip, and a byte budget.
    /// The floor is low: the budget follows the target from the first packet (the pacer
    /// knows it), and on a 300 kbit/s path the default floor (320 kbit/s) alone would let
    /// resends take the whole link.
    private var resendLimiter = RetransmissionLimiter(floorBytesPerSecond: 8_000, slots: 512)
    private var stopped = false
    private var unpacedFrames: UInt64 = 0
    /// Off until the peer's first RTCP report: the first keyframe (time to first frame)
    /// leaves at once, before anything is known of the path.
    private var pacing = false
    private var probe: (cluster: ProbeController.Cluster, sent: Int, next: Instant)?
    private var probesStarted: UInt64 = 0
    private var paddingBytes: UInt64 = 0
    /// Recent capture → wire latencies in ms (about two minutes at 30 fps).
    let captureToWire = Locked(RecentSamples(capacity: 4096))

    init(targetKbps: Int, outbox: DatagramOutbox, ntpClock: @escaping @Sendable (Instant) -> UInt64) {
        self.outbox = outbox
        self.ntpClock = ntpClock
        video = Stream(ssrc: videoSSRC, clockRate: 90000)
        audio = Stream(ssrc: audioSSRC, clockRate: 48000)
        ring = Array(repeating: (0, false, nil, Instant(nanoseconds: 0), []), count: 512)
        scratch.reserveCapacity(1500 + SRTPSession.maxTrailer)
        pool = (0..<MediaSender.poolSize).map { _ in var b = [UInt8](); b.reserveCapacity(1500); return b }
        queue = Array(repeating: Queued(buffer: 0, length: 0, twccOffset: nil, sequence: 0, captureTime: nil), count: MediaSender.poolSize)
        pacer = Pacer(targetBps: Double(targetKbps) * 1000)
        taken.reserveCapacity(MediaSender.maxQueuedFrames)
        handoff.withLock { $0.video.reserveCapacity(MediaSender.maxQueuedFrames) }
    }

    func configure(session: NegotiatedSession) {
        lock.withLock {
            if let v = session.video {
                video.payloadType = v.codec.payloadType
                video.active = v.send
                midID = MediaSender.oneByteID(v.extensions[RTPExtensionURI.mid])
                absCaptureID = MediaSender.oneByteID(v.extensions[RTPExtensionURI.absCaptureTime])
                if v.transportCC { twccID = MediaSender.oneByteID(v.extensions[TransportWideCC.uri]) }
                rtxPT = v.rtxPayloadType
                videoMid = MediaSender.oneByteValue(v.mid)
            }
            if let a = session.audio {
                audio.payloadType = a.codec.payloadType
                audio.active = a.send
                if midID == nil { midID = MediaSender.oneByteID(a.extensions[RTPExtensionURI.mid]) }
                if twccID == nil, a.transportCC { twccID = MediaSender.oneByteID(a.extensions[TransportWideCC.uri]) }
                audioMid = MediaSender.oneByteValue(a.mid)
            }
        }
    }

    /// Header extensions go out in the one-byte form (RFC 8285 §4.2): IDs 1–14 and 1–16
    /// bytes of data. The peer's description decides both; an ID or a mid outside that is
    /// left out of the header rather than written corrupt (or, for a mid over 256 bytes,
    /// trapping on its length byte).
    static func oneByteID(_ id: UInt8?) -> UInt8? { id.flatMap { (1...14).contains($0) ? $0 : nil } }
    static func oneByteValue(_ mid: String) -> [UInt8] { mid.utf8.count <= 16 ? Array(mid.utf8) : [] }

    /// Whether sent packets carry transport-wide sequence numbers.
    var usesTransportCC: Bool { lock.withLock { twccID != nil } }

    func setKeys(suite: SRTPSuite, keyAndSalt: [UInt8]) throws {
        let s = try SRTPSession(suite: suite, keyAndSalt: keyAndSalt, inbound: false)
        lock.withLock { srtp = s }
    }

    /// Sends from local candidate `path` to `remote` from now on (the selected ICE pair).
    func setDestination(path: Int, remote: TransportAddress) {
        lock.withLock { destination = (path, remote) }
    }

    /// After an ICE restart: the old pair's local candidate is now `path` (nil: it is
    /// gone, and media waits for the new pair).
    func retarget(path: Int?) {
        lock.withLock { destination = path.flatMap { p in destination.map { (p, $0.remote) } } }
    }

    /// The congestion controller's target: the pacer follows it.
    func setTarget(kbps: Int) { lock.withLock { pacer.setTarget(bps: Double(kbps) * 1000) } }

    /// The round trip from RTCP: the resend limiter's window for repeated NACKs.
    func setRoundTrip(_ rtt: Duration) { lock.withLock { resendLimiter.setRoundTrip(rtt) } }

    /// Resends (answers to NACKs) on the wire lately, kbit/s.
    func resendKbps(now: Instant) -> Double { lock.withLock { video.resent.current(now: now) * 8 / 1000 } }

    /// Audio on the wire lately (packets with their RTP, SRTP and UDP/IP headers), kbit/s:
    /// it shares the path, and so the estimate, with video.
    func audioWireKbps(now: Instant) -> Double { lock.withLock { audioWire.current(now: now) * 8 / 1000 } }
    private var audioWire = RateMeter(window: 0.5)

    func stop() { lock.withLock { stopped = true } }

    /// The peer reports on what it receives: from now on the pacer spreads video.
    func enablePacing() { lock.withLock { pacing = true } }

    // MARK: Media threads

    /// Hands one access unit to the transport thread; false when nothing can be sent yet
    /// (no keys, no destination, not negotiated).
    func queueVideo(_ frame: VideoFrame) -> Bool {
        guard lock.withLock({ !stopped && video.active && srtp != nil && destination != nil }) else { return false }
        handoff.withLock { h in
            if h.video.count >= MediaSender.maxQueuedFrames { h.video.removeFirst(); h.droppedFrames += 1 }
            h.video.append(frame)
        }
        return true
    }

    /// Hands one audio packet to the transport thread, copied into the ring (the oldest is
    /// dropped when it is full); false when nothing can be sent yet or it is too large.
    func queueAudio(_ payload: UnsafeRawBufferPointer, samples: Int) -> Bool {
        guard payload.count <= MediaSender.maxAudioPayload,
              lock.withLock({ !stopped && audio.active && srtp != nil && destination != nil }) else { return false }
        handoff.withLock { h in
            if h.audio.count == MediaSender.maxQueuedAudio {
                h.audio.head = (h.audio.head + 1) % MediaSender.maxQueuedAudio
                h.audio.count -= 1
                h.droppedAudio += 1
            }
            let slot = h.audio.tail
            h.audio.payloads[slot].removeAll(keepingCapacity: true)
            h.audio.payloads[slot].append(contentsOf: payload)
            h.audio.samples[slot] = samples
            h.audio.count += 1
        }
        return true
    }

    // MARK: Transport thread

    /// Sends what is due: handed-over audio at once, then video as the pacer allows.
    /// Returns when to call again (nil: nothing queued) and whether anything went out.
    func service(now: Instant) -> (next: Instant?, sent: Bool) {
        handoff.withLock { h in
            swap(&taken, &h.video)
            // Filled buffers come over, empty ones go back: no copy, no allocation.
            while h.audio.count > 0 {
                let from = h.audio.head, to = takenAudio.tail
                swap(&takenAudio.payloads[to], &h.audio.payloads[from])
                takenAudio.samples[to] = h.audio.samples[from]
                takenAudio.count += 1
                h.audio.head = (from + 1) % MediaSender.maxQueuedAudio
                h.audio.count -= 1
            }
            h.audio.head = 0
        }
        return lock.withLock {
            guard !stopped, srtp != nil, destination != nil else {
                taken.removeAll(keepingCapacity: true)
                takenAudio.head = 0
                takenAudio.count = 0
                return (nil, false)
            }
            var sent = false
            while takenAudio.count > 0 {
                let i = takenAudio.head
                sent = sendAudioNow(i, now: now) || sent
                takenAudio.head = (i + 1) % MediaSender.maxQueuedAudio
                takenAudio.count -= 1
            }
            takenAudio.head = 0
            for f in taken { packetize(f, now: now) }
            taken.removeAll(keepingCapacity: true)
            while queueCount > 0, !pacing || pacer.maySend(now: now, queuedBytes: queuedBytes) {
                sent = sendQueued(now: now) || sent
            }
            while let p = probe, p.next <= now {
                sendPadding(p.cluster, now: now)
                probe = p.sent + 1 < p.cluster.packets ? (p.cluster, p.sent + 1, p.next + p.cluster.interval) : nil
            }
            var next = queueCount > 0 ? pacer.nextSend(now: now, queuedBytes: queuedBytes) : nil
            if let p = probe { next = next.map { min($0, p.next) } ?? p.next }
            return (next, sent)
        }
    }

    /// Writes the RTP header and extensions into `b`. Returns where the transport-wide
    /// sequence number goes. Call with the lock held.
    private func writeHeader(into b: inout [UInt8], _ s: Stream, marker: Bool, timestamp: UInt32, mid: [UInt8], captureNTP: UInt64?) -> Int? {
        var extBytes = 0
        if midID != nil, !mid.isEmpty { extBytes += 1 + mid.count }
        if absCaptureID != nil && captureNTP != nil { extBytes += 9 }
        if twccID != nil { extBytes += 3 }
        let hasExt = extBytes > 0
        b.append(hasExt ? 0x90 : 0x80)
        b.append((marker ? 0x80 : 0) | s.payloadType)
        b.appendU16(s.sequence)
        b.appendU32(timestamp)
        b.appendU32(s.ssrc)
        var twccOffset: Int? = nil
        if hasExt {
            let words = (extBytes + 3) / 4
            b.appendU16(0xBEDE)
            b.appendU16(UInt16(words))
            if let id = midID, !mid.isEmpty {
                b.append(id << 4 | UInt8(mid.count - 1))
                b.append(contentsOf: mid)
            }
            if let id = absCaptureID, let ntp = captureNTP {
                b.append(id << 4 | 7)
                b.appendU64(ntp)
            }
            if let id = twccID {
                b.append(id << 4 | 1)
                twccOffset = b.count
                b.appendU16(0)
            }
            for _ in extBytes..<(words * 4) { b.append(0) }
        }
        return twccOffset
    }

    /// One datagram into the outbox for the destination. Call with the lock held.
    private func transmit(_ bytes: [UInt8]) {
        guard let d = destination else { return }
        outbox.append(bytes, to: d.remote, path: d.path)
    }

    /// Stamps the transport-wide sequence number at `offset` of `scratch`, protects and
    /// sends it. Call with the lock held.
    private func protectAndSend(twccOffset: Int?, now: Instant, probe: Int = -1) -> (ok: Bool, twcc: UInt16?) {
        var twcc: UInt16? = nil
        if let o = twccOffset {
            twcc = twccSequence
            scratch.writeU16(twccSequence, at: o)
            twccSequence &+= 1
        }
        guard let srtp else { return (false, nil) }
        do { try srtp.protectRTP(&scratch) } catch { return (false, nil) }
        transmit(scratch)
        if let twcc { history.sent(sequence: twcc, size: scratch.count, at: now, probe: probe) }
        return (true, twcc)
    }

    /// Sends the packet in slot `i` of the taken audio. Lock held.
    private func sendAudioNow(_ i: Int, now: Instant) -> Bool {
        guard audio.active else { return false }
        if audioStart == nil { audioStart = now; audio.lastRTPTimestamp = audio.timestampOffset }
        let ts = audio.lastRTPTimestamp
        scratch.removeAll(keepingCapacity: true)
        let offset = writeHeader(into: &scratch, audio, marker: audio.packets == 0, timestamp: ts, mid: audioMid, captureNTP: nil)
        let bytes = takenAudio.payloads[i].count
        scratch.append(contentsOf: takenAudio.payloads[i])
        let ok = protectAndSend(twccOffset: offset, now: now).ok
        if ok { audioWire.add(Double(scratch.count + MediaSender.udpIPHeaderBytes), now: now) }
        audio.sequence &+= 1
        audio.packets += 1
        audio.octets += UInt64(bytes)
        audio.lastRTPTimestamp = ts &+ UInt32(takenAudio.samples[i])
        audio.lastNTP = ntpClock(now)
        audio.bitrate.add(Double(bytes), now: now)
        return ok
    }

    /// Packetizes a frame into the pacer's queue (or, when the pool is full, straight onto
    /// the wire: a stuck pacer must not lose frames).
    private func packetize(_ f: VideoFrame, now: Instant) {
        guard video.active else { return }
        let ts = video.timestampOffset &+ UInt32(truncatingIfNeeded: f.captureTime.nanoseconds * 9 / 100_000)
        var first = true
        var stream = video
        let mid = videoMid
        packetizer.packetize(accessUnit: f.data) { payload, last in
            if queueCount == MediaSender.poolSize, destination != nil {
                unpacedFrames += 1
                while queueCount > 0 { _ = sendQueued(now: now) }
            }
            let slot = (queueHead + queueCount) % MediaSender.poolSize
            let buffer = slot
            pool[buffer].removeAll(keepingCapacity: true)
            let offset = writeHeader(into: &pool[buffer], stream, marker: last, timestamp: ts, mid: mid, captureNTP: f.captureNTP)
            pool[buffer].append(contentsOf: payload)
            queue[slot] = Queued(buffer: buffer, length: pool[buffer].count, twccOffset: offset, sequence: stream.sequence,
                                 captureTime: first ? f.captureTime : nil)
            queueCount += 1
            queuedBytes += pool[buffer].count
            stream.sequence &+= 1
            stream.octets += UInt64(payload.count)
            first = false
        }
        video = stream
        video.frames += 1
        if f.isKeyframe { video.keyframes += 1 }
        video.width = f.width
        video.height = f.height
        video.lastRTPTimestamp = ts
        video.lastNTP = f.captureNTP
        video.fps.add(1, now: now)
        video.bitrate.add(Double(f.data.count), now: now)
    }

    /// Sends the packet at the head of the pacer's queue into the outbox (the driver sends
    /// a burst with one system call). Call with the lock held.
    private func sendQueued(now: Instant) -> Bool {
        let q = queue[queueHead]
        queueHead = (queueHead + 1) % MediaSender.poolSize
        queueCount -= 1
        queuedBytes -= q.length
        scratch.removeAll(keepingCapacity: true)
        scratch.append(contentsOf: pool[q.buffer])
        // With RTX the ring keeps the packet as it was before protection: a
        // retransmission is a new packet on the RTX stream, protected afresh.
        if rtxPT != nil { keepForRetransmission(q.sequence, twcc: nil, now: now) }
        let (ok, twcc) = protectAndSend(twccOffset: q.twccOffset, now: now)
        pacer.sent(bytes: scratch.count)
        guard ok else { return false }
        if rtxPT == nil { keepForRetransmission(q.sequence, twcc: twcc, now: now) }
        video.packets += 1
        if let t = q.captureTime {
            let ms = (now - t).milliseconds
            captureToWire.withLock { $0.add(ms) }
        }
        return true
    }

    /// Starts a probe cluster: padding-only packets on the video stream, at the cluster's
    /// rate, between frames (their sequence numbers follow the last frame packetized).
    func startProbe(_ c: ProbeController.Cluster, now: Instant) {
        lock.withLock {
            guard probe == nil, video.active, video.frames > 0, twccID != nil else { return }
            probe = (c, 0, now)
            probesStarted += 1
        }
    }

    /// One padding-only packet of a probe. Kept in the NACK ring like media: a lost one
    /// is resent, so the receiver's frame assembly never waits on it. Lock held.
    private func sendPadding(_ c: ProbeController.Cluster, now: Instant) {
        scratch.removeAll(keepingCapacity: true)
        let offset = writeHeader(into: &scratch, video, marker: false, timestamp: video.lastRTPTimestamp, mid: videoMid, captureNTP: nil)
        scratch[0] |= 0x20
        let padding = min(max(c.packetSize, 1), 255)
        for _ in 1..<padding { scratch.append(0) }
        scratch.append(UInt8(padding))
        let seq = video.sequence
        video.sequence &+= 1
        if rtxPT != nil { keepForRetransmission(seq, twcc: nil, now: now) }
        let (ok, twcc) = protectAndSend(twccOffset: offset, now: now, probe: c.id)
        guard ok else { return }
        if rtxPT == nil { keepForRetransmission(seq, twcc: twcc, now: now) }
        video.packets += 1
        paddingBytes += UInt64(padding)
    }

    /// Copies `scratch` into the NACK ring under `sequence`. Lock held.
    private func keepForRetransmission(_ sequence: UInt16, twcc: UInt16?, now: Instant) {
        let i = Int(sequence) & ringMask
        ring[i].seq = sequence
        ring[i].sentAt = now
        ring[i].valid = true
        ring[i].twcc = twcc
        ring[i].bytes.removeAll(keepingCapacity: true)
        if ring[i].bytes.capacity < scratch.count {
            // Sized once for the largest packet: growing to each new largest size (packet
            // sizes follow frame sizes) kept reallocating slots for minutes.
            ring[i].bytes.reserveCapacity(max(scratch.count, 1500))
        }
        ring[i].bytes.append(contentsOf: scratch)
    }

    /// Sends the kept (unprotected) packet in ring slot `i` again on the RTX stream
    /// (RFC 4588): its own SSRC and sequence number, the original sequence number ahead of
    /// the payload, a fresh transport-wide number. Lock held.
    private func sendRTX(slot i: Int, pt: UInt8, now: Instant) {
        let original = ring[i].bytes
        guard original.count >= 12 else { return }
        var offset = 12 + 4 * Int(original[0] & 0x0F)
        if original[0] & 0x10 != 0, original.count >= offset + 4 {
            offset += 4 + 4 * Int(original.readU16(at: offset + 2))
        }
        guard offset <= original.count else { return }
        var rtx = video
        rtx.ssrc = rtxSSRC
        rtx.payloadType = pt
        rtx.sequence = rtxSequence
        rtxSequence &+= 1
        scratch.removeAll(keepingCapacity: true)
        let twccOffset = writeHeader(into: &scratch, rtx, marker: original[1] & 0x80 != 0, timestamp: original.readU32(at: 4), mid: videoMid, captureNTP: nil)
        // A padded original (a probe) stays padded: its padding ends the payload.
        if original[0] & 0x20 != 0 { scratch[0] |= 0x20 }
        scratch.appendU16(ring[i].seq)
        scratch.append(contentsOf: original[offset...])
        _ = protectAndSend(twccOffset: twccOffset, now: now)
    }

    /// Resends the protected packets for the NACKed sequence numbers we still hold, within
    /// the limiter's rules; returns how many were refused as repeats and over the budget.
    @discardableResult
    func retransmit(_ seqs: some Sequence<UInt16>, now: Instant) -> (duplicates: Int, overBudget: Int, tooOld: Int) {
        lock.withLock {
            guard destination != nil else { return (0, 0, 0) }
            video.nacks += 1
            var refused = (duplicates: 0, overBudget: 0, tooOld: 0)
            // The rate on the wire: payload bytes per second plus ~4 % of headers, but
            // not above the target: right after a drop the meter still shows the rate
            // from before it, and resends at half of that overflow the queue again.
            let sending = min(video.bitrate.current(now: now) * 1.04, pacer.rateBps / Pacer.factor / 8)
            for seq in seqs {
                let i = Int(seq) & ringMask
                guard ring[i].valid && ring[i].seq == seq else { continue }
                guard now - ring[i].sentAt <= MediaSender.maxRetransmissionAge else { refused.tooOld += 1; continue }
                switch resendLimiter.allow(sequence: seq, bytes: ring[i].bytes.count, sendingBytesPerSecond: sending, now: now) {
                case nil:
                    if let pt = rtxPT {
                        sendRTX(slot: i, pt: pt, now: now)
                    } else {
                        transmit(ring[i].bytes)
                        // The copy carries the first one's transport-wide number: its feedback
                        // would pair a late arrival with the first send time (a false queue).
                        if let t = ring[i].twcc { history.forget(sequence: t) }
                    }
                    video.retransmitted += 1
                    video.resent.add(Double(ring[i].bytes.count), now: now)
                case .duplicate?:
                    refused.duplicates += 1
                case .budget?:
                    refused.overBudget += 1
                }
            }
            video.retransmissionsRefused += UInt64(refused.duplicates + refused.overBudget + refused.tooOld)
            return refused
        }
    }

    /// Pairs transport-wide feedback with what was sent, into `results` (its storage reused).
    func feedbackResults(_ fb: TransportFeedbackView, now: Instant, into results: inout [SendHistory.Result]) -> (unknown: Int, arrived: UInt64, lost: UInt64) {
        lock.withLock {
            let unknown = history.results(for: fb, now: now, into: &results)
            return (unknown, history.packetsArrived, history.packetsLost)
        }
    }

    func countKeyframeRequest(fir: Bool) {
        lock.withLock { if fir { video.firs += 1 } else { video.plis += 1 } }
    }

    /// SR packets for the streams we send (RFC 3550 §6.4.1), report blocks on the first,
    /// appended to `b`; returns how many. Serialized as they are made: no array of them.
    func senderReports(blocks: [ReceptionReport], now: Instant, into b: inout [UInt8]) -> Int {
        lock.withLock {
            var n = 0
            let ntp = ntpClock(now)
            func report(_ s: Stream) {
                guard s.active && s.packets > 0 else { return }
                // Extrapolate the RTP timestamp to now from the last packet's NTP time.
                let elapsed = Double(NTPTime.toUnixNanoseconds(ntp) - NTPTime.toUnixNanoseconds(s.lastNTP)) / 1e9
                let ts = s.lastRTPTimestamp &+ UInt32(truncatingIfNeeded: Int64(max(0, elapsed) * Double(s.clockRate)))
                RTCPPacket.senderReport(ssrc: s.ssrc, ntp: ntp, rtpTimestamp: ts, packetCount: UInt32(truncatingIfNeeded: s.packets),
                                        octetCount: UInt32(truncatingIfNeeded: s.octets), reports: n == 0 ? blocks : []).serialize(into: &b)
                n += 1
            }
            report(video)
            report(audio)
            return n
        }
    }

    func sendRTCP(_ compound: [UInt8]) {
        lock.withLock {
            guard let srtp, destination != nil else { return }
            // Protected in a buffer kept for it (SRTCP appends its index and tag).
            rtcpOut.removeAll(keepingCapacity: true)
            rtcpOut.append(contentsOf: compound)
            do { try srtp.protectRTCP(&rtcpOut) } catch { return }
            transmit(rtcpOut)
        }
    }

    func stats(now: Instant) -> [OutboundRTPStats] {
        let dropped = handoff.withLock { ($0.droppedFrames, $0.droppedAudio) }
        return lock.withLock {
            var out: [OutboundRTPStats] = []
            out.reserveCapacity(2)
            if video.active {
                var v = OutboundRTPStats(kind: "video", ssrc: video.ssrc)
                v.packetsSent = video.packets; v.bytesSent = video.octets; v.framesEncoded = video.frames
                v.keyFramesEncoded = video.keyframes; v.retransmittedPacketsSent = video.retransmitted
                v.retransmissionsRefused = video.retransmissionsRefused
                v.nackCount = video.nacks; v.pliCount = video.plis; v.firCount = video.firs
                v.frameWidth = video.width; v.frameHeight = video.height
                v.framesPerSecond = video.fps.current(now: now); v.bitrate = video.bitrate.current(now: now) * 8
                v.framesDroppedBeforeSend = dropped.0
                v.pacingRate = pacer.rateBps
                v.pacerQueueBytes = queuedBytes
                v.probeClusters = probesStarted
                v.paddingBytesSent = paddingBytes
                out.append(v)
            }
            if audio.active {
                var a = OutboundRTPStats(kind: "audio", ssrc: audio.ssrc)
                a.packetsSent = audio.packets; a.bytesSent = audio.octets
                a.bitrate = audio.bitrate.current(now: now) * 8
                a.framesDroppedBeforeSend = dropped.1
                out.append(a)
            }
            return out
        }
    }
}
