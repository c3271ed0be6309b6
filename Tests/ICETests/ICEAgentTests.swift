import NetworkCore
import STUN
import Testing
@testable import ICE

/// Two agents wired back to back through an in-memory "network", on a test clock.
struct Harness {
    var a: ICEAgent
    var b: ICEAgent
    let aAddr: TransportAddress
    let bAddr: TransportAddress
    var now = Instant(nanoseconds: 1_000_000_000)
    /// Drop predicate: (from, to, bytes) → true to lose the datagram.
    var drop: (TransportAddress, TransportAddress, [UInt8]) -> Bool = { _, _, _ in false }
    var aEvents: [ICEEvent] = []
    var bEvents: [ICEEvent] = []

    init(aControlling: Bool = true, bControlling: Bool = false,
         aAddr: TransportAddress = TransportAddress(host: "10.0.0.1", port: 5000)!,
         bAddr: TransportAddress = TransportAddress(host: "10.0.0.2", port: 6000)!) {
        self.aAddr = aAddr
        self.bAddr = bAddr
        a = ICEAgent(controlling: aControlling, tieBreaker: 100)
        b = ICEAgent(controlling: bControlling, tieBreaker: 200)
        let ca = ICECandidate(foundation: "1", priority: ICECandidate.priority(type: .host, localPreference: 65535), host: aAddr.host, port: aAddr.port, type: .host)
        let cb = ICECandidate(foundation: "2", priority: ICECandidate.priority(type: .host, localPreference: 65535), host: bAddr.host, port: bAddr.port, type: .host)
        a.addLocalCandidate(ca, base: aAddr)
        b.addLocalCandidate(cb, base: bAddr)
    }

    mutating func exchangeCredentials(candidates: Bool = true) {
        a.setRemoteCredentials(ufrag: b.localUfrag, pwd: b.localPwd, now: now)
        b.setRemoteCredentials(ufrag: a.localUfrag, pwd: a.localPwd, now: now)
        if candidates {
            a.addRemoteCandidate(b.localCandidates[0].candidate, now: now)
            b.addRemoteCandidate(a.localCandidates[0].candidate, now: now)
        }
    }

    /// Delivers queued datagrams until quiet, then advances the clock by `step`.
    mutating func run(for duration: Duration, step: Duration = .milliseconds(1)) {
        let end = now + duration
        while now < end {
            a.poll(now: now)
            b.poll(now: now)
            var moved = true
            while moved {
                moved = false
                for t in a.takeTransmits() where !drop(aAddr, t.to, t.bytes) {
                    moved = true
                    if t.to == bAddr, let m = try? STUNMessage(parsing: t.bytes) { b.handle(m, from: aAddr, localIndex: 0, now: now) }
                }
                for t in b.takeTransmits() where !drop(bAddr, t.to, t.bytes) {
                    moved = true
                    if t.to == aAddr, let m = try? STUNMessage(parsing: t.bytes) { a.handle(m, from: bAddr, localIndex: 0, now: now) }
                }
            }
            aEvents += a.takeEvents()
            bEvents += b.takeEvents()
            now = now + step
        }
    }
}

@Suite struct ICEAgentTests {
    @Test func connectsAndNominatesWithinOneRoundOfChecks() {
        var h = Harness()
        h.exchangeCredentials()
        h.run(for: .milliseconds(5))
        #expect(h.a.state == .connected)
        #expect(h.b.state == .connected)
        #expect(h.aEvents.contains { if case .selectedPair(_, _, _, _, true) = $0 { return true }; return false })
        #expect(h.bEvents.contains { if case .selectedPair(_, _, _, _, true) = $0 { return true }; return false })
    }

    /// RFC 8445 §7.3.1.5: the pair the controlling peer nominates, through a check we
    /// answered, is the pair we use, even loopback to a LAN address (one host, two
    /// interfaces), which we would never have paired from candidates ourselves.
    @Test func aNominationOfALoopbackToLANPairIsTheSelectedPair() {
        var h = Harness(aAddr: TransportAddress(host: "192.168.7.2", port: 5000)!, bAddr: TransportAddress(host: "127.0.0.1", port: 6000)!)
        h.exchangeCredentials(candidates: false)
        // a's stack (a browser, say) pairs its LAN address with b's loopback one and
        // nominates it at once (aggressive nomination), a check we would never send.
        var check = STUNMessage(method: .binding, class: .request)
        check.add(STUNAttributeType.username, Array("\(h.b.localUfrag):\(h.a.localUfrag)".utf8))
        var priority: [UInt8] = []
        priority.appendU32(ICECandidate.priority(type: .prflx, localPreference: 65535))
        check.add(STUNAttributeType.priority, priority)
        var tieBreaker: [UInt8] = []
        tieBreaker.appendU64(1)
        check.add(STUNAttributeType.iceControlling, tieBreaker)
        check.add(STUNAttributeType.useCandidate, [])
        let bytes = check.serialize(integrityKey: Array(h.b.localPwd.utf8))
        h.b.handle(try! STUNMessage(parsing: bytes), from: h.aAddr, localIndex: 0, now: h.now)
        // b answered, and its triggered check on that pair goes through the harness.
        h.run(for: .milliseconds(20))
        #expect(h.b.state == .connected)
        let last = h.bEvents.last { if case .selectedPair = $0 { return true }; return false }
        guard case let .selectedPair(_, remote, _, _, nominated)? = last else { Issue.record("b selected nothing: \(h.bEvents)"); return }
        #expect(remote == h.aAddr)
        #expect(nominated)
    }

    @Test func checkArrivingBeforeTheAnswerBecomesPeerReflexiveThenConnectsAtOnce() {
        var h = Harness()
        // b (answerer) knows everything; a has not read the answer yet.
        h.b.setRemoteCredentials(ufrag: h.a.localUfrag, pwd: h.a.localPwd, now: h.now)
        h.b.addRemoteCandidate(h.a.localCandidates[0].candidate, now: h.now)
        h.run(for: .milliseconds(3))
        #expect(h.b.state == .connected)
        #expect(h.a.remoteCandidates.first?.type == .prflx)
        // Now a reads the answer: the candidate is upgraded and a connects without waiting for a retransmission.
        h.a.setRemoteCredentials(ufrag: h.b.localUfrag, pwd: h.b.localPwd, now: h.now)
        h.a.addRemoteCandidate(h.b.localCandidates[0].candidate, now: h.now)
        h.run(for: .milliseconds(3))
        #expect(h.a.state == .connected)
        #expect(h.a.remoteCandidates.first?.type == .host)
    }

    @Test func roleConflictBothControllingResolvesToOneControllingSide() {
        var h = Harness(aControlling: true, bControlling: true)
        h.exchangeCredentials()
        h.run(for: .milliseconds(50))
        #expect(h.a.controlling != h.b.controlling)
        // The larger tie-breaker (b: 200) keeps the controlling role.
        #expect(h.b.controlling)
        #expect(h.a.state == .connected && h.b.state == .connected)
    }

    @Test func roleConflictBothControlledResolves() {
        var h = Harness(aControlling: false, bControlling: false)
        h.exchangeCredentials()
        h.run(for: .milliseconds(50))
        #expect(h.a.controlling != h.b.controlling)
        #expect(h.a.state == .connected && h.b.state == .connected)
    }

    @Test func lostChecksAreRetransmitted() {
        var h = Harness()
        var dropped = 0
        h.drop = { _, _, _ in dropped += 1; return dropped <= 2 }
        h.exchangeCredentials()
        h.run(for: .milliseconds(400))
        #expect(h.a.state == .connected && h.b.state == .connected)
    }

    @Test func wrongPasswordIsRejectedAndCounted() {
        var h = Harness()
        h.a.setRemoteCredentials(ufrag: h.b.localUfrag, pwd: "not-the-right-password-xx", now: h.now)
        h.a.addRemoteCandidate(h.b.localCandidates[0].candidate, now: h.now)
        h.run(for: .milliseconds(20))
        #expect(h.b.rejectedMessages > 0)
        #expect(h.b.state != .connected)
    }

    @Test func consentExpiresWhenThePeerVanishes() {
        var h = Harness()
        h.exchangeCredentials()
        h.run(for: .milliseconds(10))
        #expect(h.a.state == .connected)
        h.drop = { _, _, _ in true }
        h.run(for: .seconds(31), step: .milliseconds(100))
        #expect(h.a.state == .failed)
        #expect(h.aEvents.contains { if case .failed = $0 { return true }; return false })
    }

    /// A 300 ms round trip (an intercontinental or cellular path): consent answers come
    /// after the check's first retransmission timer, and must still count.
    @Test func consentHoldsOnAPathWithALongRoundTrip() {
        var h = Harness()
        h.exchangeCredentials()
        h.run(for: .milliseconds(10))
        #expect(h.a.state == .connected && h.b.state == .connected)
        var inFlight: [(at: Instant, toB: Bool, bytes: [UInt8])] = []
        let oneWay: Duration = .milliseconds(150)
        let end = h.now + .seconds(45)
        while h.now < end {
            h.a.poll(now: h.now)
            h.b.poll(now: h.now)
            for t in h.a.takeTransmits() { inFlight.append((h.now + oneWay, true, t.bytes)) }
            for t in h.b.takeTransmits() { inFlight.append((h.now + oneWay, false, t.bytes)) }
            while let i = inFlight.firstIndex(where: { $0.at <= h.now }) {
                let d = inFlight.remove(at: i)
                guard let m = try? STUNMessage(parsing: d.bytes) else { continue }
                if d.toB { h.b.handle(m, from: h.aAddr, localIndex: 0, now: h.now) } else { h.a.handle(m, from: h.bAddr, localIndex: 0, now: h.now) }
            }
            h.aEvents += h.a.takeEvents()
            h.bEvents += h.b.takeEvents()
            h.now = h.now + .milliseconds(10)
        }
        #expect(h.a.state == .connected)
        #expect(h.b.state == .connected)
        #expect(!h.aEvents.contains { if case .failed = $0 { return true }; return false })
    }

    @Test func consentHoldsWhileThePeerAnswers() {
        var h = Harness()
        h.exchangeCredentials()
        h.run(for: .seconds(40), step: .milliseconds(100))
        #expect(h.a.state == .connected)
        #expect(h.b.state == .connected)
    }

    @Test(arguments: [
        "candidate:1 1 udp 2122260223 192.168.1.2 54321 typ host generation 0",
        "842163049 1 udp 1677729535 203.0.113.5 3478 typ srflx raddr 192.168.1.2 rport 54321 generation 0 ufrag abc network-cost 999",
        "1 1 UDP 2122252543 0e3c1b5c-95a4-4d4c-9a27-2b2a1bd53c9d.local 49203 typ host",
    ])
    func candidateLinesParseAndRoundTrip(line: String) throws {
        let c = try #require(ICECandidate(sdp: line))
        let again = try #require(ICECandidate(sdp: c.sdpValue))
        #expect(again == c)
    }

    @Test func tcpAndGarbageCandidatesAreNotPaired() {
        var h = Harness()
        h.exchangeCredentials(candidates: false)
        h.a.addRemoteCandidate(ICECandidate(sdp: "1 1 tcp 1518280447 10.0.0.2 9 typ host tcptype active")!, now: h.now)
        #expect(ICECandidate(sdp: "garbage") == nil)
        #expect(h.a.remoteCandidates.isEmpty)
    }
}
