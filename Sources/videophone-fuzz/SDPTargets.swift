import SDP

/// SDP (RFC 8866): the parsed description's accessors, and the round trip: its text parses
/// back to the same description.
func fuzzSDP(_ data: [UInt8]) {
    guard let sd = try? SessionDescription(parsing: String(decoding: data, as: UTF8.self)) else { return }
    for (i, m) in sd.media.enumerated() {
        _ = m.codecs; _ = m.headerExtensions; _ = m.ssrcs; _ = m.direction; _ = m.mid
        _ = sd.attribute("fingerprint", media: i)
        for c in m.codecs { _ = c.fmtpLine; _ = c.parameter("profile-level-id") }
    }
    let text = sd.text
    let again: SessionDescription?
    do { again = try SessionDescription(parsing: text) } catch {
        require(false, "SDP text of a parsed description does not parse: \(error)")
        return
    }
    require(again == sd, "SDP round trip changed the description")
}

let fuzzLocal = LocalParameters(
    iceUfrag: "fuzz", icePwd: "0123456789012345678901234",
    fingerprint: "AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99",
    candidates: ["1 1 udp 2130706431 192.0.2.1 5000 typ host generation 0"], endOfCandidates: true,
    audioSSRC: 11, videoSSRC: 22, cname: "fuzz", streamID: "fuzz")

/// JSEP (RFC 9429): the input as a remote offer is answered, and our answer must parse
/// and be accepted by our own offerer side with the same media; the input as a remote
/// answer to our offer is read.
func fuzzJSEP(_ data: [UInt8]) {
    guard let sd = try? SessionDescription(parsing: String(decoding: data, as: UTF8.self)) else { return }
    _ = try? JSEP.acceptAnswer(sd, local: fuzzLocal)
    guard let (answer, session) = try? JSEP.answer(offer: sd, local: fuzzLocal, sessionID: 7) else { return }
    _ = session.h264ProfileLevelID
    let reparsed: SessionDescription
    do { reparsed = try SessionDescription(parsing: answer.text) } catch {
        require(false, "JSEP answer does not parse: \(error)")
        return
    }
    require(reparsed == answer, "JSEP answer changes on a round trip")
    let accepted: NegotiatedSession
    do { accepted = try JSEP.acceptAnswer(reparsed, local: fuzzLocal) } catch {
        require(false, "JSEP: our own answer is refused by our offerer side: \(error)")
        return
    }
    require((accepted.audio == nil) == (session.audio == nil) && (accepted.video == nil) == (session.video == nil),
            "JSEP: our answer reads back with other media")
    require(accepted.audio?.codec.payloadType == session.audio?.codec.payloadType
            && accepted.video?.codec.payloadType == session.video?.codec.payloadType, "JSEP: our answer reads back with other payload types")
}
