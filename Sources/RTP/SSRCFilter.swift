import NetworkCore

/// Which synchronisation source a media stream takes packets from (RFC 3550 §8.2). SRTP
/// only proves a packet came from a key holder; a peer (or a buggy stack) may still send
/// other SSRCs with the same payload type, and mixing them into one frame assembler or
/// jitter buffer garbles both. Signalled SSRCs (`a=ssrc`) are taken as given; without
/// them the first SSRC seen is kept, and another is taken over only after the kept one
/// has been silent for ``handoverSilence`` (a sender that restarted).
public struct SSRCFilter: Sendable {
    public static let handoverSilence: Duration = .seconds(2)
    public private(set) var signalled: [UInt32]
    public private(set) var current: UInt32?
    private var lastSeen: Instant?
    /// Packets refused because of their SSRC.
    public private(set) var refused: UInt64 = 0

    public init(signalled: [UInt32] = []) { self.signalled = signalled }

    /// Whether to take a packet from `ssrc` arriving at `now`.
    public mutating func accept(_ ssrc: UInt32, now: Instant) -> Bool {
        if !signalled.isEmpty {
            guard signalled.contains(ssrc) else { refused += 1; return false }
            current = ssrc
            lastSeen = now
            return true
        }
        if let c = current, c != ssrc, let last = lastSeen, now - last < Self.handoverSilence {
            refused += 1
            return false
        }
        current = ssrc
        lastSeen = now
        return true
    }
}
