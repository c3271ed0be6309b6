import NetworkCore
#if canImport(Glibc)
import Glibc
#endif

/// Watches the kernel's address table over rtnetlink (RTM_NEWADDR / RTM_DELADDR) and
/// calls back, debounced, when the set of usable addresses changed: the cue for an ICE
/// restart when the device moves networks.
public final class AddressMonitor: @unchecked Sendable {
    let fd: Int32
    let includeLoopback: Bool
    private let onChange: @Sendable ([TransportAddress]) -> Void
    private let loop = DeviceThread()
    private let waker = Waker()

    public init?(includeLoopback: Bool, onChange: @escaping @Sendable ([TransportAddress]) -> Void) {
        // AF_NETLINK = 16, NETLINK_ROUTE = 0; groups: RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR.
        let fd = socket(16, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        // struct sockaddr_nl { sa_family_t nl_family; unsigned short nl_pad; __u32 nl_pid; __u32 nl_groups; }
        var addr = [UInt8](repeating: 0, count: 12)
        addr[0] = 16
        let groups: UInt32 = 0x10 | 0x100
        withUnsafeBytes(of: groups.littleEndian) { for (i, b) in $0.enumerated() { addr[8 + i] = b } }
        let ok = addr.withUnsafeBytes { bind(fd, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), 12) } == 0
        guard ok else { close(fd); return nil }
        self.fd = fd
        self.includeLoopback = includeLoopback
        self.onChange = onChange
        loop.start(name: "addr-monitor") { [self] in self.run() }
    }

    /// Ends the monitor's thread and closes its socket.
    public func stop() {
        loop.stop(wake: { waker.wake() })
        close(fd)
    }

    func run() {
        var known = Set(localInterfaceAddresses(includeLoopback: includeLoopback))
        var buf = [UInt8](repeating: 0, count: 8192)
        while loop.isRunning {
            guard waker.wait(.seconds(3600), readable: fd) else { continue }
            let n = recv(fd, &buf, buf.count, Int32(MSG_DONTWAIT))
            if n < 0 { if errno == EINTR || errno == EAGAIN { continue } else { return } }
            // nlmsghdr: length (4), type (2), ...; 20 = RTM_NEWADDR, 21 = RTM_DELADDR.
            var offset = 0
            var relevant = false
            while offset + 16 <= n {
                let len = Int(UInt32(buf[offset]) | UInt32(buf[offset + 1]) << 8 | UInt32(buf[offset + 2]) << 16 | UInt32(buf[offset + 3]) << 24)
                let type = UInt16(buf[offset + 4]) | UInt16(buf[offset + 5]) << 8
                if type == 20 || type == 21 { relevant = true }
                guard len >= 16 else { break }
                offset += (len + 3) & ~3
            }
            guard relevant else { continue }
            // Let a burst of changes (add, then delete) settle (and stop promptly meanwhile).
            waker.wait(.milliseconds(150))
            guard loop.isRunning else { return }
            let now = Set(localInterfaceAddresses(includeLoopback: includeLoopback))
            if now != known {
                known = now
                onChange(Array(now))
            }
        }
    }
}
