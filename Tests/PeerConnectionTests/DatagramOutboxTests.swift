import NetworkCore
import PeerConnection
import Testing

@Suite struct DatagramOutboxTests {
    let a = TransportAddress(host: "10.0.0.1", port: 1)!
    let b = TransportAddress(host: "10.0.0.2", port: 2)!

    @Test func drainsInOrderWithDestinationsAndEmpties() {
        let box = DatagramOutbox()
        box.append([1, 2, 3], to: a, path: 0)
        box.append([4], to: b, path: 3)
        var seen: [([UInt8], TransportAddress, Int)] = []
        box.drain { bytes, to, path in seen.append((Array(bytes), to, path)) }
        #expect(seen.map(\.0) == [[1, 2, 3], [4]])
        #expect(seen.map(\.1) == [a, b] && seen.map(\.2) == [0, 3])
        #expect(box.count == 0)
        var again = 0
        box.drain { _, _, _ in again += 1 }
        #expect(again == 0)
    }

    @Test func aBurstPastTheSlotsSpillsInOrderAndPastTheBoundIsDroppedAndCounted() {
        let box = DatagramOutbox()
        let total = DatagramOutbox.capacity + DatagramOutbox.spillCapacity
        for i in 0..<(total + 5) { box.append([UInt8(truncatingIfNeeded: i), UInt8(truncatingIfNeeded: i >> 8)], to: a, path: 0) }
        #expect(box.dropped == 5)
        var order: [Int] = []
        box.drain { bytes, _, _ in order.append(Int(bytes[0]) | Int(bytes[1]) << 8) }
        #expect(order == Array(0..<total))
        // An oversized datagram goes to the spill too, whole.
        box.append([UInt8](repeating: 7, count: DatagramOutbox.slotSize + 1), to: b, path: 1)
        var sizes: [Int] = []
        box.drain { bytes, _, _ in sizes.append(bytes.count) }
        #expect(sizes == [DatagramOutbox.slotSize + 1])
    }
}
