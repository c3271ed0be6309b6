/// The fuzz targets, by the name `FUZZ_TARGET` selects.
///
/// Adding a target takes three steps:
/// 1. write `func fuzzSomething(_ data: [UInt8])` in a file of this directory: it feeds
///    `data` to the parser (and whatever consumes its result) and calls ``require(_:_:)``
///    for every property that must hold, so a violation stops the fuzzer like a crash;
/// 2. add one line `("something", fuzzSomething),` below;
/// 3. put a few small seed inputs in `Tests/Fuzz/corpus/something/` (real messages are
///    best; `videophone-fuzz --write-seeds Tests/Fuzz/corpus` writes the generated ones).
/// `toolchain/fuzz.sh` and the replay in `make test` then run it with the others.
let fuzzTargets: [(name: String, run: @Sendable ([UInt8]) -> Void)] = [
    ("stun", fuzzSTUN),                     // STUN messages: parse, accessors, integrity, round trip
    ("turn", fuzzTURN),                     // TURN client fed server messages, ChannelData, time
    ("ice", fuzzICE),                       // a=candidate values; ICE agent fed binding requests/responses
    ("sdp", fuzzSDP),                       // SDP parse, accessors, round trip
    ("jsep", fuzzJSEP),                     // a remote offer answered; a remote answer accepted
    ("rtp", fuzzRTP),                       // RTP packets and header extensions, round trip
    ("rtcp", fuzzRTCP),                     // compound RTCP, round trip
    ("h264", fuzzH264),                     // H.264 RTP payloads depacketized; packetizer round trip
    ("h264-assembler", fuzzH264Assembler),  // frame assembly and NACK from a packet sequence
    ("jitterbuffer", fuzzJitterBuffer),     // audio jitter buffer fed packets and playout ticks
    ("mdns", fuzzMDNS),                     // mDNS messages, round trip
    ("toml", fuzzTOML),                     // TOML reader and config validation
    ("http", fuzzHTTP),                     // HTTP request/response parser, in pieces and whole
    ("trickle", fuzzTrickle),               // trickle-ICE fragments from a PATCH
    ("control", fuzzControl),               // control-socket command lines
    ("dtls-records", fuzzDTLSRecords),      // the record check in front of OpenSSL
    ("wav", fuzzWAV),                       // the simulator's talker file (16-bit PCM WAV)
    ("signal-message", fuzzSignalMessage),  // signed broker signalling: parse, verify, sign round trip, replay
    ("h264-decoder", fuzzH264Decoder),      // received access units through libavcodec onto a screen
]

/// Stops the run when a property does not hold: the fuzzer reports it like a crash and
/// keeps the input.
func require(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
             file: StaticString = #fileID, line: UInt = #line) {
    if !condition() { fatalError("fuzz property failed: \(message())", file: file, line: line) }
}

/// Reads structure out of fuzz input: never fails, yields zeros past the end.
struct FuzzReader {
    let bytes: [UInt8]
    var offset = 0
    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var isAtEnd: Bool { offset >= bytes.count }

    mutating func u8() -> UInt8 {
        guard offset < bytes.count else { return 0 }
        defer { offset += 1 }
        return bytes[offset]
    }
    mutating func u16() -> UInt16 { UInt16(u8()) << 8 | UInt16(u8()) }
    mutating func u32() -> UInt32 { UInt32(u16()) << 16 | UInt32(u16()) }
    mutating func bool() -> Bool { u8() & 1 != 0 }

    /// Up to `count` bytes.
    mutating func take(_ count: Int) -> [UInt8] {
        let n = max(0, min(count, bytes.count - offset))
        defer { offset += n }
        return Array(bytes[offset..<offset + n])
    }
    /// A chunk with a 16-bit length in front (cut short at the end of the input).
    mutating func chunk() -> [UInt8] { take(Int(u16())) }
    mutating func rest() -> [UInt8] { take(bytes.count - offset) }
}
