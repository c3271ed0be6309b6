import NetworkCore
import STUN
import Testing
@testable import TURN

/// A TURN server that answers with what the test says.
struct ScriptedServer {
    let realm = "videophone.test"
    let nonce: [UInt8] = Array("nonce-1".utf8)
    func key() -> [UInt8] { longTermKey(username: "vp", realm: realm, password: "secret") }

    func challenge(_ m: STUNMessage, code: Int = 401) -> STUNMessage {
        var e = STUNMessage(method: STUNMethod(rawValue: m.method)!, class: .errorResponse, transactionID: m.transactionID)
        e.addErrorCode(code, code == 438 ? "Stale Nonce" : "Unauthorized")
        e.add(STUNAttributeType.realm, Array(realm.utf8))
        e.add(STUNAttributeType.nonce, nonce)
        return try! STUNMessage(parsing: e.serialize())
    }

    func success(_ m: STUNMessage, lifetime: UInt32) -> STUNMessage {
        var r = STUNMessage(method: STUNMethod(rawValue: m.method)!, class: .successResponse, transactionID: m.transactionID)
        if m.method == STUNMethod.allocate.rawValue {
            r.addXORAddress(STUNAttributeType.xorRelayedAddress, TransportAddress(host: "203.0.113.1", port: 50000)!)
        }
        var l: [UInt8] = []
        l.appendU32(lifetime)
        r.add(STUNAttributeType.lifetime, l)
        return try! STUNMessage(parsing: r.serialize(integrityKey: key()))
    }

    func error(_ m: STUNMessage, code: Int) -> STUNMessage {
        var e = STUNMessage(method: STUNMethod(rawValue: m.method)!, class: .errorResponse, transactionID: m.transactionID)
        e.addErrorCode(code, "Nope")
        return try! STUNMessage(parsing: e.serialize(integrityKey: key()))
    }
}

@Suite struct TURNBoundsTests {
    let server = ScriptedServer()
    let t0 = Instant(nanoseconds: 1_000_000_000)

    func allocated(lifetime: UInt32) -> TURNClient {
        var c = TURNClient(server: TransportAddress(host: "192.0.2.10", port: 3478)!, username: "vp", password: "secret")
        let first = try! STUNMessage(parsing: c.start(now: t0)[0])
        let (signed, _) = c.handle(server.challenge(first), now: t0)
        let (_, event) = c.handle(server.success(try! STUNMessage(parsing: signed[0]), lifetime: lifetime), now: t0)
        #expect(event == .allocated(relayed: TransportAddress(host: "203.0.113.1", port: 50000)!, mapped: nil))
        return c
    }

    /// Runs the client for `duration` against a server that answers every Refresh with
    /// `answer`; returns the number of Refresh requests sent.
    func refreshes(_ c: inout TURNClient, for duration: Duration, answer: (STUNMessage) -> STUNMessage?) -> Int {
        var now = t0
        var count = 0
        while now < t0 + duration {
            var out = c.poll(now: now)
            while !out.isEmpty {
                var next: [[UInt8]] = []
                for b in out {
                    let m = try! STUNMessage(parsing: b)
                    guard m.method == STUNMethod.refresh.rawValue else { continue }
                    count += 1
                    if let r = answer(m) { next += c.handle(r, now: now).0 }
                }
                out = next
            }
            now = now + .milliseconds(100)
        }
        return count
    }

    @Test func aZeroOrTinyLifetimeDoesNotCauseARefreshStorm() {
        for lifetime: UInt32 in [0, 1, 5] {
            var c = allocated(lifetime: lifetime)
            #expect(c.allocationLifetime == c.minimumLifetime)
            let n = refreshes(&c, for: .seconds(60)) { server.success($0, lifetime: lifetime) }
            // Floored at 30 s, refreshed every 15 s: four in a minute, not thousands.
            #expect(n >= 3 && n <= 4, "lifetime \(lifetime): \(n) refreshes in 60 s")
            #expect(c.state == .allocated)
        }
    }

    @Test func aNormalLifetimeRefreshesAMinuteBeforeItEnds() {
        var c = allocated(lifetime: 600)
        #expect(refreshes(&c, for: .seconds(539)) { server.success($0, lifetime: 600) } == 0)
        var d = allocated(lifetime: 600)
        #expect(refreshes(&d, for: .seconds(541)) { server.success($0, lifetime: 600) } == 1)
    }

    @Test func refreshErrorsAreRetriedAFewTimesThenTheAllocationIsGivenUp() {
        var c = allocated(lifetime: 60)
        let n = refreshes(&c, for: .seconds(600)) { server.error($0, code: 508) }
        #expect(n == c.maxRefreshFailures)
        guard case .failed(let reason) = c.state else { Issue.record("expected failure, got \(c.state)"); return }
        #expect(reason.contains("refresh failed"))
        #expect(c.nextDeadline == nil)
    }

    @Test func aServerThatKeepsSayingStaleNonceIsNotObeyedForever() {
        var c = allocated(lifetime: 60)
        let n = refreshes(&c, for: .seconds(600)) { server.challenge($0, code: 438) }
        // Each refresh attempt: the request and at most maxAuthRetries signed retries.
        #expect(n <= c.maxRefreshFailures * (1 + c.maxAuthRetries))
        #expect(c.authRetriesExhausted > 0)
        if case .failed = c.state {} else { Issue.record("expected failure, got \(c.state)") }
    }

    @Test func peersAreBounded() {
        var c = allocated(lifetime: 600)
        for i in 0..<200 { _ = c.addPeer(TransportAddress(host: "198.51.100.\(i % 250)", port: UInt16(1000 + i))!, now: t0) }
        #expect(c.peersRefused == 200 - c.maxPeers)
    }
}
