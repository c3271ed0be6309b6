import NetworkCore

/// The device's status for people and dashboards: JSON for `GET /status` and the control
/// socket, readable lines for `videophonectl status` (see StatusText.swift).
/// The version of the `status --json` format (docs/STATUS-JSON.md): raised only when a
/// field is removed or changes meaning; new fields come without a change.
public enum StatusFormat {
    public static let version = 1
}

extension Device {
    /// `GET /status` and `videophonectl status --json`: call state and W3C-named
    /// statistics. Without `full` (a request with no valid token) it says only what the
    /// device is doing: no call id, peer address, candidate or fingerprint of the peer.
    public func statusJSON(full: Bool = true) -> String {
        let (c, last) = snapshot
        var j = JSONWriter()
        j.beginObject()
        j.field("format", StatusFormat.version)
        j.field("device", config.name)
        let phase = self.phase
        j.field("state", phase.name)
        if full, let p = phase.peer { j.field("peer", p) }
        j.field("led", leds.pattern.rawValue)
        j.beginArray("faults")
        for f in currentFaults { j.value(f.rawValue) }
        j.endArray()
        j.field("fingerprint", "sha-256 " + identity.fingerprint)
        if let m = mdns?.counters {
            j.beginObject("mdns")
            j.field("queriesAnswered", m.queriesAnswered)
            j.field("namesResolved", m.namesResolved)
            j.endObject()
        }
        if full, let broker = signalling.broker {
            let b = broker.snapshot
            j.beginObject("broker")
            j.field("connected", b.url != nil)
            j.field("url", b.url?.description)
            j.field("standby", broker.standbyURL?.description)
            j.field("inbox", broker.inbox)
            j.field("connects", b.traffic.connects)
            j.field("bytesSent", b.traffic.out)
            j.field("bytesReceived", b.traffic.in)
            let rtt = broker.roundTrips
            j.field("roundTrips", rtt.count)
            j.field("roundTripP50Ms", percentile(rtt, 50))
            j.beginObject("peers")
            for (name, p) in b.presence.sorted(by: { $0.key < $1.key }) { j.field(name, p.rawValue) }
            j.endObject()
            j.beginObject("refused")
            for (reason, n) in b.refused.sorted(by: { $0.key < $1.key }) { j.field(reason, n) }
            j.endObject()
            j.endObject()
        }
        if let screen {
            let d = screen.figures
            j.beginObject("display")
            j.field("output", d.display)
            j.field("shows", d.content)
            j.beginArray("textRegions")
            for r in d.regions {
                j.beginObject()
                j.field("text", r.text)
                j.field("x", r.rect.x); j.field("y", r.rect.y); j.field("width", r.rect.width); j.field("height", r.rect.height)
                j.endObject()
            }
            j.endArray()
            j.field("flips", d.flips)
            j.field("videoFlips", d.videoFlips)
            j.field("glassToGlassP50Ms", percentile(d.glassToGlassMs, 50))
            j.field("glassToGlassP95Ms", percentile(d.glassToGlassMs, 95))
            j.endObject()
        }
        guard full else {
            if c != nil { j.field("inCall", true) }
            j.endObject()
            return j.text
        }
        audioProcessingJSON(&j)
        if let last {
            j.beginObject("lastCall")
            j.field("id", last.id); j.field("peer", last.peer); j.field("endReason", last.endReason)
            j.endObject()
        }
        if let c {
            let s = c.pc.stats
            let f = c.media.figures
            j.beginObject("call")
            j.field("id", c.id)
            j.field("peer", c.peerName)
            j.field("direction", c.outgoing ? "outgoing" : "incoming")
            j.field("videoCodec", c.videoCodec)
            j.field("iceState", s.iceState)
            j.field("dtlsState", s.dtlsState)
            j.beginObject("setup")
            let t = s.timeline
            j.field("signalling", t.milliseconds(t.remoteDescription))
            j.field("ice", t.milliseconds(t.iceConnected))
            j.field("dtls", t.milliseconds(t.dtlsConnected))
            j.field("firstMediaSent", t.milliseconds(t.firstMediaSent))
            j.field("firstVideoFrameQueued", t.milliseconds(t.firstVideoFrameQueued))
            j.field("firstVideoPacketReceived", t.milliseconds(t.firstVideoPacketReceived))
            j.field("firstVideoFrameReceived", t.milliseconds(t.firstVideoFrameReceived))
            j.field("firstAudioReceived", t.milliseconds(t.firstAudioReceived))
            j.endObject()
            j.beginArray("stats")
            for i in s.inbound {
                j.beginObject()
                j.field("type", "inbound-rtp"); j.field("kind", i.kind); j.field("ssrc", i.ssrc)
                j.field("packetsReceived", i.packetsReceived); j.field("packetsLost", i.packetsLost)
                j.field("jitter", i.jitter); j.field("bytesReceived", i.bytesReceived)
                if i.kind == "video" {
                    j.field("framesReceived", i.framesReceived); j.field("framesDropped", i.framesDropped)
                    j.field("keyFramesReceived", i.keyFramesReceived); j.field("framesPerSecond", i.framesPerSecond)
                    j.field("nackCount", i.nackCount); j.field("pliCount", i.pliCount)
                    j.field("retransmittedPacketsReceived", i.retransmittedPacketsReceived)
                    j.field("freezeCount", i.freezeCount); j.field("totalFreezesDuration", i.totalFreezesDuration)
                    j.field("longestFreezeDuration", i.longestFreezeDuration)
                    j.field("endToEndDelayP50Ms", i.endToEndDelayP50Ms); j.field("endToEndDelayP95Ms", i.endToEndDelayP95Ms)
                } else {
                    j.field("packetsDecoded", f.audioPacketsDecoded)
                    // W3C meanings; the delays are the present values in ms (W3C's are sums).
                    j.field("concealedSamples", f.audioConcealedSamples)
                    j.field("packetsDiscarded", f.audioLatePackets + f.audioDiscardedPackets)
                    j.field("fecPacketsRecovered", f.audioRecoveredByFEC)
                    j.field("jitterBufferTargetMs", f.jitterBufferTargetMs)
                    j.field("jitterBufferDelayMs", f.jitterBufferDelayMs)
                    j.field("audioLevel", (f.audioLevel * 1000).rounded() / 1000)
                    j.field("totalAudioEnergy", f.totalAudioEnergy)
                    j.field("totalSamplesDuration", f.totalSamplesDuration)
                    j.field("speakerUnderruns", f.speakerUnderruns)
                }
                j.field("bitrate", i.bitrate)
                j.endObject()
            }
            for o in s.outbound {
                j.beginObject()
                j.field("type", "outbound-rtp"); j.field("kind", o.kind); j.field("ssrc", o.ssrc)
                j.field("packetsSent", o.packetsSent); j.field("bytesSent", o.bytesSent)
                if o.kind == "video" {
                    j.field("framesEncoded", o.framesEncoded); j.field("keyFramesEncoded", o.keyFramesEncoded)
                    j.field("targetBitrate", Double(s.targetVideoBitrateKbps * 1000))
                    j.field("lossBasedEstimate", Double(s.lossBasedKbps * 1000))
                    j.field("delayBasedEstimate", s.delayBasedKbps.map { Double($0 * 1000) })
                    j.field("queueDelayMs", s.queueDelayMs)
                    j.field("pacingRate", o.pacingRate); j.field("pacerQueueBytes", o.pacerQueueBytes)
                    j.field("framesDroppedBeforeSend", o.framesDroppedBeforeSend)
                    j.field("probeClusters", o.probeClusters); j.field("paddingBytesSent", o.paddingBytesSent)
                    j.field("frameWidth", o.frameWidth); j.field("frameHeight", o.frameHeight)
                    j.field("framesPerSecond", o.framesPerSecond)
                    j.field("encoderImplementation", f.encoderImplementation)
                    j.field("retransmittedPacketsSent", o.retransmittedPacketsSent)
                    j.field("retransmissionsRefused", o.retransmissionsRefused)
                    j.field("nackCount", o.nackCount); j.field("pliCount", o.pliCount); j.field("firCount", o.firCount)
                } else {
                    j.field("microphoneOverruns", f.microphoneOverruns)
                }
                j.field("bitrate", o.bitrate)
                j.endObject()
            }
            j.beginObject()
            j.field("type", "candidate-pair")
            j.field("state", s.iceState == "connected" ? "succeeded" : s.iceState)
            j.field("nominated", s.candidatePair.nominated)
            j.field("localCandidateType", s.candidatePair.localCandidateType)
            j.field("remoteCandidateType", s.candidatePair.remoteCandidateType)
            j.field("localAddress", s.candidatePair.localAddress)
            j.field("remoteAddress", s.candidatePair.remoteAddress)
            j.field("currentRoundTripTime", s.candidatePair.currentRoundTripTime)
            j.field("availableOutgoingBitrate", s.candidatePair.availableOutgoingBitrate)
            j.endObject()
            j.endArray()
            j.beginObject("media")
            j.field("framesReceived", f.framesReceived)
            j.field("audioPacketsDecoded", f.audioPacketsDecoded)
            j.field("audioSamplesPlayed", f.audioSamplesPlayed)
            j.field("captureToFrameP50Ms", percentile(f.captureToFrameMs, 50))
            j.field("captureToWireP50Ms", percentile(c.pc.captureToWireSamples, 50))
            j.field("encodeP50Ms", percentile(f.encodeMs, 50))
            if let v = f.video {
                j.field("videoDecoder", v.decoder)
                j.field("videoFramesDecoded", v.decoded)
                j.field("videoDecodeErrors", v.decodeErrors)
                j.field("videoFramesConcealed", v.concealed)
                j.field("videoKeyframeRequests", v.keyframeRequests)
                j.field("videoFramesDroppedBeforeDecode", v.dropped)
                j.field("videoFramesLipSynced", v.lipSynced)
                j.field("videoFramesLate", v.late)
                j.field("videoFramesNotDrawn", v.skipped)
                j.field("videoJitterBufferMs", v.jitterBufferMs)
                j.field("decodeP50Ms", percentile(v.decodeMs, 50))
                j.field("lipSyncOffsetP50Ms", percentile(v.syncOffsetMs, 50))
                j.field("lipSyncOffsetP95Ms", percentile(v.syncOffsetMs, 95))
                j.field("lipSyncOffsetP5Ms", percentile(v.syncOffsetMs, 5))
                // The broadcast window (ITU-R BT.1359): audio at most 45 ms ahead, 125 ms behind.
                j.field("lipSyncInWindow", v.syncOffsetMs.isEmpty ? nil
                        : Double(v.syncOffsetMs.count { (-125.0...45.0).contains($0) }) / Double(v.syncOffsetMs.count))
            }
            j.endObject()
            j.field("mdnsResolved", s.mdnsResolved)
            j.field("stunIgnored", s.ignoredSTUN)
            j.field("malformedDatagrams", s.malformedDatagrams)
            j.field("srtpFailures", s.srtpFailures)
            j.field("ignoredCandidates", s.ignoredCandidates)
            j.field("refusedDTLS", s.refusedDTLS)
            j.field("refusedSSRCPackets", s.refusedSSRCPackets)
            j.endObject()
        }
        j.endObject()
        return j.text
    }

}
