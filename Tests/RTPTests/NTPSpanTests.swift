import NetworkCore
import Testing

/// Spans of time in NTP's 32.32 fixed point (abs-capture-time's ages) never trap, however
/// old a driver's timestamp is.
@Suite struct NTPSpanTests {
    @Test func aSpanIsSecondsAndAFractionOfTwoToTheThirtySecond() {
        #expect(NTPTime.span(nanoseconds: 0) == 0)
        #expect(NTPTime.span(nanoseconds: 1_000_000_000) == 1 << 32)
        #expect(NTPTime.span(nanoseconds: 500_000_000) == 1 << 31)
        #expect(NTPTime.span(nanoseconds: 2_250_000_000) == 2 << 32 | 1 << 30)
    }

    @Test func oldNegativeAndAbsurdSpansDoNotOverflow() {
        // 4.3 s overflowed the old `ns * 2^32 / 1e9` (a camera's stale buffer on the board).
        #expect(NTPTime.span(nanoseconds: 4_300_000_000) == 4 << 32 | NTPTime.span(nanoseconds: 300_000_000))
        #expect(NTPTime.span(nanoseconds: -5) == 0)
        #expect(NTPTime.span(nanoseconds: .max) >> 32 == 0xFFFF_FFFF)
    }
}
