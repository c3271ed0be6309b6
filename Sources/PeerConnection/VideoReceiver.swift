import NetworkCore
import RTP

/// The receive side of the video stream: statistics, and the I/O-free
/// ``VideoReceiveChain`` (NACKs, frame assembly, keyframe requests). Owned by the
/// transport thread.
final class VideoReceiver {
    let payloadType: UInt8
    let absCaptureTimeID: UInt8?
    var remoteSSRC: UInt32?
    var statistics = ReceiveStatistics(ssrc: 0, clockRate: 90000)
    var chain = VideoReceiveChain()
    private var roundTrip: Duration?

    init(payloadType: UInt8, absCaptureTimeID: UInt8?) {
        self.payloadType = payloadType
        self.absCaptureTimeID = absCaptureTimeID
    }

    var hasWork: Bool { chain.hasWork }
    var framesDropped: Int { chain.framesDropped }

    /// The round trip measured from RTCP: NACKs are repeated once per round trip.
    func setRoundTrip(_ rtt: Duration) {
        roundTrip = rtt
        chain.setRoundTrip(rtt)
    }

    func receive(_ p: RTPPacket, retransmission: Bool = false, now: Instant) -> [AssembledFrame] {
        if remoteSSRC != p.ssrc {
            remoteSSRC = p.ssrc
            statistics = ReceiveStatistics(ssrc: p.ssrc, clockRate: 90000)
            chain = VideoReceiveChain()
            if let rtt = roundTrip { chain.setRoundTrip(rtt) }
        }
        statistics.received(sequence: p.sequenceNumber, rtpTimestamp: p.timestamp, payloadBytes: p.payload.count, arrival: now)
        let capture = absCaptureTimeID.flatMap { p.extension($0) }.flatMap(AbsCaptureTime.decode)
        return chain.receive(p, captureNTP: capture, retransmission: retransmission, now: now)
    }

    /// Periodic work: frames released by a gap given up, NACKs due, whether to send a PLI.
    func tick(now: Instant) -> (frames: [AssembledFrame], nacks: [UInt16], pli: Bool) { chain.tick(now: now) }
}
