/// What this endpoint puts into an offer or answer.
public struct LocalParameters: Sendable {
    public var iceUfrag: String
    public var icePwd: String
    /// `sha-256` fingerprint of our DTLS certificate, colon-separated upper-case hex.
    public var fingerprint: String
    /// `a=candidate` values already gathered.
    public var candidates: [String]
    /// True when all candidates are in the description (no trickling follows).
    public var endOfCandidates: Bool
    public var audioSSRC: UInt32
    public var videoSSRC: UInt32
    public var cname: String
    public var streamID: String
    public var sendAudio = true
    public var sendVideo = true
    /// The SSRC our video retransmissions go out on (RFC 4588), 0: no RTX offered.
    public var videoRTXSSRC: UInt32 = 0
    /// H.264 profile-level-ids to offer, preferred first.
    public var h264Profiles: [String] = ["42e01f", "42001f"]

    public init(iceUfrag: String, icePwd: String, fingerprint: String, candidates: [String], endOfCandidates: Bool,
                audioSSRC: UInt32, videoSSRC: UInt32, cname: String, streamID: String) {
        self.iceUfrag = iceUfrag; self.icePwd = icePwd; self.fingerprint = fingerprint
        self.candidates = candidates; self.endOfCandidates = endOfCandidates
        self.audioSSRC = audioSSRC; self.videoSSRC = videoSSRC; self.cname = cname; self.streamID = streamID
    }
}

/// One negotiated media section.
public struct NegotiatedMedia: Equatable, Sendable {
    public var mid: String
    public var codec: Codec
    /// Header extension IDs both sides use, by URI.
    public var extensions: [String: UInt8]
    /// SSRCs the peer announced (may be empty: learn from packets).
    public var remoteSSRCs: [UInt32]
    /// Whether we send and receive on this section.
    public var send: Bool
    public var receive: Bool

    /// Whether both sides use transport-wide congestion control feedback on this section:
    /// the header extension and `a=rtcp-fb:* transport-cc`.
    public var transportCC: Bool { codec.feedback.contains("transport-cc") && extensions[JSEP.transportWideCCURI] != nil }
    /// Whether the peer answers and sends generic NACKs.
    public var nack: Bool { codec.feedback.contains("nack") }
    /// The RTX payload type for `codec` (RFC 4588 `apt`), when both sides use RTX.
    public var rtxPayloadType: UInt8? = nil
    /// The peer's retransmission SSRCs (`a=ssrc-group:FID primary rtx`).
    public var remoteRTXSSRCs: [UInt32] = []
}

/// The result of offer/answer: what the transport and media need to know about the peer.
public struct NegotiatedSession: Sendable {
    public var remoteUfrag: String
    public var remotePwd: String
    /// Hash algorithm (lower case) and digest of the peer's certificate.
    public var remoteFingerprint: (algorithm: String, digest: [UInt8])
    /// True when we take the DTLS client role.
    public var dtlsClient: Bool
    public var remoteCandidates: [String]
    public var audio: NegotiatedMedia?
    public var video: NegotiatedMedia?
    /// The H.264 profile-level-id agreed (what our SPS must say).
    public var h264ProfileLevelID: String? { video?.codec.parameter("profile-level-id") }
}

/// Offer/answer per JSEP (RFC 9429) for one audio (Opus) and one video (H.264) section,
/// BUNDLEd with rtcp-mux.
public enum JSEP {
    static let extensionsOffered: [(UInt8, String)] = [
        (1, "urn:ietf:params:rtp-hdrext:sdes:mid"),
        (2, "http://www.webrtc.org/experiments/rtp-hdrext/abs-capture-time"),
        (3, transportWideCCURI),
    ]
    /// The transport-wide sequence number header extension (congestion control feedback).
    public static let transportWideCCURI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
    /// The feedback this stack sends and acts on.
    static let videoFeedback = ["nack", "nack pli", "ccm fir", "transport-cc"]

    /// The RTX codec for `primary` (payload type `pt`).
    static func rtxCodec(_ pt: UInt8, for primary: UInt8) -> Codec {
        Codec(payloadType: pt, name: "rtx", clockRate: 90000, parameters: [("apt", String(primary))], feedback: [])
    }

    /// The offered RTX format whose `apt` is `primary`.
    static func rtx(in codecs: [Codec], for primary: UInt8) -> Codec? {
        codecs.first { $0.name.lowercased() == "rtx" && $0.clockRate == 90000 && $0.parameter("apt").flatMap { UInt8($0) } == primary }
    }

    /// Retransmission SSRCs from `a=ssrc-group:FID primary rtx` lines.
    static func fidSSRCs(_ m: MediaDescription) -> [UInt32] {
        m.values("ssrc-group").compactMap { v -> UInt32? in
            let parts = v.split(separator: " ")
            guard parts.count >= 3, parts[0] == "FID" else { return nil }
            return UInt32(parts[2])
        }
    }
    static let opusPT: UInt8 = 111
    static let h264FirstPT: UInt8 = 102

    /// Makes an offer with `a=setup:actpass`.
    public static func makeOffer(_ local: LocalParameters, sessionID: UInt64) -> SessionDescription {
        var sd = SessionDescription(origin: "- \(sessionID) 2 IN IP4 127.0.0.1")
        sd.attributes = [SDPAttribute("group", "BUNDLE 0 1"), SDPAttribute("msid-semantic", " WMS \(local.streamID)")]
        let opus = Codec(payloadType: opusPT, name: "opus", clockRate: 48000, channels: 2,
                         parameters: [("minptime", "10"), ("useinbandfec", "1")], feedback: ["transport-cc"])
        sd.media.append(section(kind: "audio", mid: "0", codecs: [opus], local: local, setup: "actpass",
                                extensions: extensionsOffered, ssrc: local.audioSSRC, direction: direction(local.sendAudio, true)))
        let h264 = local.h264Profiles.enumerated().flatMap { i, p -> [Codec] in
            let pt = h264FirstPT + UInt8(i) * 2
            let codec = Codec(payloadType: pt, name: "H264", clockRate: 90000,
                              parameters: [("level-asymmetry-allowed", "1"), ("packetization-mode", "1"), ("profile-level-id", p)],
                              feedback: videoFeedback)
            return local.videoRTXSSRC != 0 ? [codec, rtxCodec(pt + 1, for: pt)] : [codec]
        }
        sd.media.append(section(kind: "video", mid: "1", codecs: h264, local: local, setup: "actpass",
                                extensions: extensionsOffered, ssrc: local.videoSSRC, direction: direction(local.sendVideo, true)))
        return sd
    }

    /// Answers `offer`; we take `a=setup:active` (DTLS client) unless the offer is active.
    public static func answer(offer: SessionDescription, local: LocalParameters, sessionID: UInt64) throws(SDPError) -> (SessionDescription, NegotiatedSession) {
        let transport = try remoteTransport(offer)
        let remoteSetup = offer.attribute("setup", media: 0) ?? "actpass"
        let ourSetup = remoteSetup == "active" ? "passive" : "active"
        var sd = SessionDescription(origin: "- \(sessionID) 2 IN IP4 127.0.0.1")
        var audio: NegotiatedMedia? = nil
        var video: NegotiatedMedia? = nil
        var mids: [String] = []
        var reasons: [String] = []
        // mids name the sections (BUNDLE, RTP mid header extension): they must be unique
        // (RFC 8843 §9.1), or the BUNDLE tag could name a section we reject.
        let offeredMids = offer.media.enumerated().map { $1.mid ?? String($0) }
        guard Set(offeredMids).count == offeredMids.count else {
            throw SDPError("offer has duplicate a=mid values [\(offeredMids.joined(separator: ", "))]")
        }
        // A mid is one token (RFC 5888 identification-tag): one with a space would split
        // into several tags in our a=group:BUNDLE line and name another section.
        if let (index, bad) = offeredMids.enumerated().first(where: { !isToken($1, 1...256) }) {
            throw SDPError("offer section \(index) has a=mid '\(bad.prefix(40))', which is not one token of 1 to 256 characters")
        }
        for (index, m) in offer.media.enumerated() {
            let mid = offeredMids[index]
            let offeredExt = m.headerExtensions
            let ext = extensionsOffered.compactMap { (_, uri) -> (UInt8, String)? in offeredExt[uri].map { ($0, uri) } }
            let peerSends = m.direction == "sendrecv" || m.direction == "sendonly"
            let peerReceives = m.direction == "sendrecv" || m.direction == "recvonly"
            var chosen: Codec? = nil
            if m.kind == "audio" && audio == nil && m.port != 0 || (m.kind == "audio" && audio == nil && m.has("bundle-only")) {
                chosen = m.codecs.first { $0.name.lowercased() == "opus" && $0.clockRate == 48000 }
                if chosen == nil { reasons.append("audio: no Opus/48000 in [\(m.codecs.map(\.name).joined(separator: ", "))]") }
            } else if m.kind == "video" && video == nil && (m.port != 0 || m.has("bundle-only")) {
                chosen = chooseH264(m.codecs)
                if chosen == nil { reasons.append("video: no H.264 packetization-mode=1 in [\(m.codecs.map(\.name).joined(separator: ", "))]") }
            }
            guard var codec = chosen else {
                // Reject the section (port 0), keeping its m= line as JSEP requires.
                sd.media.append(MediaDescription(kind: m.kind, port: 0, proto: m.proto, formats: m.formats.prefix(1).map { $0 },
                                                 attributes: [SDPAttribute("mid", mid), SDPAttribute("inactive")]))
                continue
            }
            let weSend = m.kind == "audio" ? local.sendAudio : local.sendVideo
            // transport-cc only with its header extension: one without the other is useless.
            codec.feedback = codec.feedback.filter { fb in
                videoFeedback.contains(fb) && (fb != "transport-cc" || offeredExt[transportWideCCURI] != nil) && (m.kind == "video" || fb == "transport-cc")
            }
            if m.kind == "audio" {
                codec.parameters = [("minptime", "10"), ("useinbandfec", "1")]
            } else {
                let plid = codec.parameter("profile-level-id") ?? "42e01f"
                codec.parameters = [("level-asymmetry-allowed", "1"), ("packetization-mode", "1"), ("profile-level-id", plid)]
            }
            let dir = direction(weSend && peerReceives, peerSends)
            // RTX for the chosen format when the peer offers it and we have an RTX SSRC.
            let rtx = m.kind == "video" && local.videoRTXSSRC != 0 ? JSEP.rtx(in: m.codecs, for: codec.payloadType) : nil
            var answerLocal = local
            if rtx == nil { answerLocal.videoRTXSSRC = 0 }
            sd.media.append(section(kind: m.kind, mid: mid, codecs: [codec] + (rtx.map { [rtxCodec($0.payloadType, for: codec.payloadType)] } ?? []),
                                    local: answerLocal, setup: ourSetup,
                                    extensions: ext, ssrc: m.kind == "audio" ? local.audioSSRC : local.videoSSRC, direction: dir))
            mids.append(mid)
            let fid = fidSSRCs(m)
            var nm = NegotiatedMedia(mid: mid, codec: codec, extensions: Dictionary(uniqueKeysWithValues: ext.map { ($0.1, $0.0) }),
                                     remoteSSRCs: m.ssrcs.filter { !fid.contains($0) }, send: weSend && peerReceives, receive: peerSends)
            nm.rtxPayloadType = rtx?.payloadType
            nm.remoteRTXSSRCs = fid
            if m.kind == "audio" { audio = nm } else { video = nm }
        }
        guard audio != nil || video != nil else {
            throw SDPError("no usable codec: " + (reasons.isEmpty ? "offer has no audio or video section" : reasons.joined(separator: "; ")))
        }
        sd.attributes = [SDPAttribute("group", "BUNDLE " + mids.joined(separator: " ")),
                         SDPAttribute("msid-semantic", " WMS \(local.streamID)")]
        let session = NegotiatedSession(remoteUfrag: transport.ufrag, remotePwd: transport.pwd, remoteFingerprint: transport.fingerprint,
                                        dtlsClient: ourSetup == "active", remoteCandidates: transport.candidates, audio: audio, video: video)
        return (sd, session)
    }

    /// Reads the answer to our offer.
    public static func acceptAnswer(_ answer: SessionDescription, local: LocalParameters) throws(SDPError) -> NegotiatedSession {
        let transport = try remoteTransport(answer)
        let setup = answer.attribute("setup", media: transportSection(answer)) ?? "active"
        guard setup == "active" || setup == "passive" else { throw SDPError("answer has a=setup:\(setup); expected active or passive") }
        var audio: NegotiatedMedia? = nil
        var video: NegotiatedMedia? = nil
        for m in answer.media where m.port != 0 || m.has("bundle-only") {
            let peerSends = m.direction == "sendrecv" || m.direction == "sendonly"
            let peerReceives = m.direction == "sendrecv" || m.direction == "recvonly"
            let mid = m.mid ?? ""
            if m.kind == "audio", let c = m.codecs.first(where: { $0.name.lowercased() == "opus" }) {
                audio = NegotiatedMedia(mid: mid, codec: c, extensions: m.headerExtensions, remoteSSRCs: m.ssrcs,
                                        send: local.sendAudio && peerReceives, receive: peerSends)
            } else if m.kind == "video", let c = m.codecs.first(where: { $0.name.lowercased() == "h264" }) {
                let fid = fidSSRCs(m)
                video = NegotiatedMedia(mid: mid, codec: c, extensions: m.headerExtensions, remoteSSRCs: m.ssrcs.filter { !fid.contains($0) },
                                        send: local.sendVideo && peerReceives, receive: peerSends)
                if local.videoRTXSSRC != 0 { video?.rtxPayloadType = rtx(in: m.codecs, for: c.payloadType)?.payloadType }
                video?.remoteRTXSSRCs = fid
            }
        }
        guard audio != nil || video != nil else { throw SDPError("answer accepted no media section") }
        return NegotiatedSession(remoteUfrag: transport.ufrag, remotePwd: transport.pwd, remoteFingerprint: transport.fingerprint,
                                 dtlsClient: setup == "passive", remoteCandidates: transport.candidates, audio: audio, video: video)
    }

    /// Picks the H.264 format to answer with: the first offered with packetization-mode=1
    /// whose profile our encoder can produce a conforming stream for (Constrained Baseline
    /// satisfies Baseline, Main and High decoders), Baseline family first.
    static func chooseH264(_ codecs: [Codec]) -> Codec? {
        let h264 = codecs.filter { $0.name.lowercased() == "h264" && $0.clockRate == 90000 && $0.parameter("packetization-mode") == "1" }
        func profileIDC(_ c: Codec) -> String { String((c.parameter("profile-level-id") ?? "42e01f").prefix(2)).lowercased() }
        return h264.first { profileIDC($0) == "42" } ?? h264.first { ["4d", "64"].contains(profileIDC($0)) }
    }

    static func direction(_ send: Bool, _ receive: Bool) -> String {
        switch (send, receive) {
        case (true, true): return "sendrecv"
        case (true, false): return "sendonly"
        case (false, true): return "recvonly"
        case (false, false): return "inactive"
        }
    }

    static func section(kind: String, mid: String, codecs: [Codec], local: LocalParameters, setup: String,
                        extensions: [(UInt8, String)], ssrc: UInt32, direction: String) -> MediaDescription {
        var m = MediaDescription(kind: kind, formats: codecs.map { String($0.payloadType) })
        var a: [SDPAttribute] = [
            SDPAttribute("rtcp", "9 IN IP4 0.0.0.0"),
            SDPAttribute("ice-ufrag", local.iceUfrag),
            SDPAttribute("ice-pwd", local.icePwd),
            SDPAttribute("ice-options", "trickle"),
            SDPAttribute("fingerprint", "sha-256 \(local.fingerprint)"),
            SDPAttribute("setup", setup),
            SDPAttribute("mid", mid),
        ]
        a += extensions.map { SDPAttribute("extmap", "\($0.0) \($0.1)") }
        a.append(SDPAttribute(direction))
        let track = "\(local.streamID)-\(kind)"
        if direction == "sendrecv" || direction == "sendonly" { a.append(SDPAttribute("msid", "\(local.streamID) \(track)")) }
        a.append(SDPAttribute("rtcp-mux"))
        a.append(SDPAttribute("rtcp-rsize"))
        for c in codecs {
            let ch = c.channels > 1 ? "/\(c.channels)" : ""
            a.append(SDPAttribute("rtpmap", "\(c.payloadType) \(c.name)/\(c.clockRate)\(ch)"))
            for fb in c.feedback { a.append(SDPAttribute("rtcp-fb", "\(c.payloadType) \(fb)")) }
            if !c.parameters.isEmpty { a.append(SDPAttribute("fmtp", "\(c.payloadType) \(c.fmtpLine)")) }
        }
        if direction == "sendrecv" || direction == "sendonly" {
            let rtx = kind == "video" && local.videoRTXSSRC != 0 && codecs.contains { $0.name == "rtx" }
            if rtx { a.append(SDPAttribute("ssrc-group", "FID \(ssrc) \(local.videoRTXSSRC)")) }
            a.append(SDPAttribute("ssrc", "\(ssrc) cname:\(local.cname)"))
            a.append(SDPAttribute("ssrc", "\(ssrc) msid:\(local.streamID) \(track)"))
            if rtx {
                a.append(SDPAttribute("ssrc", "\(local.videoRTXSSRC) cname:\(local.cname)"))
                a.append(SDPAttribute("ssrc", "\(local.videoRTXSSRC) msid:\(local.streamID) \(track)"))
            }
        }
        a += local.candidates.map { SDPAttribute("candidate", $0) }
        if local.endOfCandidates { a.append(SDPAttribute("end-of-candidates")) }
        m.attributes = a
        return m
    }

    struct RemoteTransport {
        var ufrag: String
        var pwd: String
        var fingerprint: (algorithm: String, digest: [UInt8])
        var candidates: [String]
    }

    /// The section whose transport the BUNDLE group uses: the first mid of `a=group:BUNDLE`
    /// when a section has it, else the first section not rejected (port 0 without
    /// bundle-only), else the first. An answer that rejects the first offered section
    /// carries no ICE credentials there (JSEP §5.3.1).
    static func transportSection(_ sd: SessionDescription) -> Int {
        if let group = sd.values("group").first(where: { $0.hasPrefix("BUNDLE ") }),
           let tag = group.split(separator: " ").dropFirst().first,
           let i = sd.media.firstIndex(where: { $0.mid == String(tag) }) {
            return i
        }
        return sd.media.firstIndex { $0.port != 0 || $0.has("bundle-only") } ?? 0
    }

    /// ICE credentials, fingerprint and candidates of the BUNDLE-tagged section.
    static func remoteTransport(_ sd: SessionDescription) throws(SDPError) -> RemoteTransport {
        guard !sd.media.isEmpty else { throw SDPError("no m= sections") }
        let t = transportSection(sd)
        guard let ufrag = sd.attribute("ice-ufrag", media: t), !ufrag.isEmpty else { throw SDPError("no a=ice-ufrag") }
        guard let pwd = sd.attribute("ice-pwd", media: t), pwd.count >= 22 else { throw SDPError("no a=ice-pwd of at least 22 characters") }
        // RFC 8839 §5.4: 4–256 (ufrag) and 22–256 (pwd) ice-chars; they go into every STUN
        // USERNAME and key, so nothing else is taken.
        guard isICEChars(ufrag, 4...256) else { throw SDPError("a=ice-ufrag must be 4 to 256 of A-Z a-z 0-9 + / (got \(ufrag.utf8.count) bytes)") }
        guard isICEChars(pwd, 22...256) else { throw SDPError("a=ice-pwd must be 22 to 256 of A-Z a-z 0-9 + / (got \(pwd.utf8.count) bytes)") }
        if let setup = sd.attribute("setup", media: t), !["actpass", "active", "passive"].contains(setup) {
            throw SDPError("a=setup:\(setup.prefix(20)) is not actpass, active or passive")
        }
        guard let fp = sd.attribute("fingerprint", media: t) else { throw SDPError("no a=fingerprint: DTLS cannot be authenticated") }
        let parts = fp.split(separator: " ")
        guard parts.count == 2, let digest = decodeHex(String(parts[1])), digest.count >= 20 else {
            throw SDPError("malformed a=fingerprint '\(fp)'")
        }
        let alg = parts[0].lowercased()
        guard ["sha-1", "sha-256", "sha-384", "sha-512"].contains(alg) else { throw SDPError("unsupported fingerprint hash '\(alg)'") }
        var candidates: [String] = []
        for m in sd.media { candidates += m.values("candidate") }
        return RemoteTransport(ufrag: ufrag, pwd: pwd, fingerprint: (alg, digest), candidates: candidates)
    }

    static func decodeHex(_ s: String) -> [UInt8]? {
        var out: [UInt8] = []
        for part in s.split(separator: ":") {
            guard part.count == 2, let b = UInt8(part, radix: 16) else { return nil }
            out.append(b)
        }
        return out
    }
}

/// Whether `s` is one SDP token (RFC 8866 §9: visible ASCII but for separators) of `range`
/// bytes.
public func isToken(_ s: String, _ range: ClosedRange<Int>) -> Bool {
    range.contains(s.utf8.count) && s.utf8.allSatisfy { b in isASCIIAlphanumeric(b) || "!#$%&'*+-.^_`{|}~".utf8.contains(b) }
}

private func isASCIIAlphanumeric(_ b: UInt8) -> Bool {
    (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39)
}

/// Whether `s` is `range` ice-chars long (RFC 8839: ALPHA / DIGIT / "+" / "/").
public func isICEChars(_ s: String, _ range: ClosedRange<Int>) -> Bool {
    range.contains(s.utf8.count) && s.utf8.allSatisfy { b in isASCIIAlphanumeric(b) || b == 0x2B || b == 0x2F }
}
