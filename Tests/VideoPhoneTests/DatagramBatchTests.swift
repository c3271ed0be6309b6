import NetworkCore
import Testing
@testable import PeerConnection

/// The pacer's burst on the wire: datagrams held in a ``DatagramBatch`` leave with one
/// `sendmmsg`, each as its own datagram, in order (loopback only).
@Suite struct DatagramBatchTests {
    func pair() throws -> (UDPSocket, UDPSocket) {
        let any = TransportAddress(host: "127.0.0.1", port: 0)!
        return (try UDPSocket(bindTo: any), try UDPSocket(bindTo: any))
    }

    /// Reads what waits on `socket` (non-blocking; loopback delivers at once).
    func drain(_ socket: UDPSocket) -> [[UInt8]] {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 2048, alignment: 16)
        defer { buffer.deallocate() }
        var out: [[UInt8]] = []
        while let (n, _) = socket.receive(into: buffer) { out.append(Array(buffer[0..<n])) }
        return out
    }

    @Test func aBurstArrivesAsSeparateDatagramsInOrderWithOneCall() throws {
        let (a, b) = try pair()
        let batch = DatagramBatch()
        let sent = (0..<5).map { i in [UInt8](repeating: UInt8(i), count: 100 + i * 250) }
        for d in sent { #expect(batch.append(d)) }
        #expect(batch.count == 5)
        #expect(batch.send(from: a, to: b.localAddress) == 0)
        #expect(batch.count == 0)
        #expect(batch.systemCalls == 1)
        #expect(drain(b) == sent)
    }

    @Test func aFullBatchOrAnOversizeDatagramIsRefused() throws {
        let (a, b) = try pair()
        let batch = DatagramBatch()
        #expect(!batch.append([UInt8](repeating: 1, count: DatagramBatch.slotSize + 1)))
        for i in 0..<DatagramBatch.capacity { #expect(batch.append([UInt8(i)])) }
        #expect(!batch.append([0xFF]))
        batch.send(from: a, to: b.localAddress)
        #expect(drain(b) == (0..<DatagramBatch.capacity).map { [UInt8($0)] })
        // Empty again: it takes the next burst.
        #expect(batch.append([0xFF]))
    }
}
