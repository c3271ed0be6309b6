@testable import PeerConnection
import Testing

/// What the peer's description gives the RTP header (mid, extension IDs) must fit the
/// one-byte form, or it is left out: a mid over 256 bytes once trapped on its length byte.
@Suite struct HeaderExtensionLimitTests {
    @Test func midsAndIDsOutsideTheOneByteFormAreLeftOut() {
        #expect(MediaSender.oneByteValue("0") == [0x30])
        #expect(MediaSender.oneByteValue(String(repeating: "m", count: 16)).count == 16)
        #expect(MediaSender.oneByteValue(String(repeating: "m", count: 17)).isEmpty)
        #expect(MediaSender.oneByteValue(String(repeating: "m", count: 300)).isEmpty)
        #expect(MediaSender.oneByteID(1) == 1 && MediaSender.oneByteID(14) == 14)
        #expect(MediaSender.oneByteID(0) == nil && MediaSender.oneByteID(15) == nil && MediaSender.oneByteID(200) == nil && MediaSender.oneByteID(nil) == nil)
    }
}
