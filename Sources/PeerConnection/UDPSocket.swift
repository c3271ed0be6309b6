import NetworkCore
#if canImport(Glibc)
import Glibc
#endif

/// Why a socket could not be opened.
public struct SocketError: Error, CustomStringConvertible {
    public let description: String
    init(_ what: String) { description = "\(what): \(String(cString: strerror(errno)))" }
}

/// A non-blocking UDP socket bound to one local address: one ICE host candidate's base.
public final class UDPSocket: @unchecked Sendable {
    public let fd: Int32
    public let localAddress: TransportAddress

    public init(bindTo address: TransportAddress) throws(SocketError) {
        let family = address.family == .ipv4 ? AF_INET : AF_INET6
        let fd = socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError("socket") }
        var one: Int32 = 1
        if family == AF_INET6 { setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size)) }
        // Room for a keyframe burst at 720p without drops in the kernel.
        var size: Int32 = 1 << 20
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        let rc = address.withSockAddr { bind(fd, $0, $1) }
        guard rc == 0 else { let e = SocketError("bind \(address)"); close(fd); throw e }
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        guard let bound = withUnsafeBytes(of: &storage, { TransportAddress(storage: $0.baseAddress!) }) else {
            close(fd); throw SocketError("getsockname")
        }
        self.fd = fd
        self.localAddress = bound
    }

    deinit { close(fd) }

    /// Sends one datagram; returns false when the kernel refused it (counted by callers).
    @discardableResult
    public func send(_ bytes: UnsafeRawBufferPointer, to address: TransportAddress) -> Bool {
        address.withSockAddr { sa, len in sendto(fd, bytes.baseAddress, bytes.count, Int32(MSG_DONTWAIT), sa, len) } >= 0
    }

    @discardableResult
    public func send(_ bytes: [UInt8], to address: TransportAddress) -> Bool {
        bytes.withUnsafeBytes { send($0, to: address) }
    }

    /// Receives one datagram into `buffer`; returns its length and source, or nil when none waits.
    public func receive(into buffer: UnsafeMutableRawBufferPointer) -> (Int, TransportAddress)? {
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let n = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, buffer.baseAddress, buffer.count, 0, $0, &len) }
        }
        guard n >= 0 else { return nil }
        // In a call nearly every datagram comes from the same peer: the address read last
        // is reused, so receiving allocates nothing (an address holds its bytes in an array).
        let same = lastSourceLength == len && withUnsafeBytes(of: &storage) { s in
            withUnsafeBytes(of: &lastSource) { memcmp($0.baseAddress!, s.baseAddress!, Int(len)) == 0 }
        }
        if same, let from = lastSourceAddress { return (n, from) }
        guard let from = withUnsafeBytes(of: &storage, { TransportAddress(storage: $0.baseAddress!) }) else { return nil }
        lastSource = storage
        lastSourceLength = len
        lastSourceAddress = from
        return (n, from)
    }

    // The last source address (receive is called by the socket's one reading thread).
    private var lastSource = sockaddr_storage()
    private var lastSourceLength: socklen_t = 0
    private var lastSourceAddress: TransportAddress?
}

/// The machine's usable unicast addresses, for host candidates.
public func localInterfaceAddresses(includeLoopback: Bool, includeIPv6: Bool = true) -> [TransportAddress] {
    var list: UnsafeMutablePointer<ifaddrs>? = nil
    guard getifaddrs(&list) == 0 else { return [] }
    defer { freeifaddrs(list) }
    var out: [TransportAddress] = []
    var p = list
    while let ifa = p {
        defer { p = ifa.pointee.ifa_next }
        let flags = Int32(ifa.pointee.ifa_flags)
        guard flags & Int32(IFF_UP) != 0, let sa = ifa.pointee.ifa_addr else { continue }
        let family = Int32(sa.pointee.sa_family)
        guard family == AF_INET || (family == AF_INET6 && includeIPv6) else { continue }
        guard let a = TransportAddress(storage: UnsafeRawPointer(sa)) else { continue }
        if a.isLinkLocal { continue }
        if a.isLoopback != (flags & Int32(IFF_LOOPBACK) != 0) { continue }
        if a.isLoopback && !includeLoopback { continue }
        let addr = TransportAddress(ip: a.ip, port: 0)!
        if !out.contains(addr) { out.append(addr) }
    }
    return out
}
