import Logging
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
///
/// Lookups are entries in a bounded table (``MDNSResolverTable``) that the one thread
/// works through: it sends the queries, repeats them, and times them out. No thread per
/// name. Only answers to our own questions are cached, for their TTL, a bounded few.
public final class MDNSService: @unchecked Sendable {
    let fd: Int32
    let interfaces: [TransportAddress]
    private let state = Locked(State())
    private let waker = Waker()
    private let refusals: RefusalLog
    public let port: UInt16

    typealias Completion = @Sendable ([UInt8]?) -> Void

    struct State {
        var ownNames: [String: [UInt8]] = [:]
        var table = MDNSResolverTable<Completion>()
        /// Names whose first query the thread still has to send.
        var toQuery: [String] = []
        var queriesAnswered = 0
        var namesResolved = 0
    }

    /// Names this device answers for, at most (a few per call).
    public static let maxOwnNames = 64

    /// - Parameter interfaces: IPv4 addresses to join the group and send on.
    public init(interfaces: [TransportAddress], logger: Logger = Logger(label: "videophone.mdns")) throws(SocketError) {
        self.refusals = RefusalLog(logger: logger)
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
        startProcessThread(name: "mdns") { [self] in self.run() }
    }

    /// Answers queries for `name` with `address` from now on.
    public func register(name: String, address: TransportAddress) {
        let full = state.withLock { s -> Bool in
            guard s.ownNames.count < MDNSService.maxOwnNames || s.ownNames[name.lowercased()] != nil else { return true }
            s.ownNames[name.lowercased()] = address.ip
            return false
        }
        if full { refusals.refused("mDNS name registration", source: name, reason: "\(MDNSService.maxOwnNames) names registered already") }
    }

    public func unregister(name: String) {
        _ = state.withLock { $0.ownNames.removeValue(forKey: name.lowercased()) }
    }

    /// Resolves `name`; calls `completion` once with the address, or nil after `timeout`
    /// (at once when the lookup table is full; that is logged).
    public func resolve(_ name: String, port: UInt16, timeout: Duration = .seconds(3), completion: @escaping @Sendable (TransportAddress?) -> Void) {
        let key = name.lowercased()
        let now = Instant.now()
        let done: Completion = { ip in completion(ip.flatMap { TransportAddress(ip: $0, port: port) }) }
        let result = state.withLock { s -> MDNSResolverTable<Completion>.AskResult in
            let r = s.table.ask(key, waiter: done, timeout: timeout, now: now)
            if case .waiting(true) = r { s.toQuery.append(key) }
            return r
        }
        switch result {
        case .cached(let ip):
            done(ip)
        case .waiting(let queryNow):
            if queryNow { waker.wake() }
        case .refused(let reason):
            refusals.refused("mDNS lookup", source: name, reason: reason, now: now)
            done(nil)
        }
    }

    public var counters: (queriesAnswered: Int, namesResolved: Int) {
        state.withLock { ($0.queriesAnswered, $0.namesResolved) }
    }

    /// Lookups under way and answers cached (the table's bounds hold these down).
    public var tableSizes: (pending: Int, cached: Int, unsolicitedIgnored: UInt64) {
        state.withLock { ($0.table.pendingCount, $0.table.cachedCount, $0.table.unsolicitedAnswers) }
    }

    func send(_ bytes: [UInt8], to: TransportAddress) {
        for a in interfaces {
            var iface = in_addr()
            withUnsafeMutableBytes(of: &iface) { $0.copyBytes(from: a.ip) }
            setsockopt(fd, Int32(IPPROTO_IP), IP_MULTICAST_IF, &iface, socklen_t(MemoryLayout<in_addr>.size))
            _ = to.withSockAddr { sa, len in bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, 0, sa, len) } }
        }
    }

    /// Sends due queries and times out lookups; returns how long the thread may sleep.
    func runTimers() -> Duration {
        let now = Instant.now()
        let (first, again, timedOut, next) = state.withLock { s in
            let first = s.toQuery
            s.toQuery.removeAll()
            let (again, timedOut) = s.table.poll(now: now)
            return (first, again, timedOut, s.table.nextDeadline)
        }
        for name in first + again { send(MDNSMessage.query(name).serialize(), to: MDNSMessage.groupIPv4) }
        for c in timedOut { c(nil) }
        return next.map { min(.seconds(1), $0 - now) } ?? .seconds(1)
    }

    func run() {
        var buf = [UInt8](repeating: 0, count: 9000)
        while true {
            let sleep = runTimers()
            guard waker.wait(sleep, readable: fd) else { continue }
            var storage = sockaddr_storage()
            var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let n = withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, &buf, buf.count, Int32(MSG_DONTWAIT), $0, &len) }
            }
            if n < 0 { if errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK { continue } else { return } }
            guard let from = withUnsafeBytes(of: &storage, { TransportAddress(storage: $0.baseAddress!) }),
                  let m = MDNSMessage(parsing: Array(buf[0..<n])) else { continue }
            if m.isResponse {
                let now = Instant.now()
                for a in m.answers {
                    guard let ip = a.address, ip.count == 4 else { continue }
                    // Kept only if we asked about the name (unsolicited answers are ignored).
                    let callbacks: [Completion] = state.withLock { s in
                        guard let w = s.table.answer(a.name, ip: ip, ttl: a.ttl, now: now) else { return [] }
                        if !w.isEmpty { s.namesResolved += 1 }
                        return w
                    }
                    for c in callbacks { c(ip) }
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
