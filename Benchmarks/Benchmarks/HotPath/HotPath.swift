// The firmware's hot paths, one benchmark each: wall time, CPU and malloc counts
// (`make perf-audit` compares them with Benchmarks/baseline.json). Benchmarks named "×1000"
// do the operation 1000 times per measured iteration (package-benchmark's scaling factor):
// CPU time is then above the clock's resolution and the measurement's own few allocations
// (16 per iteration, see `calibration`) weigh 0.016 per operation.
import Benchmark
#if canImport(Glibc)
import Glibc
#endif
import Codecs
import MediaDevices
import NetworkCore
import RTP
import SDP
import SRTP
import STUN

/// The same picture the simulated camera sends, encoded by x264 with the call's settings
/// (1280×720, 30 fps, 2 Mbit/s, ultrafast, zerolatency): 30 frames, the first a keyframe.
final class EncodedClip: @unchecked Sendable {
    static let shared = EncodedClip()
    let frames: [[UInt8]]

    init() {
        let camera = TestPatternCamera(width: 1280, height: 720, fps: 30)
        let encoder = try! X264Encoder(settings: H264EncoderSettings())
        var out: [[UInt8]] = []
        var n = 0
        while out.count < 30 && n < 200 {
            let buf = camera.draw()
            if let f = encoder.encode(i420: UnsafeRawBufferPointer(buf), forceKeyframe: n == 0) { out.append(f.data) }
            n += 1
        }
        frames = out
    }

    /// A typical inter frame (the median size of the P frames).
    var typicalFrame: [UInt8] { frames.dropFirst().sorted { $0.count < $1.count }[frames.count / 2] }
}

/// Master key and salt for a suite (30 bytes for AES-CM with HMAC-SHA1, 28 for AES-GCM).
func srtpKey(_ suite: SRTPSuite) -> [UInt8] { (0..<suite.keyAndSaltLength).map { UInt8($0 &* 7 &+ 1) } }

/// What MediaSender.emit does per packet: RTP header with the mid and abs-capture-time
/// extensions into a reused scratch buffer, SRTP protect, a copy into the retransmission ring.
/// (MediaSender is internal to PeerConnection; this follows it step by step.)
final class SendPath: @unchecked Sendable {
    var packetizer = H264Packetizer(maxPayloadSize: 1200)
    let srtp: SRTPSession
    var scratch: [UInt8] = []
    var ring: [[UInt8]] = Array(repeating: [], count: 1024)
    var sequence: UInt16 = 0
    var packets = 0
    let mid: [UInt8] = Array("1".utf8)

    init(suite: SRTPSuite) {
        srtp = try! SRTPSession(suite: suite, keyAndSalt: srtpKey(suite), inbound: false)
        scratch.reserveCapacity(1500)
        for i in ring.indices { ring[i].reserveCapacity(1500) }
    }

    func send(frame: [UInt8], timestamp: UInt32, ntp: UInt64) {
        packetizer.packetize(accessUnit: frame) { payload, last in
            emit(marker: last, timestamp: timestamp, payload: payload, ntp: ntp)
        }
    }

    func emit(marker: Bool, timestamp: UInt32, payload: ArraySlice<UInt8>, ntp: UInt64) {
        scratch.removeAll(keepingCapacity: true)
        scratch.append(0x90)
        scratch.append((marker ? 0x80 : 0) | 102)
        scratch.appendU16(sequence)
        scratch.appendU32(timestamp)
        scratch.appendU32(0x1234_5678)
        let extBytes = 1 + mid.count + 9
        let words = (extBytes + 3) / 4
        scratch.appendU16(0xBEDE)
        scratch.appendU16(UInt16(words))
        scratch.append(1 << 4 | UInt8(mid.count - 1))
        scratch.append(contentsOf: mid)
        scratch.append(2 << 4 | 7)
        scratch.appendU64(ntp)
        for _ in extBytes..<(words * 4) { scratch.append(0) }
        scratch.append(contentsOf: payload)
        try! srtp.protectRTP(&scratch)
        let i = Int(sequence) & 1023
        ring[i].removeAll(keepingCapacity: true)
        ring[i].append(contentsOf: scratch)
        sequence &+= 1
        packets += 1
    }
}

/// A protected video stream (the clip, looped) and the receive path of PeerConnection and
/// VideoReceiver per datagram: copy out of the socket buffer into the reused parse buffer,
/// unprotect, parse, statistics, NACK bookkeeping, frame assembly. The stream goes on
/// across batches (sequence numbers and timestamps continue), so the figures are those of
/// a call in its steady state, not of its first second.
final class ReceivePath: @unchecked Sendable {
    var datagrams: [[UInt8]] = []
    var next = 0
    let send: SendPath
    let srtp: SRTPSession
    var statistics = ReceiveStatistics(ssrc: 0x1234_5678, clockRate: 90000)
    var nack = NACKGenerator()
    var assembler = H264FrameAssembler(capacity: 512)
    let socketBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 2048, alignment: 16)
    var scratch: [UInt8] = []
    var frames = 0
    var now = Instant.now()
    var ts: UInt32 = 0

    init(suite: SRTPSuite) {
        send = SendPath(suite: suite)
        srtp = try! SRTPSession(suite: suite, keyAndSalt: srtpKey(suite), inbound: true)
        scratch.reserveCapacity(2048)
        refill()
        // One pass to warm up: every slot of the assembler's ring has held a packet.
        while !atEnd { receiveOne() }
        refill()
    }

    /// The next batch: the clip four times, protected (outside the measurement).
    func refill() {
        datagrams.removeAll(keepingCapacity: true)
        for _ in 0..<4 {
            for f in EncodedClip.shared.frames {
                send.packetizer.packetize(accessUnit: f) { payload, last in
                    send.emit(marker: last, timestamp: ts, payload: payload, ntp: 0)
                    datagrams.append(send.scratch)
                }
                ts &+= 3000
            }
        }
        next = 0
    }

    var atEnd: Bool { next == datagrams.count }

    func receiveOne() {
        now = now + .microseconds(300)
        var len = datagrams[next].count
        datagrams[next].withUnsafeBytes { socketBuffer.copyMemory(from: $0) }
        next += 1
        try! srtp.unprotectRTP(buffer: socketBuffer.baseAddress!, length: &len)
        scratch.removeAll(keepingCapacity: true)
        scratch.append(contentsOf: UnsafeRawBufferPointer(rebasing: socketBuffer[0..<len]))
        let p = try! RTPPacket(parsing: scratch)
        statistics.received(sequence: p.sequenceNumber, rtpTimestamp: p.timestamp, payloadBytes: p.payload.count, arrival: now)
        _ = nack.received(p.sequenceNumber, now: now)
        frames += assembler.insert(p, captureNTP: nil, now: now).count
    }
}

/// Transport-wide feedback in a call's steady state, both ends: the receiver records 10
/// arrivals (50 ms of 720p video at 2 Mbit/s), polls its generator into an RTCP buffer;
/// the sender reads that datagram in place, pairs it with its send history and feeds the
/// delay-based estimator, as PeerConnection's transport thread does.
final class FeedbackRound: @unchecked Sendable {
    var generator = TransportFeedbackGenerator()
    var history = SendHistory()
    var estimator = DelayBasedEstimator(startBps: 2_000_000, minimumBps: 100_000, maximumBps: 4_000_000)
    var wire: [UInt8] = []
    var results: [SendHistory.Result] = []
    var sequence: UInt16 = 0
    var now = Instant(nanoseconds: 1_000_000_000)

    func round() {
        for k in 0..<10 {
            history.sent(sequence: sequence, size: 1200, at: now + .milliseconds(5 * Int64(k)))
            generator.received(sequence: sequence, now: now + .milliseconds(5 * Int64(k) + 20))
            sequence &+= 1
        }
        now = now + .milliseconds(50)
        wire.removeAll(keepingCapacity: true)
        _ = generator.poll(now: now + .milliseconds(20), senderSSRC: 1, mediaSSRC: 2, appendingTo: &wire)
        guard let compound = try? RTCPCompound(parsing: wire) else { fatalError("feedback does not parse") }
        for p in compound {
            guard case .transportFeedback(let fb) = p else { continue }
            _ = history.results(for: fb, now: now + .milliseconds(40), into: &results)
            estimator.update(results: results, now: now + .milliseconds(40))
        }
    }
}

/// What a device receives about twice a second and on every loss: an SR with two report
/// blocks, SDES, a NACK and transport-wide feedback in one compound packet.
let compoundRTCP: [UInt8] = {
    var g = TransportFeedbackGenerator()
    let t0 = Instant(nanoseconds: 1_000_000_000)
    for s in 0..<40 where s % 13 != 5 { g.received(sequence: UInt16(s), now: t0 + .microseconds(Int64(s) * 4_500)) }
    let feedback = g.poll(now: t0 + .milliseconds(200), senderSSRC: 1, mediaSSRC: 2).map { RTCPPacket.transportFeedback($0) }
    let block = ReceptionReport(ssrc: 2, fractionLost: 3, cumulativeLost: 17, highestSequence: 70_000, jitter: 90, lastSR: 0x1234_5678, delaySinceLastSR: 6553)
    return RTCPPacket.compound([
        .senderReport(ssrc: 1, ntp: 0xE000_0000_8000_0000, rtpTimestamp: 90_000, packetCount: 5000, octetCount: 6_000_000, reports: [block, block]),
        .sourceDescription([(1, "a-device-cname-of-24-bytes"), (3, "a-device-cname-of-24-bytes")]),
        .nack(sender: 1, media: 2, lost: [100, 101, 103, 140]),
    ] + feedback)
}()

/// `make test` runs the benchmarks briefly (VIDEOPHONE_BENCH_QUICK=1).
let quick = getenv("VIDEOPHONE_BENCH_QUICK") != nil

/// PERF_AUDIT_PLANT_SLOWDOWN=20 does the measured work of every fifth iteration twice:
/// 20 % more work, to show that the audit catches it (BENCHMARKS.md).
let plantEvery: Int = {
    guard let v = getenv("PERF_AUDIT_PLANT_SLOWDOWN").flatMap({ Int(String(cString: $0)) }), v > 0 else { return 0 }
    return max(1, 100 / v)
}()

nonisolated(unsafe) var plantCounter = 0

/// How many times this operation runs (twice for every fifth when a slowdown is planted;
/// counted across iterations, so benchmarks that do one operation per iteration get it too).
@inline(__always) func times(_: Int) -> Int {
    guard plantEvery > 0 else { return 1 }
    plantCounter += 1
    return plantCounter % plantEvery == 0 ? 2 : 1
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .cpuTotal, .mallocCountTotal, .throughput],
        warmupIterations: quick ? 3 : 10,
        maxDuration: quick ? .milliseconds(250) : .seconds(2),
        maxIterations: quick ? 2_000 : 20_000
    )

    // A fixed amount of plain integer work: the yardstick that makes figures from two
    // machines comparable (the audit compares ratios to it when the machine differs).
    Benchmark("calibration") { benchmark in
        for _ in benchmark.scaledIterations {
            var x: UInt64 = 0x9E37_79B9_7F4A_7C15
            for i in 0..<200_000 { x = (x ^ (x >> 29)) &* 0xBF58_476D_1CE4_E5B9 &+ UInt64(i) }
            blackHole(x)
        }
    }

    // AES-CM with HMAC-SHA1 is what every WebRTC stack supports; AES-GCM is what two
    // devices (and Chromium, Firefox) negotiate first. The frame's allocations are per frame
    // (the figures are per frame); the receive figures are per packet.
    for (suite, label) in [(SRTPSuite.aes128CmHmacSha1_80, ""), (.aeadAes128Gcm, ", AES-GCM")] {
        Benchmark("packetize+protect 720p frame\(label) ×1000", configuration: .init(scalingFactor: .kilo)) { benchmark in
            let send = SendPath(suite: suite)
            let frame = EncodedClip.shared.typicalFrame
            var ts: UInt32 = 0
            send.send(frame: frame, timestamp: ts, ntp: 0)  // sizes the packetizer's buffer
            benchmark.startMeasurement()
            for i in benchmark.scaledIterations {
                for _ in 0..<times(i) { send.send(frame: frame, timestamp: ts, ntp: 0) }
                ts &+= 3000
            }
            benchmark.stopMeasurement()
            blackHole(send.packets)
        }

        Benchmark("receive RTP packet (unprotect, parse, assemble\(label)) ×1000", configuration: .init(scalingFactor: .kilo)) { benchmark in
            let r = ReceivePath(suite: suite)
            benchmark.startMeasurement()
            for i in benchmark.scaledIterations {
                for _ in 0..<times(i) {
                    if r.atEnd {
                        benchmark.stopMeasurement()
                        r.refill()
                        benchmark.startMeasurement()
                    }
                    r.receiveOne()
                }
            }
            benchmark.stopMeasurement()
            blackHole(r.frames)
        }
    }

    Benchmark("STUN binding request+response ×1000", configuration: .init(scalingFactor: .kilo)) { benchmark in
        let key = Array("0123456789012345678901234".utf8)
        let mapped = TransportAddress(host: "192.0.2.7", port: 40000)!
        for i in benchmark.scaledIterations {
          for _ in 0..<times(i) {
            var req = STUNMessage(method: .binding, class: .request)
            req.add(STUNAttributeType.username, Array("abcd:efgh".utf8))
            req.add(STUNAttributeType.priority, [0x6E, 0x00, 0x1E, 0xFF])
            req.add(STUNAttributeType.iceControlling, [1, 2, 3, 4, 5, 6, 7, 8])
            req.add(STUNAttributeType.useCandidate, [])
            let wire = req.serialize(integrityKey: key)
            let got = try! STUNMessage(parsing: wire)
            precondition(got.verifyIntegrity(key: key))
            var resp = STUNMessage(method: .binding, class: .successResponse, transactionID: got.transactionID)
            resp.addXORAddress(STUNAttributeType.xorMappedAddress, mapped)
            let back = try! STUNMessage(parsing: resp.serialize(integrityKey: key))
            blackHole(back.xorMappedAddress)
          }
        }
    }

    Benchmark("SDP offer->answer") { benchmark in
        let fp = (0..<32).map { _ in "AB" }.joined(separator: ":")
        let local = LocalParameters(iceUfrag: "abcd", icePwd: "0123456789012345678901234", fingerprint: fp,
                                    candidates: ["1 1 udp 2130706431 192.0.2.1 5000 typ host generation 0"], endOfCandidates: true,
                                    audioSSRC: 11, videoSSRC: 22, cname: "dev", streamID: "dev")
        for i in benchmark.scaledIterations {
          for _ in 0..<times(i) {
            let offer = JSEP.makeOffer(local, sessionID: 7)
            let parsed = try! SessionDescription(parsing: offer.text)
            let (answer, _) = try! JSEP.answer(offer: parsed, local: local, sessionID: 8)
            let accepted = try! JSEP.acceptAnswer(try! SessionDescription(parsing: answer.text), local: local)
            blackHole(accepted)
          }
        }
    }

    Benchmark("jitter buffer insert+render (audio) ×1000", configuration: .init(scalingFactor: .kilo)) { benchmark in
        var jb = AudioJitterBuffer()
        let payload = [UInt8](repeating: 0x55, count: 80)
        var seq: UInt16 = 0
        var ts: UInt32 = 0
        var now = Instant.now()
        // Fill to its target first, as in a call.
        for _ in 0..<4 { jb.insert(sequence: seq, timestamp: ts, payload: payload, arrival: now); seq &+= 1; ts &+= 960; now = now + .milliseconds(20) }
        benchmark.startMeasurement()
        for i in benchmark.scaledIterations {
            for _ in 0..<times(i) {
                jb.insert(sequence: seq, timestamp: ts, payload: payload, arrival: now)
                blackHole(jb.pop())
                seq &+= 1; ts &+= 960; now = now + .milliseconds(20)
            }
        }
        benchmark.stopMeasurement()
    }

    // The transport thread's RTCP (issue #14): feedback both ways, a compound packet read,
    // and the audio copied from the datagram into the jitter buffer, none of it allocating.
    Benchmark("TWCC feedback: receive 10 packets + poll + consume at the sender (DelayBasedEstimator) ×1000", configuration: .init(scalingFactor: .kilo)) { benchmark in
        let f = FeedbackRound()
        for _ in 0..<200 { f.round() }  // every ring and scratch buffer has grown
        benchmark.startMeasurement()
        for i in benchmark.scaledIterations { for _ in 0..<times(i) { f.round() } }
        benchmark.stopMeasurement()
        blackHole(f.estimator.estimateBps)
    }

    Benchmark("RTCP compound parse (SR/RR + SDES + NACK + TWCC) ×1000", configuration: .init(scalingFactor: .kilo)) { benchmark in
        let bytes = compoundRTCP
        var sum = 0
        benchmark.startMeasurement()
        for i in benchmark.scaledIterations {
            for _ in 0..<times(i) {
                guard let compound = try? RTCPCompound(parsing: bytes) else { fatalError("compound does not parse") }
                for p in compound {
                    switch p {
                    case let .senderReport(_, _, _, _, _, reports): for r in reports { sum &+= Int(r.jitter) }
                    case let .receiverReport(_, reports): for r in reports { sum &+= Int(r.jitter) }
                    case let .nack(_, _, lost): for s in lost { sum &+= Int(s) }
                    case let .transportFeedback(fb): for r in fb { sum &+= Int(r.ticks) }
                    default: sum &+= 1
                    }
                }
            }
        }
        benchmark.stopMeasurement()
        blackHole(sum)
    }

    // AudioPlayout.insert: the payload is a slice of the datagram's buffer.
    Benchmark("audio playout insert (payload slice) + pop ×1000", configuration: .init(scalingFactor: .kilo)) { benchmark in
        var jb = AudioJitterBuffer()
        let datagram = [UInt8](repeating: 0x55, count: 12 + 120)
        var seq: UInt16 = 0
        var ts: UInt32 = 0
        var now = Instant.now()
        func one() {
            jb.insert(sequence: seq, timestamp: ts, payload: datagram[12...], arrival: now)
            blackHole(jb.pop())
            seq &+= 1; ts &+= 960; now = now + .milliseconds(20)
        }
        for _ in 0..<4 { jb.insert(sequence: seq, timestamp: ts, payload: datagram[12...], arrival: now); seq &+= 1; ts &+= 960; now = now + .milliseconds(20) }
        for _ in 0..<200 { one() }  // every slot of the ring has held a packet
        benchmark.startMeasurement()
        for i in benchmark.scaledIterations { for _ in 0..<times(i) { one() } }
        benchmark.stopMeasurement()
    }

    Benchmark("Opus encode 20 ms ×1000", configuration: .init(scalingFactor: .kilo)) { benchmark in
        let enc = try! OpusEncoder(channels: 1, bitrate: 32000)
        let pcm = (0..<960).map { Int16(8000 * sin(Double($0) * 2 * Double.pi * 440 / 48000)) }
        benchmark.startMeasurement()
        for i in benchmark.scaledIterations { for _ in 0..<times(i) { blackHole(enc.encode(pcm)) } }
        benchmark.stopMeasurement()
    }

    // What a call does: the packet stays in the encoder's buffer until the transport
    // thread's ring copies it (no array per packet).
    Benchmark("Opus encode 20 ms into its buffer ×1000", configuration: .init(scalingFactor: .kilo)) { benchmark in
        let enc = try! OpusEncoder(channels: 1, bitrate: 32000)
        let pcm = (0..<960).map { Int16(8000 * sin(Double($0) * 2 * Double.pi * 440 / 48000)) }
        benchmark.startMeasurement()
        for i in benchmark.scaledIterations { for _ in 0..<times(i) { blackHole(enc.encode(pcm) { $0.count }) } }
        benchmark.stopMeasurement()
    }

    Benchmark("Opus decode 20 ms ×1000", configuration: .init(scalingFactor: .kilo)) { benchmark in
        let enc = try! OpusEncoder(channels: 1, bitrate: 32000)
        let dec = try! OpusDecoder(channels: 1)
        let pcm = (0..<960).map { Int16(8000 * sin(Double($0) * 2 * Double.pi * 440 / 48000)) }
        let packets = (0..<50).map { _ in enc.encode(pcm)! }
        var i = 0
        benchmark.startMeasurement()
        for n in benchmark.scaledIterations {
            for _ in 0..<times(n) {
                blackHole(dec.decode(packets[i % packets.count][...]))
                i += 1
            }
        }
        benchmark.stopMeasurement()
    }
}
