import NetworkCore

/// Per-SSRC reception statistics (RFC 3550 §6.4.1, §A.3, §A.8): loss, extended highest
/// sequence number, interarrival jitter; produces report blocks.
public struct ReceiveStatistics: Sendable {
    public let ssrc: UInt32
    public let clockRate: UInt32
    private var baseSeq: UInt32 = 0
    private var maxSeq: UInt16 = 0
    private var cycles: UInt32 = 0
    private var started = false
    public private(set) var packetsReceived: UInt64 = 0
    public private(set) var bytesReceived: UInt64 = 0
    private var expectedPrior: UInt32 = 0
    private var receivedPrior: UInt64 = 0
    private var transit: Int64 = 0
    private var jitterQ4: Double = 0
    /// Middle 32 bits of the last SR's NTP time, and when it arrived.
    private var lastSR: UInt32 = 0
    private var lastSRArrival: Instant?

    public init(ssrc: UInt32, clockRate: UInt32) {
        self.ssrc = ssrc
        self.clockRate = clockRate
    }

    public mutating func received(sequence: UInt16, rtpTimestamp: UInt32, payloadBytes: Int, arrival: Instant) {
        packetsReceived += 1
        bytesReceived += UInt64(payloadBytes)
        if !started {
            started = true
            baseSeq = UInt32(sequence)
            maxSeq = sequence
        } else {
            let d = SequenceNumber.distance(from: maxSeq, to: sequence)
            if d > 0 {
                if sequence < maxSeq { cycles &+= 1 << 16 }
                maxSeq = sequence
            }
        }
        // Jitter, in RTP timestamp units.
        let arrivalUnits = Int64(Double(arrival.nanoseconds) * Double(clockRate) / 1e9)
        let t = arrivalUnits - Int64(rtpTimestamp)
        if packetsReceived > 1 {
            let d = Double(abs(t - transit))
            jitterQ4 += (d - jitterQ4) / 16
        }
        transit = t
    }

    public mutating func receivedSenderReport(ntp: UInt64, arrival: Instant) {
        lastSR = NTPTime.middle32(ntp)
        lastSRArrival = arrival
    }

    public var extendedHighestSequence: UInt32 { cycles + UInt32(maxSeq) }
    public var expected: Int64 { started ? Int64(extendedHighestSequence) - Int64(baseSeq) + 1 : 0 }
    /// Packets lost so far (expected minus received; may be negative with duplicates).
    public var packetsLost: Int64 { expected - Int64(packetsReceived) }
    /// Interarrival jitter in seconds.
    public var jitterSeconds: Double { jitterQ4 / Double(clockRate) }

    /// A report block for the next RR/SR; updates the interval counters.
    public mutating func makeReport(now: Instant) -> ReceptionReport {
        let exp = UInt32(truncatingIfNeeded: expected)
        let expectedInterval = Int64(exp) - Int64(expectedPrior)
        let receivedInterval = Int64(packetsReceived) - Int64(receivedPrior)
        expectedPrior = exp
        receivedPrior = packetsReceived
        let lostInterval = expectedInterval - receivedInterval
        let fraction: UInt8 = expectedInterval <= 0 || lostInterval <= 0 ? 0 : UInt8(min(255, (lostInterval << 8) / expectedInterval))
        var dlsr: UInt32 = 0
        if let arrival = lastSRArrival {
            dlsr = UInt32(min(Double(UInt32.max), (now - arrival).seconds * 65536))
        }
        let lost = max(-0x80_0000, min(0x7F_FFFF, packetsLost))
        return ReceptionReport(ssrc: ssrc, fractionLost: fraction, cumulativeLost: Int32(lost),
                               highestSequence: extendedHighestSequence, jitter: UInt32(min(jitterQ4, Double(UInt32.max))),
                               lastSR: lastSR, delaySinceLastSR: dlsr)
    }
}

/// Round-trip time from a report block (RFC 3550 §6.4.1): now − LSR − DLSR, in seconds.
public func roundTripTime(report: ReceptionReport, nowNTP: UInt64) -> Double? {
    guard report.lastSR != 0 else { return nil }
    let a = NTPTime.middle32(nowNTP)
    let rtt = Int64(a) - Int64(report.lastSR) - Int64(report.delaySinceLastSR)
    guard rtt >= 0 else { return nil }
    return Double(rtt) / 65536
}
