import CLinux
import NetworkCore
#if canImport(Glibc)
import Glibc
#endif

/// Datagrams for one address, copied into fixed slots and sent with one `sendmmsg`: a
/// pacer burst costs one system call instead of one `sendto` per packet. The slots and the
/// message headers are allocated once; adding and sending allocate nothing.
final class DatagramBatch {
    /// Datagrams held at most; a longer burst goes out in several calls.
    static let capacity = 16
    /// Bytes per slot: a full-size packet with its SRTP trailer. A larger datagram is not
    /// taken (the caller sends it alone).
    static let slotSize = 1600

    private let slots: UnsafeMutableRawPointer
    private let vectors: UnsafeMutablePointer<iovec>
    private let messages: UnsafeMutablePointer<clinux_mmsghdr>
    /// Datagrams waiting to be sent.
    private(set) var count = 0
    /// Datagrams the kernel refused (a full socket buffer), over the batch's life.
    private(set) var refused = 0
    /// `sendmmsg` calls made, over the batch's life.
    private(set) var systemCalls = 0

    init() {
        slots = .allocate(byteCount: DatagramBatch.capacity * DatagramBatch.slotSize, alignment: 16)
        vectors = .allocate(capacity: DatagramBatch.capacity)
        messages = .allocate(capacity: DatagramBatch.capacity)
        for i in 0..<DatagramBatch.capacity {
            vectors[i] = iovec(iov_base: slots + i * DatagramBatch.slotSize, iov_len: 0)
            messages[i] = clinux_mmsghdr(msg_hdr: msghdr(), msg_len: 0)
            messages[i].msg_hdr.msg_iov = vectors + i
            messages[i].msg_hdr.msg_iovlen = 1
        }
    }

    deinit {
        slots.deallocate()
        vectors.deallocate()
        messages.deallocate()
    }

    /// Copies `bytes` into the next slot; false when the batch is full or the datagram
    /// does not fit a slot.
    func append(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard count < DatagramBatch.capacity, bytes.count <= DatagramBatch.slotSize else { return false }
        if let base = bytes.baseAddress, bytes.count > 0 { vectors[count].iov_base.copyMemory(from: base, byteCount: bytes.count) }
        vectors[count].iov_len = bytes.count
        count += 1
        return true
    }

    func append(_ bytes: [UInt8]) -> Bool { bytes.withUnsafeBytes { append($0) } }

    /// Sends the datagrams held to `address` from `socket` and empties the batch. A datagram
    /// the kernel refuses is dropped (as a failed `sendto` would be) and the rest still go.
    /// Returns how many were refused.
    @discardableResult
    func send(from socket: UDPSocket, to address: TransportAddress) -> Int {
        guard count > 0 else { return 0 }
        defer { count = 0 }
        return address.withSockAddr { sa, len in
            for i in 0..<count {
                messages[i].msg_hdr.msg_name = UnsafeMutableRawPointer(mutating: sa)
                messages[i].msg_hdr.msg_namelen = len
            }
            var next = 0, failed = 0
            while next < count {
                let n = clinux_sendmmsg(socket.fd, messages + next, UInt32(count - next), Int32(MSG_DONTWAIT))
                systemCalls += 1
                if n > 0 {
                    next += Int(n)
                } else {
                    // The one at `next` failed: skip it, like a refused sendto.
                    failed += 1
                    next += 1
                }
            }
            refused += failed
            return failed
        }
    }
}
