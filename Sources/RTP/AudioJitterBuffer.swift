import NetworkCore

/// Orders received audio packets and hands out one per playout tick (20 ms of Opus),
/// holding just enough to ride out the network's jitter.
///
/// The speaker's clock drives it: each ``pop()`` is one frame the device is about to play.
/// A missing packet comes out as ``Playout/lost(next:)`` (conceal it, with the following
/// packet's in-band FEC when that one is already here); an empty buffer re-buffers to the
/// target depth before playing again. The target follows the RFC 3550 interarrival jitter,
/// and a buffer that grew past it (a burst after a stall) drops its oldest frames so delay
/// does not stay high. I/O-free: arrival times come from the caller.
public struct AudioJitterBuffer: Sendable {
    public enum Playout: Equatable, Sendable {
        /// The packet for this tick.
        case packet([UInt8])
        /// This tick's packet is missing; `next` is the one after it if it has arrived
        /// (its in-band FEC can rebuild this one).
        case lost(next: [UInt8]?)
        /// Nothing to play: not started, or re-buffering after the stream stalled.
        case silence
    }

    /// Counters for stats (W3C inbound-rtp names where one fits).
    public struct Counters: Sendable, Equatable {
        /// Ticks played from a concealed (lost or late) packet.
        public var concealed = 0
        /// Packets that arrived after their tick had been played.
        public var late = 0
        /// Packets dropped to bring the delay back down after a burst.
        public var discarded = 0
        public var duplicates = 0
        /// Times the buffer ran dry and re-buffered.
        public var rebuffers = 0
        public init() {}
    }

    public let frameDuration: Duration
    public let frameSamples: UInt32
    public let minimumFrames: Int
    public let maximumFrames: Int
    public private(set) var counters = Counters()
    /// RFC 3550 interarrival jitter, in milliseconds.
    public private(set) var jitterMs = 0.0

    /// The ring: each slot's bytes, kept when it empties so the next packet into it is
    /// copied without allocating, and whether it holds a packet.
    private var slots: [[UInt8]]
    private var present: [Bool]
    private var nextSeq: UInt16?
    private var highestSeq: UInt16 = 0
    private var playing = false
    private var drySince = 0
    private var lastArrival: (Instant, UInt32)?

    public init(frameDuration: Duration = .milliseconds(20), frameSamples: UInt32 = 960,
                minimumFrames: Int = 2, maximumFrames: Int = 15) {
        self.frameDuration = frameDuration
        self.frameSamples = frameSamples
        self.minimumFrames = minimumFrames
        self.maximumFrames = maximumFrames
        slots = Array(repeating: [], count: 64)
        present = Array(repeating: false, count: 64)
    }

    /// The depth (in frames) playout starts at and drifts back to: the minimum, plus
    /// enough to cover about three times the measured jitter.
    public var targetFrames: Int {
        let frameMs = frameDuration.milliseconds
        let extra = Int((3 * jitterMs / frameMs).rounded(.up))
        return min(maximumFrames, max(minimumFrames, 1 + extra))
    }

    /// Frames buffered from the next one to play up to the newest received.
    public var bufferedFrames: Int {
        guard let nextSeq, isNewer(highestSeq, than: nextSeq) || highestSeq == nextSeq else { return 0 }
        return Int(highestSeq &- nextSeq) + 1
    }

    /// The delay the buffer currently adds, for stats.
    public var currentDelay: Duration { frameDuration * bufferedFrames }

    /// A received packet the caller owns as an array: the ring keeps the array itself.
    public mutating func insert(sequence: UInt16, timestamp: UInt32, payload: [UInt8], arrival: Instant) {
        insert(sequence: sequence, timestamp: timestamp, arrival: arrival) { $0 = payload }
    }

    /// A received packet in a slice of the datagram's buffer (AudioPlayout): copied into the
    /// ring's storage, with no allocation once the slot has held a packet.
    public mutating func insert(sequence: UInt16, timestamp: UInt32, payload: ArraySlice<UInt8>, arrival: Instant) {
        insert(sequence: sequence, timestamp: timestamp, arrival: arrival) { slot in
            slot.removeAll(keepingCapacity: true)
            // Room for Opus at up to 128 kbit/s (320 bytes per 20 ms) the first time.
            if slot.capacity < payload.count { slot.reserveCapacity(max(payload.count, 320)) }
            slot.append(contentsOf: payload)
        }
    }

    /// Files a packet; `store` puts its bytes into the slot.
    private mutating func insert(sequence: UInt16, timestamp: UInt32, arrival: Instant, store: (inout [UInt8]) -> Void) {
        timestampReference = (sequence, timestamp)
        updateJitter(timestamp: timestamp, arrival: arrival)
        guard let next = nextSeq else {
            nextSeq = sequence
            highestSeq = sequence
            present[slot(sequence)] = true
            store(&slots[slot(sequence)])
            return
        }
        if sequence != next && isNewer(next, than: sequence) {
            if playing { counters.late += 1; return }
            // Not playing yet: an earlier packet simply starts the stream earlier.
            if Int(highestSeq &- sequence) >= slots.count { return }
            nextSeq = sequence
        }
        if isNewer(sequence, than: highestSeq) {
            // A jump longer than the ring (the sender restarted): start over from it.
            if Int(sequence &- nextSeq!) >= slots.count {
                for i in present.indices { present[i] = false }
                nextSeq = sequence
                playing = false
            } else {
                // Clear the slots the ring is about to reuse.
                var s = highestSeq &+ 1
                while s != sequence { present[slot(s)] = false; s = s &+ 1 }
            }
            highestSeq = sequence
        } else if present[slot(sequence)] {
            counters.duplicates += 1
            return
        }
        present[slot(sequence)] = true
        store(&slots[slot(sequence)])
        if !playing {
            // While (re)buffering, the stream starts at the oldest packet actually here.
            while !present[slot(nextSeq!)] && nextSeq! != highestSeq { nextSeq = nextSeq! &+ 1 }
        }
        trimBacklog()
    }


    /// A received packet's sequence number and RTP timestamp: the timestamps of the others
    /// follow (one frame of ``frameSamples`` per sequence number).
    private var timestampReference: (UInt16, UInt32)?

    /// The RTP timestamp of the frame the last ``pop()`` handed out (played or concealed);
    /// nil while silent. Lip sync maps video onto it.
    public private(set) var playedTimestamp: UInt32?

    /// What to play for the next tick.
    public mutating func pop() -> Playout {
        let out = popFrame()
        if case .silence = out {
            playedTimestamp = nil
        } else if let (seq, ts) = timestampReference, let next = nextSeq {
            // nextSeq has moved one past the frame just handed out.
            let played = next &- 1
            playedTimestamp = ts &+ UInt32(bitPattern: Int32(Int16(bitPattern: played &- seq))) &* frameSamples
        }
        return out
    }

    private mutating func popFrame() -> Playout {
        guard let next = nextSeq else { return .silence }
        if !playing {
            // Wait until the target depth is there (or the newest packet would otherwise
            // be pushed out of the ring).
            guard bufferedFrames >= targetFrames else { return .silence }
            playing = true
            counters.rebuffers += drySince > 0 ? 1 : 0
        }
        if bufferedFrames == 0 {
            // Ran dry: conceal briefly (a packet may be just late), then re-buffer.
            drySince += 1
            nextSeq = next &+ 1
            highestSeq = next
            if drySince > 3 {
                playing = false
                return .silence
            }
            counters.concealed += 1
            return .lost(next: nil)
        }
        drySince = 0
        nextSeq = next &+ 1
        // The slot's bytes are shared with the caller, not copied: once it lets go of
        // them, the next packet into the slot reuses their storage.
        if present[slot(next)] {
            present[slot(next)] = false
            return .packet(slots[slot(next)])
        }
        counters.concealed += 1
        return .lost(next: bufferedFrames > 0 && present[slot(next &+ 1)] ? slots[slot(next &+ 1)] : nil)
    }

    /// After a burst the buffer can hold far more than the target: drop the oldest so the
    /// added delay comes back down (a few clipped frames beat a permanently late call).
    private mutating func trimBacklog() {
        guard playing, bufferedFrames > targetFrames + 3 else { return }
        while bufferedFrames > targetFrames + 1, let next = nextSeq {
            if present[slot(next)] { counters.discarded += 1 }
            present[slot(next)] = false
            nextSeq = next &+ 1
        }
    }

    private mutating func updateJitter(timestamp: UInt32, arrival: Instant) {
        defer { lastArrival = (arrival, timestamp) }
        guard let (t, ts) = lastArrival else { return }
        let transitMs = (arrival - t).milliseconds - Double(Int32(bitPattern: timestamp &- ts)) / 48.0
        // A timestamp jump (sender restart, silence suppression) is a discontinuity, not jitter.
        guard abs(transitMs) < 1000 else { return }
        jitterMs += (abs(transitMs) - jitterMs) / 16
    }

    private func slot(_ seq: UInt16) -> Int { Int(seq) & (slots.count - 1) }
    private func isNewer(_ a: UInt16, than b: UInt16) -> Bool { a != b && a &- b < 0x8000 }
}
