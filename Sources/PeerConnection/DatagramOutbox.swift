import NetworkCore

/// The datagrams a ``CallCore`` wants sent, in order, until its driver takes them: the
/// core's only output to the network (it owns no socket). Each datagram is copied into a
/// fixed slot with the local candidate to send from and the address to send to; slots are
/// allocated once (pages touched only as slots are used), so appending allocates nothing.
///
/// Bounded: the driver empties it after every input, and one input makes at most a burst
/// (the first keyframe, unpaced, is the largest). Past ``capacity`` datagrams spill into
/// arrays (allocated: only a stuck pacer dumping its whole pool gets there), up to
/// ``spillCapacity`` more; past that a datagram is dropped and counted in ``dropped``, as a
/// full socket buffer would drop it.
public final class DatagramOutbox {
    /// Datagrams held at most between two drains.
    public static let capacity = 256
    /// Bytes per slot: a full-size packet with its SRTP trailer, or a DTLS record.
    public static let slotSize = 1600
    /// Datagrams held beyond the slots at most (the sender's pool is 512 packets).
    public static let spillCapacity = 1024
    private var spill: [(bytes: [UInt8], to: TransportAddress, path: Int)] = []

    private let slots: UnsafeMutableRawPointer
    private var lengths: [Int]
    private var destinations: [(path: Int, to: TransportAddress)?]
    /// Datagrams waiting in the slots.
    public private(set) var count = 0
    /// Datagrams dropped over the outbox's life: it was full, or one did not fit a slot.
    public private(set) var dropped = 0

    public init() {
        slots = .allocate(byteCount: DatagramOutbox.capacity * DatagramOutbox.slotSize, alignment: 16)
        lengths = Array(repeating: 0, count: DatagramOutbox.capacity)
        destinations = Array(repeating: nil, count: DatagramOutbox.capacity)
    }

    deinit { slots.deallocate() }

    /// Queues `bytes` for `to`, sent from local candidate `path`; false when dropped.
    @discardableResult
    public func append(_ bytes: UnsafeRawBufferPointer, to: TransportAddress, path: Int) -> Bool {
        guard count < DatagramOutbox.capacity, bytes.count <= DatagramOutbox.slotSize else {
            guard spill.count < DatagramOutbox.spillCapacity else {
                dropped += 1
                return false
            }
            spill.append((Array(bytes), to, path))
            return true
        }
        if let base = bytes.baseAddress, bytes.count > 0 {
            (slots + count * DatagramOutbox.slotSize).copyMemory(from: base, byteCount: bytes.count)
        }
        lengths[count] = bytes.count
        destinations[count] = (path, to)
        count += 1
        return true
    }

    @discardableResult
    public func append(_ bytes: [UInt8], to: TransportAddress, path: Int) -> Bool {
        bytes.withUnsafeBytes { append($0, to: to, path: path) }
    }

    /// Calls `body` with each datagram held, oldest first (the bytes are valid only during
    /// the call), then empties the outbox.
    public func drain(_ body: (_ bytes: UnsafeRawBufferPointer, _ to: TransportAddress, _ path: Int) -> Void) {
        for i in 0..<count {
            let d = destinations[i]!
            body(UnsafeRawBufferPointer(start: slots + i * DatagramOutbox.slotSize, count: lengths[i]), d.to, d.path)
            destinations[i] = nil
        }
        count = 0
        guard !spill.isEmpty else { return }
        for d in spill { d.bytes.withUnsafeBytes { body($0, d.to, d.path) } }
        spill.removeAll()
    }
}
