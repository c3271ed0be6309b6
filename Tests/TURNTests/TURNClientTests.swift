import NetworkCore
import STUN
import Testing
@testable import TURN

/// Drives the I/O-free TURN client against a scripted server on a test clock.
struct FakeServer {
    let realm = "videophone.test"
    let nonce: [UInt8] = Array("nonce-1".utf8)
    let relayed = TransportAddress(host: "203.0.113.1", port: 50000)!
    let mapped = TransportAddress(host: "198.51.100.2", port: 40000)!
    var password = "secret"

    func key() -> [UInt8] { longTermKey(username: "vp", realm: realm, password: password) }

    /// Answers a request the way RFC 8656 servers do.
    func answer(_ bytes: [UInt8]) throws -> [UInt8] {
        let m = try STUNMessage(parsing: bytes)
        guard m.attribute(STUNAttributeType.messageIntegrity) != nil, m.verifyIntegrity(key: key()) else {
            var e = STUNMessage(method: STUNMethod(rawValue: m.method)!, class: .errorResponse, transactionID: m.transactionID)
            e.addErrorCode(401, "Unauthorized")
            e.add(STUNAttributeType.realm, Array(realm.utf8))
            e.add(STUNAttributeType.nonce, nonce)
            return e.serialize()
        }
        var r = STUNMessage(method: STUNMethod(rawValue: m.method)!, class: .successResponse, transactionID: m.transactionID)
        if m.method == STUNMethod.allocate.rawValue {
            r.addXORAddress(STUNAttributeType.xorRelayedAddress, relayed)
            r.addXORAddress(STUNAttributeType.xorMappedAddress, mapped)
            r.add(STUNAttributeType.lifetime, [0, 0, 0x02, 0x58])  // 600 s
        }
        return r.serialize(integrityKey: key())
    }
}

let t0 = Instant(nanoseconds: 1_000_000_000)

@Suite struct TURNClientTests {
    func allocated(_ server: FakeServer = FakeServer()) throws -> TURNClient {
        var c = TURNClient(server: TransportAddress(host: "192.0.2.1", port: 3478)!, username: "vp", password: "secret")
        var out = c.start(now: t0)
        for _ in 0..<2 {
            let reply = try STUNMessage(parsing: try server.answer(out[0]))
            let (more, _) = c.handle(reply, now: t0)
            out = more
            if out.isEmpty { break }
        }
        return c
    }

    @Test func longTermCredentialsThenAllocation() throws {
        let c = try allocated()
        #expect(c.state == .allocated)
        #expect(c.relayedAddress == FakeServer().relayed)
        #expect(c.mappedAddress == FakeServer().mapped)
    }

    @Test func wrongCredentialsFailWithTheServerAndUserNamed() throws {
        var server = FakeServer()
        server.password = "other"
        var c = TURNClient(server: TransportAddress(host: "192.0.2.1", port: 3478)!, username: "vp", password: "secret")
        var out = c.start(now: t0)
        var event: TURNClient.Event? = nil
        for _ in 0..<3 where !out.isEmpty {
            (out, event) = c.handle(try STUNMessage(parsing: try server.answer(out[0])), now: t0)
        }
        guard case .failed(let why)? = event else { Issue.record("no failure: \(String(describing: event))"); return }
        #expect(why.contains("192.0.2.1:3478") && why.contains("wrong credentials") && why.contains("'vp'"))
        #expect(!why.contains("secret"))
    }

    @Test func refreshBeforeTheLifetimeEndsAndPermissionsAndChannelsAreRefreshed() throws {
        var c = try allocated()
        let peer = TransportAddress(host: "198.51.100.9", port: 5000)!
        let requests = c.addPeer(peer, now: t0)
        #expect(requests.count == 2)  // CreatePermission and ChannelBind
        let methods = try requests.map { try STUNMessage(parsing: $0).method }
        #expect(methods == [STUNMethod.createPermission.rawValue, STUNMethod.channelBind.rawValue])
        for r in requests { _ = c.handle(try STUNMessage(parsing: try FakeServer().answer(r)), now: t0) }
        #expect(c.poll(now: t0 + .seconds(200)).isEmpty)
        // Permissions last 5 min, refreshed a minute before; the allocation (600 s) too.
        let at250 = try c.poll(now: t0 + .seconds(250)).map { try STUNMessage(parsing: $0).method }
        #expect(at250.contains(STUNMethod.createPermission.rawValue))
        let at545 = try c.poll(now: t0 + .seconds(545)).map { try STUNMessage(parsing: $0).method }
        #expect(at545.contains(STUNMethod.refresh.rawValue))
        #expect(at545.contains(STUNMethod.channelBind.rawValue))
    }

    @Test func sendIndicationUntilTheChannelIsBoundThenChannelData() throws {
        var c = try allocated()
        let peer = TransportAddress(host: "198.51.100.9", port: 5000)!
        let requests = c.addPeer(peer, now: t0)
        var out: [UInt8] = []
        let payload: [UInt8] = [1, 2, 3, 4, 5]
        payload.withUnsafeBytes { c.wrap($0, to: peer, into: &out, pad: false) }
        let send = try STUNMessage(parsing: out)
        #expect(send.messageClass == .indication && send.method == STUNMethod.send.rawValue)
        #expect(send.xorAddress(STUNAttributeType.xorPeerAddress) == peer)
        for r in requests { _ = c.handle(try STUNMessage(parsing: try FakeServer().answer(r)), now: t0) }
        payload.withUnsafeBytes { c.wrap($0, to: peer, into: &out, pad: true) }
        #expect(TURNClient.isChannelData(out[0]))
        #expect(out.count == 12)  // 4 header + 5 payload, padded to a multiple of 4 over TCP
        let unwrapped = out.withUnsafeBytes { c.unwrapChannelData($0) }
        #expect(unwrapped?.0 == peer)
        #expect(unwrapped.map { Array(out[$0.1]) } == payload)
    }

    @Test func spoofedAndUnsignedAnswersAreIgnoredAndCounted() throws {
        var c = try allocated()
        let peer = TransportAddress(host: "198.51.100.9", port: 5000)!
        let requests = c.addPeer(peer, now: t0)
        // An answer to a transaction we never started.
        let stray = STUNMessage(method: .createPermission, class: .successResponse)
        _ = c.handle(try STUNMessage(parsing: stray.serialize()), now: t0)
        // An answer to ours, signed with the wrong key.
        let request = try STUNMessage(parsing: requests[0])
        let forged = STUNMessage(method: .createPermission, class: .successResponse, transactionID: request.transactionID)
        _ = c.handle(try STUNMessage(parsing: forged.serialize(integrityKey: Array("guess".utf8))), now: t0)
        #expect(c.ignoredResponses == 2)
    }
}
