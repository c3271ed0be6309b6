import Foundation
import Testing
@testable import SDP

/// Inputs the SDP and JSEP fuzz targets (Sources/videophone-fuzz) found; each once
/// trapped or broke a property. The raw inputs are also seeds in Tests/Fuzz/corpus.
@Suite struct SDPFuzzRegressionTests {
    /// fuzz target sdp: a last line ending "\r\r" with no "\n" kept one CR in the value,
    /// and the serialized text lost it again: parse → text → parse was not the identity.
    @Test func trailingCarriageReturnsAreNotPartOfAValue() throws {
        let text = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\na=ice-uffurag:f5zzzz\r\r"
        let sd = try SessionDescription(parsing: text)
        #expect(sd.media[0].value("ice-uffurag") == "f5zzzz")
        #expect(try SessionDescription(parsing: sd.text) == sd)
        // Also in the middle of the text, before a CRLF.
        let mid = try SessionDescription(parsing: "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\na=tool:x\r\r\r\ns=-\r\n")
        #expect(mid.value("tool") == "x")
    }

    /// The exact input the fuzzer reported for the round trip above.
    @Test func fuzzerInputForTheCarriageReturnRoundTrip() throws {
        let text = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\na=msid-semantic: WMS fuzz\r\n"
            + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtcp:4 IN IP4 0.0v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\n"
            + "t=0 0\r\na=group:BUNDLE 0 1\r\na=msid-semantic: WMS fuzz\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n"
            + "a=rtc.0.0\r\na=ice-ufrag:p:9 IN IP4 0.0.0.0\r\na=ice-uffurag:f5zzzz\r\r"
        let sd = try SessionDescription(parsing: text)
        #expect(try SessionDescription(parsing: sd.text) == sd)
    }

    /// `a=extmap:/ URI`: the ID part splits into nothing; `[0]` on it trapped.
    @Test func extmapWithoutAnIDIsSkipped() throws {
        let sd = try SessionDescription(parsing: "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nm=video 9 RTP/AVP 96\r\n"
                                         + "a=extmap:/ urn:ietf:params:rtp-hdrext:sdes:mid\r\na=extmap:3 urn:x\r\n")
        #expect(sd.media[0].headerExtensions == ["urn:x": 3])
    }

    /// fuzz target jsep: an offer whose first section we reject (audio without Opus) got an
    /// answer whose first m= line is port 0 with no ICE credentials; reading that answer
    /// (our own offerer side, JSEP.acceptAnswer) looked only at the first section and
    /// refused it ("no a=ice-ufrag"). The transport now comes from the BUNDLE-tagged section.
    @Test func answerRejectingTheFirstSectionIsReadFromTheBundleTag() throws {
        let offer = try SessionDescription(parsing: """
            v=0
            o=- 1 2 IN IP4 127.0.0.1
            s=-
            t=0 0
            a=group:BUNDLE 0 1
            a=fingerprint:sha-256 A1:0B:59:C8:3E:7D:22:19:F0:64:8A:BC:33:91:5E:0F:72:D4:88:16:C0:AE:3B:95:47:21:6F:EE:09:DA:13:C2
            m=audio 9 UDP/TLS/RTP/SAVPF 0
            a=ice-ufrag:4c1b2a39
            a=ice-pwd:6f2e7d3c8b9a0f1e2d3c4b5a69788796
            a=setup:actpass
            a=mid:0
            a=rtpmap:0 PCMU/8000
            m=video 9 UDP/TLS/RTP/SAVPF 126
            a=mid:1
            a=rtpmap:126 H264/90000
            a=fmtp:126 profile-level-id=42e01f;level-asymmetry-allowed=1;packetization-mode=1

            """)
        let (answer, session) = try JSEP.answer(offer: offer, local: local, sessionID: 1)
        #expect(session.audio == nil && session.video?.codec.payloadType == 126)
        #expect(answer.media[0].port == 0 && answer.media[0].value("ice-ufrag") == nil)
        let back = try JSEP.acceptAnswer(try SessionDescription(parsing: answer.text), local: local)
        #expect(back.video?.codec.payloadType == 126 && back.audio == nil)
        #expect(back.remoteUfrag == local.iceUfrag)
        #expect(!back.dtlsClient)
    }

    /// fuzz target sdp: "m=video 9 RTP/AVP 96 97x\r " kept the CR in the last format; the
    /// serialized line then ended in it and it was stripped as a line ending.
    @Test func mLineWithAStrayCarriageReturnRoundTrips() throws {
        let sd = try SessionDescription(parsing: "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nm=video 9 RTP/AVP 96 97x\r \r\n")
        #expect(sd.media[0].formats == ["96", "97x"])
        #expect(try SessionDescription(parsing: sd.text) == sd)
    }

    /// fuzz target jsep: two sections with the same mid (the BUNDLE tag naming a section we
    /// reject and one we accept) gave an answer our own offerer side could not read.
    @Test func offerWithDuplicateMidsIsRefused() throws {
        let offer = try SessionDescription(parsing: try fixture("chrome-offer").replacingOccurrences(of: "a=mid:1", with: "a=mid:0"))
        #expect(throws: SDPError.self) { try JSEP.answer(offer: offer, local: local, sessionID: 1) }
    }

    /// fuzz target jsep: a mid with a space in it ("0 UDP/TLS/RTP/SAVPF 111") was copied into
    /// our a=group:BUNDLE line, where it read as two tags, the first naming a section we
    /// rejected: our own offerer side found no ICE credentials there. A mid is one token.
    @Test func offerWithAMidThatIsNotATokenIsRefused() throws {
        let offer = try SessionDescription(parsing: try fixture("chrome-offer").replacingOccurrences(of: "a=mid:1", with: "a=mid:1 x"))
        #expect(throws: SDPError.self) { try JSEP.answer(offer: offer, local: local, sessionID: 1) }
        let fine = try SessionDescription(parsing: try fixture("chrome-offer").replacingOccurrences(of: "a=mid:1", with: "a=mid:video_1"))
        #expect(try JSEP.answer(offer: fine, local: local, sessionID: 1).1.video?.mid == "video_1")
    }

    /// Every input the fuzzer reported (kept as seeds in Tests/Fuzz/corpus/{sdp,jsep}/regress-*)
    /// keeps the properties the targets check.
    @Test(arguments: ["sdp", "jsep"])
    func reportedFuzzInputsKeepTheirProperties(target: String) throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../Fuzz/corpus/\(target)").standardizedFileURL
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix("regress-") }
        #expect(!files.isEmpty)
        for name in files {
            let data = try Data(contentsOf: dir.appendingPathComponent(name))
            guard let sd = try? SessionDescription(parsing: String(decoding: data, as: UTF8.self)) else { continue }
            #expect(try SessionDescription(parsing: sd.text) == sd, "\(name)")
            if target == "jsep", let (answer, session) = try? JSEP.answer(offer: sd, local: local, sessionID: 7) {
                let back = try JSEP.acceptAnswer(try SessionDescription(parsing: answer.text), local: local)
                #expect((back.audio == nil) == (session.audio == nil) && (back.video == nil) == (session.video == nil), "\(name)")
            }
        }
    }
}
