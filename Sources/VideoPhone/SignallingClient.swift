import NetworkCore

/// The device's outgoing signalling over WHIP-shaped HTTP: the offer to a peer's `/call`,
/// trickle and ICE-restart fragments to the call resource it returns (RFC 8840 over
/// PATCH), and the DELETE that hangs up.
///
/// Requests run one at a time on the `signalling` thread, each with an overall deadline,
/// so call control never waits on the network; results come back through completions,
/// which run on that thread (hop back to call control there). The queue is bounded: when
/// a dead peer backs it up, new requests fail at once instead of piling up.
final class SignallingClient: @unchecked Sendable {
    private let queue = SerialQueue(name: "signalling", capacity: 64)

    /// What a peer answered, or why there is no answer.
    typealias Completion = @Sendable (Result<HTTPResponse, HTTPError>) -> Void

    func stop() { queue.stop() }

    /// Sends our offer to `url` (the peer's `/call`).
    func sendOffer(_ sdp: String, to url: String, token: String, ourName: String, completion: @escaping Completion) {
        run(method: "POST", url: url, headers: [("Content-Type", "application/sdp"), ("Authorization", "Bearer \(token)"),
                                                 ("X-Videophone-Name", ourName)],
            body: Array(sdp.utf8), timeout: .seconds(5), completion: completion)
    }

    /// Sends SDP fragment lines (candidates, credentials) to a call resource.
    func patch(_ lines: [String], to resource: String, token: String, completion: @escaping Completion) {
        let body = lines.isEmpty ? "" : lines.joined(separator: "\r\n") + "\r\n"
        run(method: "PATCH", url: resource, headers: [("Content-Type", "application/trickle-ice-sdpfrag"), ("Authorization", "Bearer \(token)")],
            body: Array(body.utf8), timeout: .seconds(3), completion: completion)
    }

    /// Ends the call resource at the peer; the answer does not matter.
    func delete(_ resource: String, token: String) {
        run(method: "DELETE", url: resource, headers: [("Authorization", "Bearer \(token)")], body: [], timeout: .seconds(1)) { _ in }
    }

    private func run(method: String, url: String, headers: [(String, String)], body: [UInt8], timeout: Duration,
                     completion: @escaping Completion) {
        let queued = queue.async {
            completion(Result { () throws(HTTPError) -> HTTPResponse in
                try HTTPClient.request(method: method, url: url, headers: headers, body: body, timeout: timeout)
            })
        }
        if !queued { completion(.failure(HTTPError("too many signalling requests waiting; \(method) \(url) dropped"))) }
    }
}

/// The lines of an SDP fragment body (any line ending).
func fragmentLines(_ text: String) -> [Substring] {
    text.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" || $0 == "\r" })
}
