#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A point on a monotonic clock, in nanoseconds. State machines take these as
/// arguments instead of reading a clock, so tests drive time directly.
public struct Instant: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var nanoseconds: UInt64
    public init(nanoseconds: UInt64) { self.nanoseconds = nanoseconds }

    /// Now, on CLOCK_MONOTONIC.
    public static func now() -> Instant {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Instant(nanoseconds: UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec))
    }

    public static func < (a: Instant, b: Instant) -> Bool { a.nanoseconds < b.nanoseconds }
    public static func + (a: Instant, d: Duration) -> Instant {
        let ns = d.nanosecondsInt
        return Instant(nanoseconds: ns >= 0 ? a.nanoseconds &+ UInt64(ns) : a.nanoseconds &- UInt64(-ns))
    }
    public static func - (a: Instant, d: Duration) -> Instant { a + .nanoseconds(-d.nanosecondsInt) }
    /// The time from `b` to `a`, zero if `b` is later.
    public static func - (a: Instant, b: Instant) -> Duration {
        a.nanoseconds >= b.nanoseconds ? .nanoseconds(Int64(a.nanoseconds - b.nanoseconds)) : .zero
    }
    public var description: String { "\(Double(nanoseconds) / 1e9)s" }
}

extension Duration {
    /// Whole nanoseconds, saturating.
    public var nanosecondsInt: Int64 {
        let (s, a) = components
        return s * 1_000_000_000 + a / 1_000_000_000
    }
    public var milliseconds: Double { Double(nanosecondsInt) / 1e6 }
    public var seconds: Double { Double(nanosecondsInt) / 1e9 }
}

/// Wall-clock time as a 64-bit NTP timestamp (RFC 5905: seconds since 1900 in the high
/// 32 bits, fraction in the low 32), used by RTCP SR and abs-capture-time.
public enum NTPTime {
    public static let unixEpochOffset: UInt64 = 2_208_988_800

    public static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return fromUnix(seconds: UInt64(ts.tv_sec), nanoseconds: UInt64(ts.tv_nsec))
    }

    public static func fromUnix(seconds: UInt64, nanoseconds: UInt64) -> UInt64 {
        ((seconds + unixEpochOffset) << 32) | ((nanoseconds << 32) / 1_000_000_000)
    }

    /// A span of time in NTP's 32.32 fixed point, for arithmetic on timestamps. Never
    /// overflows: a negative span is 0, and a span of more than 2³² s is cut there.
    public static func span(nanoseconds: Int64) -> UInt64 {
        let ns = UInt64(max(0, nanoseconds))
        let seconds = min(ns / 1_000_000_000, 0xFFFF_FFFF)
        return seconds << 32 | ((ns % 1_000_000_000) << 32) / 1_000_000_000
    }

    /// Converts an NTP timestamp to nanoseconds since the Unix epoch.
    public static func toUnixNanoseconds(_ ntp: UInt64) -> Int64 {
        let secs = Int64(ntp >> 32) - Int64(unixEpochOffset)
        let frac = Int64(((ntp & 0xFFFF_FFFF) * 1_000_000_000) >> 32)
        return secs * 1_000_000_000 + frac
    }

    /// The middle 32 bits, as carried in RTCP LSR/DLSR fields.
    public static func middle32(_ ntp: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: ntp >> 16) }
}

/// Wall-clock nanoseconds since the Unix epoch.
public func wallClockNanoseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}

/// Cryptographically random bytes (the system generator reads getrandom(2) on Linux).
public func secureRandomBytes(_ count: Int) -> [UInt8] {
    var rng = SystemRandomNumberGenerator()
    return (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
}

/// A random token of `length` characters from the ICE character set (RFC 8839 ice-char).
public func randomICEString(_ length: Int) -> String {
    let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
    return String(secureRandomBytes(length).map { alphabet[Int($0 & 63)] })
}

/// A small, fast pseudo-random generator (SplitMix64) for what must repeat under a seed:
/// timer jitter in state machines that tests drive on virtual time. Not for secrets.
public struct SeededRandomGenerator: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
