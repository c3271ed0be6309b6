#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An IP address and UDP/TCP port, as a value: what ICE candidates, STUN
/// XOR-MAPPED-ADDRESS and the socket layer exchange.
public struct TransportAddress: Hashable, Sendable, CustomStringConvertible {
    public enum Family: Sendable { case ipv4, ipv6 }
    /// 4 or 16 address bytes, network order.
    public let ip: [UInt8]
    public let port: UInt16

    public init?(ip: [UInt8], port: UInt16) {
        guard ip.count == 4 || ip.count == 16 else { return nil }
        self.ip = ip
        self.port = port
    }

    /// Parses a numeric IPv4 or IPv6 literal (no brackets, no names).
    public init?(host: String, port: UInt16) {
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 {
            self.ip = withUnsafeBytes(of: &v4) { Array($0) }
            self.port = port
            return
        }
        var v6 = in6_addr()
        let h = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        if inet_pton(AF_INET6, h, &v6) == 1 {
            self.ip = withUnsafeBytes(of: &v6) { Array($0) }
            self.port = port
            return
        }
        return nil
    }

    public var family: Family { ip.count == 4 ? .ipv4 : .ipv6 }
    public var isLoopback: Bool {
        ip.count == 4 ? ip[0] == 127 : ip == [UInt8](repeating: 0, count: 15) + [1]
    }
    public var isLinkLocal: Bool {
        ip.count == 4 ? (ip[0] == 169 && ip[1] == 254) : (ip[0] == 0xFE && (ip[1] & 0xC0) == 0x80)
    }

    /// The numeric host part, e.g. `192.0.2.1` or `2001:db8::1`.
    public var host: String {
        var buf = [CChar](repeating: 0, count: 64)
        let family = ip.count == 4 ? AF_INET : AF_INET6
        _ = ip.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &buf, socklen_t(buf.count)) }
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public var description: String {
        family == .ipv4 ? "\(host):\(port)" : "[\(host)]:\(port)"
    }

    /// Fills a `sockaddr_storage` for `sendto`/`bind`; returns its length.
    public func withSockAddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) throws -> R) rethrows -> R {
        var storage = sockaddr_storage()
        let len: socklen_t
        if ip.count == 4 {
            len = socklen_t(MemoryLayout<sockaddr_in>.size)
            withUnsafeMutableBytes(of: &storage) { raw in
                let sin = raw.baseAddress!.assumingMemoryBound(to: sockaddr_in.self)
                sin.pointee.sin_family = sa_family_t(AF_INET)
                sin.pointee.sin_port = port.bigEndian
                withUnsafeMutableBytes(of: &sin.pointee.sin_addr) { $0.copyBytes(from: ip) }
            }
        } else {
            len = socklen_t(MemoryLayout<sockaddr_in6>.size)
            withUnsafeMutableBytes(of: &storage) { raw in
                let sin6 = raw.baseAddress!.assumingMemoryBound(to: sockaddr_in6.self)
                sin6.pointee.sin6_family = sa_family_t(AF_INET6)
                sin6.pointee.sin6_port = port.bigEndian
                withUnsafeMutableBytes(of: &sin6.pointee.sin6_addr) { $0.copyBytes(from: ip) }
            }
        }
        return try withUnsafePointer(to: &storage) {
            try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { try body($0, len) }
        }
    }

    /// Reads an address out of a `sockaddr_storage` filled by `recvfrom`/`getsockname`.
    public init?(storage: UnsafeRawPointer) {
        let family = storage.load(as: sa_family_t.self)
        if family == sa_family_t(AF_INET) {
            let sin = storage.load(as: sockaddr_in.self)
            var addr = sin.sin_addr
            self.ip = withUnsafeBytes(of: &addr) { Array($0) }
            self.port = UInt16(bigEndian: sin.sin_port)
        } else if family == sa_family_t(AF_INET6) {
            let sin6 = storage.load(as: sockaddr_in6.self)
            var addr = sin6.sin6_addr
            let bytes = withUnsafeBytes(of: &addr) { Array($0) }
            // Show v4-mapped addresses as plain IPv4 so they compare equal to candidates.
            if bytes.prefix(12) == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF] {
                self.ip = Array(bytes.suffix(4))
            } else {
                self.ip = bytes
            }
            self.port = UInt16(bigEndian: sin6.sin6_port)
        } else {
            return nil
        }
    }
}
