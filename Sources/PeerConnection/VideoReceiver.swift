import NetworkCore
import RTP

/// The receive side of the video stream: statistics, NACK generation and frame assembly.
/// Owned by the transport thread.
final class VideoReceiver {
    let payloadType: UInt8
    let absCaptureTimeID: UInt8?
    var remoteSSRC: UInt32?
    var statistics = ReceiveStatistics(ssrc: 0, clockRate: 90000)
    var nack = NACKGenerator()
    var assembler = H264FrameAssembler(capacity: 512)
    var lastPLI: Instant?

    init(payloadType: UInt8, absCaptureTimeID: UInt8?) {
        self.payloadType = payloadType
        self.absCaptureTimeID = absCaptureTimeID
    }

    var hasWork: Bool { nack.missingCount > 0 || remoteSSRC != nil }
    var framesDropped: Int { assembler.framesDropped }

    func receive(_ p: RTPPacket, now: Instant) -> [AssembledFrame] {
        if remoteSSRC != p.ssrc {
            remoteSSRC = p.ssrc
            statistics = ReceiveStatistics(ssrc: p.ssrc, clockRate: 90000)
            nack = NACKGenerator()
            assembler = H264FrameAssembler(capacity: 512)
        }
        statistics.received(sequence: p.sequenceNumber, rtpTimestamp: p.timestamp, payloadBytes: p.payload.count, arrival: now)
        nack.received(p.sequenceNumber, now: now)
        let capture = absCaptureTimeID.flatMap { p.extension($0) }.flatMap(AbsCaptureTime.decode)
        return assembler.insert(p, captureNTP: capture, now: now)
    }

    /// Periodic work: frames released by gap timeouts, NACKs due, whether to send a PLI
    /// (at most one per 300 ms).
    func tick(now: Instant) -> ([AssembledFrame], [UInt16], Bool) {
        let frames = assembler.poll(now: now)
        let nacks = nack.due(now: now)
        var pli = false
        if assembler.takeKeyframeRequest() {
            if lastPLI.map({ now - $0 > .milliseconds(300) }) ?? true {
                pli = true
                lastPLI = now
            }
        }
        return (frames, nacks, pli)
    }
}
