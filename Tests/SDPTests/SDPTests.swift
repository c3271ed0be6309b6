import Foundation
import Testing
@testable import SDP
#if canImport(Glibc)
import Glibc
#endif

func fixture(_ name: String) throws -> String {
    let url = try #require(Bundle.module.url(forResource: name, withExtension: "sdp", subdirectory: "Fixtures"))
    return try String(contentsOf: url, encoding: .utf8)
}


let local = LocalParameters(iceUfrag: "abcd", icePwd: "0123456789012345678901234", fingerprint: "AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99",
                            candidates: ["1 1 udp 2130706431 192.0.2.1 5000 typ host generation 0"], endOfCandidates: true,
                            audioSSRC: 11, videoSSRC: 22, cname: "dev", streamID: "dev")

@Suite struct SDPParsingTests {
    @Test(arguments: ["chrome-offer", "firefox-offer"])
    func realOffersSurviveAParseSerializeParseRoundTrip(name: String) throws {
        let text = try fixture(name)
        let sd = try SessionDescription(parsing: text)
        #expect(sd.media.count == 2)
        let again = try SessionDescription(parsing: sd.text)
        #expect(again == sd)
    }

    @Test func chromeOfferIsAnsweredWithItsFirstModeOneBaselineH264AndOpus() throws {
        let offer = try SessionDescription(parsing: try fixture("chrome-offer"))
        let (answer, session) = try JSEP.answer(offer: offer, local: local, sessionID: 1)
        #expect(session.video?.codec.payloadType == 102)
        #expect(session.h264ProfileLevelID == "42001f")
        #expect(session.audio?.codec.payloadType == 111)
        #expect(session.dtlsClient)
        #expect(session.remoteUfrag == "Wr8P")
        #expect(session.remoteCandidates.count == 2)
        #expect(session.remoteFingerprint.algorithm == "sha-256")
        #expect(session.video?.extensions["urn:ietf:params:rtp-hdrext:sdes:mid"] == 4)
        let text = answer.text
        #expect(text.contains("a=setup:active"))
        #expect(text.contains("a=group:BUNDLE 0 1"))
        #expect(text.contains("a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f"))
        #expect(text.contains("a=fmtp:111 minptime=10;useinbandfec=1"))
        #expect(text.contains("a=rtcp-fb:102 nack pli"))
        #expect(text.contains("a=rtcp-fb:102 ccm fir"))
        #expect(text.contains("a=rtcp-mux"))
        #expect(!text.contains("VP8"))
        // The answer is itself valid SDP that our offerer side accepts.
        let back = try JSEP.acceptAnswer(try SessionDescription(parsing: text), local: local)
        #expect(back.video?.codec.payloadType == 102)
        #expect(!back.dtlsClient)
    }

    /// RFC 4588: Chromium offers an `rtx` format per video format (`apt=`) and an
    /// `a=ssrc-group:FID`; the answer keeps the one for the chosen H.264 and names our RTX
    /// SSRC; the peer's RTX SSRC is not taken as a video stream.
    @Test func rtxIsNegotiatedForTheChosenFormat() throws {
        var lp = local
        lp.videoRTXSSRC = 33
        let offer = try SessionDescription(parsing: try fixture("chrome-offer"))
        let (answer, session) = try JSEP.answer(offer: offer, local: lp, sessionID: 1)
        #expect(session.video?.codec.payloadType == 102)
        #expect(session.video?.rtxPayloadType == 103)
        #expect(session.video?.remoteSSRCs == [2864434397])
        #expect(session.video?.remoteRTXSSRCs == [4008636142])
        let text = answer.text
        #expect(text.contains("a=rtpmap:103 rtx/90000"))
        #expect(text.contains("a=fmtp:103 apt=102"))
        #expect(text.contains("a=ssrc-group:FID 22 33"))
        // Without an RTX SSRC of our own, no RTX is answered.
        let (plain, plainSession) = try JSEP.answer(offer: offer, local: local, sessionID: 1)
        #expect(plainSession.video?.rtxPayloadType == nil)
        #expect(!plain.text.contains("rtx"))
        // Our own offer, answered by ourselves, both ways.
        let ours = JSEP.makeOffer(lp, sessionID: 2)
        #expect(ours.text.contains("a=fmtp:103 apt=102") && ours.text.contains("a=fmtp:105 apt=104"))
        var peer = lp
        peer.videoSSRC = 44; peer.videoRTXSSRC = 55
        let (ourAnswer, theirs) = try JSEP.answer(offer: try SessionDescription(parsing: ours.text), local: peer, sessionID: 3)
        #expect(theirs.video?.rtxPayloadType == 103)
        #expect(theirs.video?.remoteSSRCs == [22])
        #expect(theirs.video?.remoteRTXSSRCs == [33])
        let accepted = try JSEP.acceptAnswer(ourAnswer, local: lp)
        #expect(accepted.video?.rtxPayloadType == 103)
        #expect(accepted.video?.remoteSSRCs == [44])
        #expect(accepted.video?.remoteRTXSSRCs == [55])
    }

    @Test func chromeOfferGetsTransportWideCongestionControlOnBothSections() throws {
        let offer = try SessionDescription(parsing: try fixture("chrome-offer"))
        let (answer, session) = try JSEP.answer(offer: offer, local: local, sessionID: 1)
        #expect(session.video?.transportCC == true)
        #expect(session.audio?.transportCC == true)
        #expect(session.video?.nack == true)
        #expect(session.video?.extensions[JSEP.transportWideCCURI] == 3)
        #expect(answer.text.contains("a=rtcp-fb:102 transport-cc"))
        #expect(answer.text.contains("a=rtcp-fb:111 transport-cc"))
        #expect(answer.text.contains("a=extmap:3 \(JSEP.transportWideCCURI)"))
    }

    /// A popular Go stack writes `a=rtcp-fb:102 nack ` (trailing space): spacing, case and
    /// parameter order must not change what is negotiated.
    @Test(arguments: [("nack ", "nack pli"), ("NACK", "Nack  PLI"), ("nack\t", "nack pli ")])
    func feedbackIsReadWhateverTheSpacingAndCase(nack: String, pli: String) throws {
        var text = try fixture("chrome-offer")
        text = text.replacingOccurrences(of: "a=rtcp-fb:102 nack\r\n", with: "a=rtcp-fb:102 \(nack)\r\n")
        text = text.replacingOccurrences(of: "a=rtcp-fb:102 nack pli\r\n", with: "a=rtcp-fb:102 \(pli)\r\n")
        text = text.replacingOccurrences(of: "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
                                         with: "a=fmtp:102 profile-level-id=42001F; Packetization-Mode=1;level-asymmetry-allowed=1")
        let (answer, session) = try JSEP.answer(offer: try SessionDescription(parsing: text), local: local, sessionID: 1)
        #expect(session.video?.codec.payloadType == 102)
        #expect(session.video?.nack == true)
        #expect(answer.text.contains("a=rtcp-fb:102 nack\r\n"))
        #expect(answer.text.contains("a=rtcp-fb:102 nack pli\r\n"))
    }

    @Test func firefoxOfferWithSessionLevelFingerprintIsAnswered() throws {
        let offer = try SessionDescription(parsing: try fixture("firefox-offer"))
        let (_, session) = try JSEP.answer(offer: offer, local: local, sessionID: 1)
        #expect(session.video?.codec.payloadType == 126)
        #expect(session.h264ProfileLevelID == "42e01f")
        #expect(session.audio?.codec.payloadType == 109)
        #expect(session.remoteFingerprint.digest.count == 32)
    }

    @Test func ourOfferRoundTripsAndIsAnsweredByOurselves() throws {
        let offer = JSEP.makeOffer(local, sessionID: 7)
        let parsed = try SessionDescription(parsing: offer.text)
        #expect(parsed == offer)
        let (answer, session) = try JSEP.answer(offer: parsed, local: local, sessionID: 8)
        #expect(session.h264ProfileLevelID == "42e01f")
        let accepted = try JSEP.acceptAnswer(answer, local: local)
        #expect(accepted.video?.codec.name == "H264")
        #expect(accepted.audio?.codec.name == "opus")
    }

    @Test func vp8OnlyOfferIsRefusedWithAReason() throws {
        var text = try fixture("chrome-offer")
        text = text.replacingOccurrences(of: "m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 104 105 106 107 108 109 127 125 39 40 45 46 98 99 100 101 112 113 114", with: "m=video 9 UDP/TLS/RTP/SAVPF 96 97")
        text = text.replacingOccurrences(of: "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126", with: "m=audio 9 UDP/TLS/RTP/SAVPF 0")
        let offer = try SessionDescription(parsing: text)
        #expect { try JSEP.answer(offer: offer, local: local, sessionID: 1) } throws: { e in
            "\(e)".contains("no usable codec") && "\(e)".contains("VP8")
        }
    }

    @Test func offerWithoutFingerprintIsRefused() throws {
        let text = try fixture("chrome-offer").split(separator: "\r\n").filter { !$0.hasPrefix("a=fingerprint") }.joined(separator: "\r\n")
        let offer = try SessionDescription(parsing: text)
        #expect { try JSEP.answer(offer: offer, local: local, sessionID: 1) } throws: { e in "\(e)".contains("fingerprint") }
    }

    @Test(arguments: [
        ("v=0\r\nthis is not sdp\r\n", 2),
        ("o=- 1 1 IN IP4 0.0.0.0\r\n", 1),
        ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\nm=video\r\n", 3),
    ])
    func malformedSDPNamesTheLine(text: String, line: Int) {
        #expect { try SessionDescription(parsing: text) } throws: { e in (e as? SDPError)?.line == line }
    }

    @Test func codecNamesInAnyCaseAndBundleOnlySectionsAreAccepted() throws {
        var text = try fixture("chrome-offer")
        text = text.replacingOccurrences(of: "opus/48000/2", with: "OPUS/48000/2")
        let offer = try SessionDescription(parsing: text)
        let (_, session) = try JSEP.answer(offer: offer, local: local, sessionID: 1)
        #expect(session.audio?.codec.payloadType == 111)
    }
}

@Suite struct MalformedOfferTests {
    static let base = """
    v=0\r
    o=- 1 2 IN IP4 127.0.0.1\r
    s=-\r
    t=0 0\r
    a=group:BUNDLE 0\r
    m=video 9 UDP/TLS/RTP/SAVPF 96\r
    c=IN IP4 0.0.0.0\r
    a=mid:0\r
    a=ice-ufrag:UFRAG\r
    a=ice-pwd:PWD\r
    a=fingerprint:sha-256 AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89\r
    a=setup:SETUP\r
    a=rtcp-mux\r
    a=sendrecv\r
    a=rtpmap:96 H264/90000\r
    a=fmtp:96 packetization-mode=1;profile-level-id=42e01f\r

    """

    /// A token holder's broken offers are refused before any ICE or DTLS work.
    @Test(arguments: [
        ("abcd", String(repeating: "p", count: 22), "passive-aggressive"),
        (String(repeating: "u", count: 20_000), String(repeating: "p", count: 22), "actpass"),
        ("ab\u{0}d", String(repeating: "p", count: 22), "actpass"),
        ("abcd", String(repeating: "p", count: 21) + "\u{0}", "actpass"),
        ("ab cd", String(repeating: "p", count: 22), "actpass"),
    ])
    func refused(ufrag: String, pwd: String, setup: String) throws {
        let text = Self.base.replacingOccurrences(of: "UFRAG", with: ufrag).replacingOccurrences(of: "PWD", with: pwd).replacingOccurrences(of: "SETUP", with: setup)
        guard let offer = try? SessionDescription(parsing: text) else { return }  // refused by the parser: fine too
        let local = LocalParameters(iceUfrag: "mine", icePwd: String(repeating: "x", count: 22), fingerprint: "AB", candidates: [], endOfCandidates: true,
                                    audioSSRC: 1, videoSSRC: 2, cname: "c", streamID: "s")
        #expect(throws: SDPError.self) { try JSEP.answer(offer: offer, local: local, sessionID: 1) }
    }
}
