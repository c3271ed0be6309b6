import MDNS
import NetworkCore
import STUN
import Testing
@testable import ICE

@Suite struct ICEResponseAuthenticationTests {
    /// a sends its first check; returns the agent and the request.
    func agentWithACheckOut() -> (ICEAgent, STUNMessage, String, TransportAddress) {
        var a = ICEAgent(controlling: true, tieBreaker: 1)
        let local = TransportAddress(host: "10.0.0.1", port: 5000)!
        let remote = TransportAddress(host: "10.0.0.2", port: 6000)!
        a.addLocalCandidate(ICECandidate(foundation: "1", priority: ICECandidate.priority(type: .host, localPreference: 65535), host: local.host, port: local.port, type: .host), base: local)
        let pwd = "remote-password-remote-pw"
        let now = Instant(nanoseconds: 1_000_000_000)
        a.setRemoteCredentials(ufrag: "rmt", pwd: pwd, now: now)
        a.addRemoteCandidate(ICECandidate(foundation: "2", priority: 100, host: remote.host, port: remote.port, type: .host), now: now)
        a.poll(now: now)
        let check = a.takeTransmits().first!
        return (a, try! STUNMessage(parsing: check.bytes), pwd, remote)
    }

    func response(to request: STUNMessage, from: TransportAddress) -> STUNMessage {
        var r = STUNMessage(method: .binding, class: .successResponse, transactionID: request.transactionID)
        r.addXORAddress(STUNAttributeType.xorMappedAddress, from)
        return r
    }

    @Test func anUnsignedSuccessResponseIsRejected() throws {
        var (a, req, _, remote) = agentWithACheckOut()
        let unsigned = try STUNMessage(parsing: response(to: req, from: remote).serialize())
        a.handle(unsigned, from: remote, localIndex: 0, now: Instant(nanoseconds: 1_010_000_000))
        #expect(a.rejectedMessages == 1)
        #expect(a.selectedPair == nil)
        #expect(!a.isValidated(remote))
    }

    @Test func aSuccessResponseWithAnErrorCode401AttributeStillNeedsIntegrity() throws {
        var (a, req, _, remote) = agentWithACheckOut()
        var r = response(to: req, from: remote)
        r.addErrorCode(401, "Unauthorized")
        a.handle(try STUNMessage(parsing: r.serialize()), from: remote, localIndex: 0, now: Instant(nanoseconds: 1_010_000_000))
        #expect(a.rejectedMessages == 1)
        #expect(a.selectedPair == nil)
    }

    @Test func aResponseSignedWithTheWrongKeyIsRejected() throws {
        var (a, req, _, remote) = agentWithACheckOut()
        let forged = try STUNMessage(parsing: response(to: req, from: remote).serialize(integrityKey: Array("guess".utf8)))
        a.handle(forged, from: remote, localIndex: 0, now: Instant(nanoseconds: 1_010_000_000))
        #expect(a.rejectedMessages == 1)
        #expect(a.selectedPair == nil)
    }

    @Test func aProperlySignedResponseValidatesTheAddress() throws {
        var (a, req, pwd, remote) = agentWithACheckOut()
        #expect(a.isKnownRemote(remote))
        #expect(!a.isValidated(remote))
        let good = try STUNMessage(parsing: response(to: req, from: remote).serialize(integrityKey: Array(pwd.utf8)))
        a.handle(good, from: remote, localIndex: 0, now: Instant(nanoseconds: 1_010_000_000))
        #expect(a.rejectedMessages == 0)
        #expect(a.selectedPair?.remote == remote)
        #expect(a.isValidated(remote))
        #expect(!a.isValidated(TransportAddress(host: "10.0.0.66", port: 6000)!))
        #expect(!a.isKnownRemote(TransportAddress(host: "10.0.0.66", port: 6000)!))
    }
}

@Suite struct ICECandidateBoundsTests {
    @Test func remoteCandidatesAreCappedAndTheRestCounted() {
        var a = ICEAgent(controlling: true)
        let local = TransportAddress(host: "10.0.0.1", port: 5000)!
        a.addLocalCandidate(ICECandidate(foundation: "1", priority: 1, host: local.host, port: local.port, type: .host), base: local)
        let now = Instant(nanoseconds: 1)
        var refused = 0
        for i in 0..<200 {
            let c = ICECandidate(foundation: "f\(i)", priority: 100, host: "10.1.\(i / 250).\(i % 250 + 1)", port: 7000, type: .host)
            if !a.addRemoteCandidate(c, now: now) { refused += 1 }
        }
        #expect(a.remoteCandidates.count == a.maxRemoteCandidates)
        #expect(a.ignoredCandidates == 150)
        #expect(refused == 150)
        #expect(a.pairs.count <= a.maxRemoteCandidates)
        // A duplicate of a kept one is not a refusal.
        let again = a.addRemoteCandidate(a.remoteCandidates[0], now: now)
        #expect(again)
    }

    @Test func peerReflexiveCandidatesAreCappedToo() throws {
        var a = ICEAgent(controlling: false, localUfrag: "loc", localPwd: "local-password-local-pw")
        let local = TransportAddress(host: "10.0.0.1", port: 5000)!
        a.addLocalCandidate(ICECandidate(foundation: "1", priority: 1, host: local.host, port: local.port, type: .host), base: local)
        let now = Instant(nanoseconds: 1)
        for i in 0..<40 {
            var m = STUNMessage(method: .binding, class: .request)
            m.add(STUNAttributeType.username, Array("loc:rmt".utf8))
            m.add(STUNAttributeType.priority, [0, 0, 1, 0])
            let from = TransportAddress(host: "10.2.0.\(i + 1)", port: 9000)!
            a.handle(try STUNMessage(parsing: m.serialize(integrityKey: Array("local-password-local-pw".utf8))), from: from, localIndex: 0, now: now)
        }
        // Every check was answered ...
        #expect(a.takeTransmits().count == 40)
        // ... but only so many new addresses were kept.
        #expect(a.remoteCandidates.count == a.maxPeerReflexiveCandidates)
        #expect(a.ignoredCandidates == 40 - a.maxPeerReflexiveCandidates)
    }
}

@Suite struct MDNSResolverTableTests {
    let t0 = Instant(nanoseconds: 5_000_000_000)

    @Test func unsolicitedAnswersAreNotCached() {
        var t = MDNSResolverTable<Int>()
        #expect(t.answer("stranger.local", ip: [10, 0, 0, 9], ttl: 120, now: t0) == nil)
        #expect(t.cachedCount == 0)
        #expect(t.unsolicitedAnswers == 1)
        // A later lookup of that name is not answered from the network's say-so.
        guard case .waiting(true) = t.ask("stranger.local", waiter: 1, timeout: .seconds(3), now: t0) else { Issue.record("expected a query"); return }
    }

    @Test func answersToOurQuestionsAreCachedForTheirTTL() {
        var t = MDNSResolverTable<Int>()
        guard case .waiting(true) = t.ask("a.local", waiter: 1, timeout: .seconds(3), now: t0) else { Issue.record("expected a query"); return }
        guard case .waiting(false) = t.ask("a.local", waiter: 2, timeout: .seconds(3), now: t0) else { Issue.record("expected to wait"); return }
        #expect(t.answer("a.local", ip: [192, 168, 1, 5], ttl: 10, now: t0 + .milliseconds(20)) == [1, 2])
        guard case .cached(let ip) = t.ask("a.local", waiter: 3, timeout: .seconds(3), now: t0 + .seconds(5)) else { Issue.record("expected cached"); return }
        #expect(ip == [192, 168, 1, 5])
        // TTL over: asked again.
        guard case .waiting(true) = t.ask("a.local", waiter: 4, timeout: .seconds(3), now: t0 + .seconds(11)) else { Issue.record("expected a query"); return }
    }

    @Test func aLongTTLIsCapped() {
        var t = MDNSResolverTable<Int>()
        t.maxTTL = .seconds(120)
        _ = t.ask("b.local", waiter: 1, timeout: .seconds(3), now: t0)
        _ = t.answer("b.local", ip: [10, 0, 0, 2], ttl: 4_000_000_000, now: t0)
        #expect(t.cached("b.local", now: t0 + .seconds(119)) != nil)
        #expect(t.cached("b.local", now: t0 + .seconds(121)) == nil)
    }

    @Test func pendingLookupsAndWaitersAreBounded() {
        var t = MDNSResolverTable<Int>()
        var refused = 0
        for i in 0..<100 {
            if case .refused = t.ask("n\(i).local", waiter: i, timeout: .seconds(3), now: t0) { refused += 1 }
        }
        #expect(t.pendingCount == t.maxPending)
        #expect(refused == 100 - t.maxPending)
        var waitersRefused = 0
        for i in 0..<20 {
            if case .refused = t.ask("n0.local", waiter: 1000 + i, timeout: .seconds(3), now: t0) { waitersRefused += 1 }
        }
        #expect(waitersRefused == 20 - (t.maxWaitersPerName - 1))
    }

    @Test func theCacheIsBounded() {
        var t = MDNSResolverTable<Int>()
        t.maxPending = 1000
        for i in 0..<500 {
            _ = t.ask("c\(i).local", waiter: i, timeout: .seconds(3), now: t0)
            _ = t.answer("c\(i).local", ip: [10, 0, UInt8(i / 256), UInt8(i % 256)], ttl: 120, now: t0 + .milliseconds(Int64(i)))
        }
        #expect(t.cachedCount == t.maxCached)
        // The newest are kept.
        #expect(t.cached("c499.local", now: t0 + .seconds(1)) != nil)
    }

    @Test func queriesAreRepeatedThenTheLookupTimesOut() {
        var t = MDNSResolverTable<Int>()
        _ = t.ask("slow.local", waiter: 7, timeout: .seconds(3), now: t0)
        var queries = 1
        var timedOut: [Int] = []
        var now = t0
        while now < t0 + .seconds(4) {
            let (q, out) = t.poll(now: now)
            queries += q.count
            timedOut += out
            now = now + .milliseconds(10)
        }
        #expect(queries == 1 + t.queryIntervals.count)
        #expect(timedOut == [7])
        #expect(t.pendingCount == 0)
        #expect(t.nextDeadline == nil)
        // A late answer is not kept.
        #expect(t.answer("slow.local", ip: [10, 0, 0, 1], ttl: 120, now: now) == nil)
        #expect(t.cachedCount == 0)
    }
}
