import DTLS
import VideoPhone

/// The signalling server's HTTP request parser, fed the input in pieces whose sizes come
/// from the input itself (as a slow or odd client sends them). Properties: it never takes
/// more than its limits, a complete message's body has the length its header said, and the
/// same bytes in one piece give the same outcome.
func fuzzHTTP(_ data: [UInt8]) {
    var r = FuzzReader(data)
    let isRequest = r.bool()
    let cut = Int(r.u8()) + 1
    let bytes = r.rest()
    var pieces = HTTPMessageParser(isRequest: isRequest)
    var result: HTTPMessageParser.Progress = .needMore(headersDone: false)
    var i = 0
    while i < bytes.count {
        result = pieces.consume(bytes[i..<min(bytes.count, i + cut)])
        if case .needMore = result { i += cut } else { break }
    }
    if case .needMore = result { result = pieces.finish() }
    var whole = HTTPMessageParser(isRequest: isRequest)
    var once = whole.consume(bytes)
    if case .needMore = once { once = whole.finish() }
    switch (result, once) {
    case (.complete(let a), .complete(let b)):
        require(a.startLine == b.startLine && a.headers == b.headers && a.body == b.body, "HTTP: pieces and whole differ")
        require(a.body.count <= HTTPMessageParser.Limits().body, "HTTP: body over the limit")
        if let cl = a.headers["content-length"], let n = Int(cl) { require(a.body.count == n, "HTTP: body of \(a.body.count), Content-Length \(n)") }
    case (.failed(let a), .failed(let b)):
        require((400...599).contains(a.status) && (400...599).contains(b.status), "HTTP: refusal status \(a.status)")
    case (.failed, .complete), (.complete, .failed):
        // A refusal can come from a limit that the whole message hits only at its end
        // (headers too large); the outcome must still be the same kind.
        require(false, "HTTP: pieces and whole disagree on acceptance")
    default:
        break
    }
}

/// Trickle-ICE fragments from a PATCH: whatever is taken is within the cap and parses.
func fuzzTrickle(_ data: [UInt8]) {
    guard let text = String(validating: data, as: UTF8.self) else { return }
    guard case .success(let f) = TrickleFragment.parse(text, maxCandidates: 40) else { return }
    require(f.candidates.count <= 40, "trickle: \(f.candidates.count) candidates taken")
    require((f.ufrag == nil) == (f.pwd == nil), "trickle: credentials without their pair")
}

/// Control-socket command lines: parsing never traps and a command reads back the same.
func fuzzControl(_ data: [UInt8]) {
    let line = String(decoding: data, as: UTF8.self)
    guard case .success(let c) = ControlCommands.parse(line) else { return }
    let text: String = switch c {
    case .status(let json): json ? "status --json" : "status"
    case .call(let peer): peer.map { "call \($0)" } ?? "call"
    case .answer: "answer"
    case .hangup: "hangup"
    case .identity: "identity"
    case .reload: "reload"
    case .screenshot: "screenshot"
    case .press(let long): long ? "press --long" : "press"
    }
    require((try? ControlCommands.parse(text).get()) == c, "control: '\(text)' does not read back")
}

/// The DTLS record check that runs before OpenSSL: never traps; what it passes is framed
/// as whole records.
func fuzzDTLSRecords(_ data: [UInt8]) {
    guard DTLSRecordCheck.problem(data) == nil else { return }
    var i = 0
    while i < data.count {
        require(data.count - i >= 13, "DTLS: passed a truncated record header")
        i += 13 + (Int(data[i + 11]) << 8 | Int(data[i + 12]))
    }
    require(i == data.count, "DTLS: passed records that overrun the datagram")
}
