import NetworkCore

extension Device {
    /// A few human-readable lines for `videophonectl status` and `make run`.
    public func statusText() -> String {
        var brokerLine = ""
        if let broker = signalling.broker {
            let b = broker.snapshot
            let peers = b.presence.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value.rawValue)" }.joined(separator: ", ")
            let refused = b.refused.values.reduce(0, +)
            brokerLine = "  broker: \(b.url.map { "connected to \($0)" } ?? "not connected")   peers: \(peers.isEmpty ? "-" : peers)"
                + (refused > 0 ? "   refused messages: \(refused)" : "") + "\n"
        }
        guard let (pc, media, _) = currentCall else {
            return "\(config.name): \(phase.name)\n" + brokerLine
        }
        let s = pc.stats
        let f = media.figures
        var lines: [String] = []
        lines.append("\(config.name): \(phase.name)   ICE \(s.iceState)   DTLS \(s.dtlsState)   pair \(s.candidatePair.localCandidateType)/\(s.candidatePair.remoteCandidateType) \(s.candidatePair.remoteAddress)")
        let t = s.timeline
        func ms(_ i: Instant?) -> String { t.milliseconds(i).map { fmt($0, 1) + " ms" } ?? "-" }
        lines.append("  setup: signalling \(ms(t.remoteDescription))  ICE \(ms(t.iceConnected))  DTLS \(ms(t.dtlsConnected))  first media out \(ms(t.firstMediaSent))  first frame in \(ms(t.firstVideoFrameReceived))")
        for o in s.outbound where o.kind == "video" {
            lines.append("  video out: \(o.frameWidth)x\(o.frameHeight) \(fmt(o.framesPerSecond, 1)) fps \(fmt(o.bitrate / 1000, 0)) kbit/s (target \(s.targetVideoBitrateKbps))  frames \(o.framesEncoded) (key \(o.keyFramesEncoded))  retransmitted \(o.retransmittedPacketsSent)  \(f.encoderImplementation ?? "")")
        }
        for i in s.inbound where i.kind == "video" {
            lines.append("  video in:  \(fmt(i.framesPerSecond, 1)) fps \(fmt(i.bitrate / 1000, 0)) kbit/s  frames \(i.framesReceived)  lost \(i.packetsLost)  jitter \(fmt(i.jitter * 1000, 1)) ms")
        }
        for o in s.outbound where o.kind == "audio" {
            lines.append("  audio out: \(fmt(o.bitrate / 1000, 0)) kbit/s  packets \(o.packetsSent)  mic overruns \(f.microphoneOverruns)")
        }
        for i in s.inbound where i.kind == "audio" {
            lines.append("  audio in:  \(fmt(i.bitrate / 1000, 0)) kbit/s  packets \(i.packetsReceived) decoded \(f.audioPacketsDecoded)  lost \(i.packetsLost)  "
                         + "concealed \(fmt(Double(f.audioConcealedSamples) / 48, 0)) ms  jitter buffer \(fmt(f.jitterBufferDelayMs, 0))/\(fmt(f.jitterBufferTargetMs, 0)) ms  "
                         + "level \(fmt(f.audioLevel, 2))  speaker underruns \(f.speakerUnderruns)")
        }
        if let v = f.video, let d = screen?.figures {
            let dec = percentile(v.decodeMs.suffix(300).map { $0 }, 50).map { fmt($0, 1) + " ms" } ?? "-"
            let g2g = percentile(d.glassToGlassMs.suffix(300).map { $0 }, 50).map { fmt($0, 1) + " ms" } ?? "-"
            let sync = percentile(v.syncOffsetMs.suffix(300).map { $0 }, 50).map { fmt($0, 1) + " ms" } ?? "-"
            lines.append("  screen:    \(d.display)  shows \(d.content)  decoded \(v.decoded) (\(v.decoder), p50 \(dec))  errors \(v.decodeErrors)  "
                         + "keyframe requests \(v.keyframeRequests)  glass→glass p50 \(g2g)  lip sync p50 \(sync)")
        }
        let rtt = s.candidatePair.currentRoundTripTime.map { fmt($0 * 1000, 2) + " ms" } ?? "-"
        let lat = percentile(f.captureToFrameMs.suffix(300).map { $0 }, 50).map { fmt($0, 1) + " ms" } ?? "-"
        let wire = percentile(pc.captureToWireSamples.suffix(300).map { $0 }, 50).map { fmt($0, 1) + " ms" } ?? "-"
        lines.append("  RTT \(rtt)   capture→wire p50 \(wire)   capture→frame here p50 \(lat)   malformed \(s.malformedDatagrams)")
        return lines.joined(separator: "\n") + "\n" + brokerLine
    }
}

/// `value` with `digits` decimals, without Foundation ("-" when not finite).
public func fmt(_ value: Double, _ digits: Int) -> String {
    guard value.isFinite else { return "-" }
    var p = 1.0
    for _ in 0..<digits { p *= 10 }
    let r = (value * p).rounded() / p
    if digits == 0 { return String(Int64(r)) }
    let whole = Int64(r.magnitude)
    var frac = String(Int64(((r.magnitude - Double(whole)) * p).rounded()))
    while frac.count < digits { frac = "0" + frac }
    return (r < 0 ? "-" : "") + "\(whole).\(frac)"
}
