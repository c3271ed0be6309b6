import MDNS
import NetworkCore
#if canImport(Glibc)
import Glibc
#endif

/// mDNS for ICE `.local` candidates: resolves the names browsers hide their addresses
/// behind, and answers queries for the names this device hides its own behind.
///
/// Queries go out only on the interfaces the device gathers candidates on (the multicast
/// interface is set per address), never anywhere else. One thread, one socket on port 5353
/// shared with other responders (SO_REUSEADDR), plus loopback of our own multicast so
/// that two processes on one host can resolve each other.
public final class MDNSService: @unchecked Sendable {
    let fd: Int32
    let interfaces: [TransportAddress]
    private let state = Locked(State())
    public let port: UInt16

    struct State {
        var ownNames: [String: [UInt8]] = [:]
        var waiting: [String: [@Sendable (TransportAddress?) -> Void]] = [:]
        var cache: [String: [UInt8]] = [:]
        var queriesAnswered = 0
        var namesResolved = 0
    }

    /// - Parameter interfaces: IPv4 addresses to join the group and send on.
    public init(interfaces: [TransportAddress]) throws(SocketError) {
        self.interfaces = interfaces.filter { $0.family == .ipv4 && !$0.isLoopback }
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError("mDNS socket") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(MemoryLayout<Int32>.size))
        var ttl: UInt8 = 255
        setsockopt(fd, Int32(IPPROTO_IP), IP_MULTICAST_TTL, &ttl, 1)
        var loop: UInt8 = 1
        setsockopt(fd, Int32(IPPROTO_IP), IP_MULTICAST_LOOP, &loop, 1)
        var port: UInt16 = MDNSMessage.port
        let bound = TransportAddress(host: "0.0.0.0", port: MDNSMessage.port)!.withSockAddr { bind(fd, $0, $1) } == 0
        if !bound {
            // Someone holds 5353 exclusively: still resolve, with legacy unicast queries.
            port = 0
            _ = TransportAddress(host: "0.0.0.0", port: 0)!.withSockAddr { bind(fd, $0, $1) }
        }
        for a in self.interfaces {
            var mreq = ip_mreq()
            withUnsafeMutableBytes(of: &mreq.imr_multiaddr) { $0.copyBytes(from: MDNSMessage.groupIPv4.ip) }
            withUnsafeMutableBytes(of: &mreq.imr_interface) { $0.copyBytes(from: a.ip) }
            setsockopt(fd, Int32(IPPROTO_IP), IP_ADD_MEMBERSHIP, &mreq, socklen_t(MemoryLayout<ip_mreq>.size))
        }
        self.fd = fd
        self.port = port
        _ = startThread(name: "mdns") { [self] in self.run() }
    }

    /// Answers queries for `name` with `address` from now on.
    public func register(name: String, address: TransportAddress) {
        state.withLock { $0.ownNames[name.lowercased()] = address.ip }
    }

    public func unregister(name: String) {
        _ = state.withLock { $0.ownNames.removeValue(forKey: name.lowercased()) }
    }

    /// Resolves `name`; calls `completion` once with the address, or nil after `timeout`.
    public func resolve(_ name: String, port: UInt16, timeout: Duration = .seconds(3), completion: @escaping @Sendable (TransportAddress?) -> Void) {
        let key = name.lowercased()
        if let ip = state.withLock({ $0.cache[key] }) {
            completion(TransportAddress(ip: ip, port: port))
            return
        }
        state.withLock { $0.waiting[key, default: []].append({ a in completion(a.flatMap { TransportAddress(ip: $0.ip, port: port) }) }) }
        // Ask twice, as RFC 6762 §5.2 suggests for a first query, then give up.
        _ = startThread(name: "mdns-query") { [self] in
            let deadline = Instant.now() + timeout
            var attempt = 0
            while Instant.now() < deadline {
                if state.withLock({ $0.waiting[key] == nil }) { return }
                if attempt < 3 { send(MDNSMessage.query(key).serialize(), to: MDNSMessage.groupIPv4); attempt += 1 }
                usleep(attempt == 1 ? 50_000 : 250_000)
            }
            let callbacks = state.withLock { $0.waiting.removeValue(forKey: key) } ?? []
            for c in callbacks { c(nil) }
        }
    }

    public var counters: (queriesAnswered: Int, namesResolved: Int) {
        state.withLock { ($0.queriesAnswered, $0.namesResolved) }
    }

    func send(_ bytes: [UInt8], to: TransportAddress) {
        for a in interfaces {
            var iface = in_addr()
            withUnsafeMutableBytes(of: &iface) { $0.copyBytes(from: a.ip) }
            setsockopt(fd, Int32(IPPROTO_IP), IP_MULTICAST_IF, &iface, socklen_t(MemoryLayout<in_addr>.size))
            _ = to.withSockAddr { sa, len in bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, 0, sa, len) } }
        }
    }

    func run() {
        var buf = [UInt8](repeating: 0, count: 9000)
        while true {
            var storage = sockaddr_storage()
            var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let n = withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, &buf, buf.count, 0, $0, &len) }
            }
            if n < 0 { if errno == EINTR { continue } else { return } }
            guard let from = withUnsafeBytes(of: &storage, { TransportAddress(storage: $0.baseAddress!) }),
                  let m = MDNSMessage(parsing: Array(buf[0..<n])) else { continue }
            if m.isResponse {
                for a in m.answers {
                    guard let ip = a.address, ip.count == 4 else { continue }
                    let callbacks: [@Sendable (TransportAddress?) -> Void] = state.withLock { s in
                        s.cache[a.name] = ip
                        guard let w = s.waiting.removeValue(forKey: a.name) else { return [] }
                        s.namesResolved += 1
                        return w
                    }
                    for c in callbacks { c(TransportAddress(ip: ip, port: 0)) }
                }
            } else {
                for q in m.questions where q.type == MDNSMessage.typeA || q.type == 255 {
                    guard let ip = state.withLock({ $0.ownNames[q.name] }) else { continue }
                    var answer = MDNSMessage.answer(q.name, address: ip)
                    answer.id = from.port == MDNSMessage.port ? 0 : m.id
                    let bytes = answer.serialize()
                    send(bytes, to: MDNSMessage.groupIPv4)
                    // A legacy (non-5353) asker only hears unicast replies.
                    if from.port != MDNSMessage.port || q.unicastResponse {
                        _ = from.withSockAddr { sa, l in bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, 0, sa, l) } }
                    }
                    state.withLock { $0.queriesAnswered += 1 }
                }
            }
        }
    }
}
