import Codecs
#if canImport(Glibc)
import Glibc
#endif
import NetworkCore
import Testing
@testable import VideoPhone

/// The receive side of call audio with the real Opus codec: packets in as the network
/// delivers them, 20 ms frames out as the speaker pulls them.
@Suite struct AudioPlayoutTests {
    /// 440 Hz at about a quarter of full scale, 20 ms per packet.
    func tonePackets(_ count: Int) throws -> [[UInt8]] {
        let enc = try OpusEncoder(channels: 1)
        var phase = 0.0
        return (0..<count).compactMap { _ in
            let pcm = (0..<960).map { _ -> Int16 in
                defer { phase += 2 * Double.pi * 440 / 48000 }
                return Int16(8000 * sin(phase))
            }
            return enc.encode(pcm)
        }
    }

    func render(_ p: AudioPlayout) -> (sound: Bool, rms: Double) {
        var frame = [Int16](repeating: 0, count: 960)
        let sound = frame.withUnsafeMutableBufferPointer { p.render(into: $0) }
        let rms = (frame.reduce(0.0) { $0 + Double($1) * Double($1) } / 960).squareRoot() / 32768
        return (sound, rms)
    }

    @Test func playsTheToneAndConcealsALostPacket() throws {
        let packets = try tonePackets(50)
        let p = AudioPlayout()
        #expect(render(p).sound == false)                 // nothing yet: silence, not sound
        let t0 = Instant.now()
        var levels: [Double] = []
        for (i, packet) in packets.enumerated() {
            if i != 20 {                                  // packet 20 is lost in the network
                p.insert(packet[...], sequence: UInt16(1000 + i), timestamp: UInt32(i * 960), arrival: t0 + .milliseconds(Int64(i * 20)))
            }
            if i >= 1 {
                let r = render(p)
                if r.sound { levels.append(r.rms) }
            }
        }
        let f = p.current
        #expect(f.decoded >= 45)
        #expect(f.concealedSamples == 960)                // exactly the lost packet's 20 ms
        #expect(f.recoveredByFEC == 1)                    // rebuilt from packet 21's in-band FEC
        #expect(f.audioLevel > 0.1 && f.audioLevel < 0.3)
        // The tone plays throughout (0.17), with no silent gap where the packet was lost:
        // the FEC copy is coarser, so that frame is quieter, but not silence.
        #expect(levels.count >= 45 && levels.allSatisfy { $0 > 0.05 }, "\(levels)")
        #expect(levels.filter { $0 > 0.15 }.count >= levels.count - 4)
        #expect(f.targetDelayMs == 40)
    }

    @Test func corruptPacketIsCountedAndConcealed() throws {
        let packets = try tonePackets(4)
        let p = AudioPlayout()
        let t0 = Instant.now()
        p.insert(packets[0][...], sequence: 1, timestamp: 0, arrival: t0)
        p.insert([0xFF, 0xFF, 0xFF][...], sequence: 2, timestamp: 960, arrival: t0 + .milliseconds(20))
        p.insert(packets[2][...], sequence: 3, timestamp: 1920, arrival: t0 + .milliseconds(40))
        for _ in 0..<3 { _ = render(p) }
        #expect(p.current.decodeErrors == 1)
        #expect(p.current.decoded == 2)
    }
}
