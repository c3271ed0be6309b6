/// The stage's own bulk delay tracker: finds where the echo sits behind the far-end
/// reference by cross-correlating the two signals' envelopes, and reports when that
/// bulk delay jumps (a sound device re-buffered without telling anyone) so the stage can
/// re-align at once instead of waiting for the library's estimator, which in 0.3 takes
/// seconds to move its read pointer.
///
/// Cheap: the envelopes are 2 ms block sums of |x| (5 values per 10 ms frame), correlated
/// as the change of their 16 ms sums; the correlation over a 0.6 s window at every lag up
/// to 250 ms runs every 50 ms (about 40k multiply-adds). Nothing allocates after `init`.
///
/// No I/O, no clock: the stage feeds it frame by frame, tests feed it directly.
struct BulkDelayTracker {
    /// Samples per envelope block (2 ms at 48 kHz).
    static let block = 96
    /// Blocks correlated per estimate (0.6 s) and the largest lag searched (250 ms).
    static let window = 300
    static let maxLag = 125
    /// Frames between estimates (50 ms).
    static let every = 5
    /// Blocks summed into one envelope value (16 ms).
    static let smooth = 8
    /// Normalised correlation an estimate needs: the echo must dominate the microphone
    /// (a near-end talker or noise lowers it, so double talk never moves the reference).
    static let minCorrelation: Float = 0.75
    /// A bulk jump: at least this far from the settled delay (blocks, 20 ms: a sound
    /// device's period; the room's own reflections stay within it), seen in two estimates
    /// in a row that agree within `agree` blocks.
    static let jumpBlocks = 10
    static let agree = 2

    private let reference: UnsafeMutableBufferPointer<Float>
    private let mic: UnsafeMutableBufferPointer<Float>
    private let level: UnsafeMutableBufferPointer<Float>
    private let micLevel: UnsafeMutableBufferPointer<Float>
    private var count = 0  // blocks written (both rings advance together)
    private var frames = 0
    /// The settled delay (blocks) and a pending candidate for a jump.
    private(set) var settled: Int?
    private var candidate: Int?
    /// The last estimate and its correlation (for tests and status).
    private(set) var lastLag: Int?
    private(set) var lastCorrelation: Float = 0

    init() {
        let n = Self.window + Self.maxLag
        reference = .allocate(capacity: n)
        reference.initialize(repeating: 0)
        mic = .allocate(capacity: n)
        mic.initialize(repeating: 0)
        level = .allocate(capacity: n)
        level.initialize(repeating: 0)
        micLevel = .allocate(capacity: n)
        micLevel.initialize(repeating: 0)
    }

    /// The rings are owned by the stage, which calls this from its deinit.
    func deallocate() {
        reference.deallocate()
        mic.deallocate()
        level.deallocate()
        micLevel.deallocate()
    }

    /// One 10 ms frame of the reference as read from the speaker's ring (before any shift)
    /// and of the microphone before processing. Returns a bulk jump, in samples (positive:
    /// the echo now arrives later), once one is confirmed; the caller shifts the reference.
    mutating func frame(reference ref: UnsafeBufferPointer<Int16>, microphone m: UnsafeBufferPointer<Int16>) -> Int? {
        let n = reference.count
        var i = 0
        while i + Self.block <= ref.count {
            var r: Float = 0, s: Float = 0
            for k in i..<(i + Self.block) {
                r += Float(abs(Int32(ref[k])))
                s += Float(abs(Int32(m[k])))
            }
            // The envelopes' block-to-block change: onsets are sharp where the envelopes
            // themselves are broad, so the correlation peaks narrowly at the direct path.
            level[count % n] = r
            micLevel[count % n] = s
            // 16 ms sums (a voice's pitch pulses, 4–10 ms apart, average out: shorter ones
            // put the peak a pitch period off), differenced 8 ms apart.
            var rNow: Float = 0, rThen: Float = 0, mNow: Float = 0, mThen: Float = 0
            for j in 0..<Self.smooth {
                rNow += level[(count - j + n) % n]; rThen += level[(count - j - Self.smooth / 2 + n) % n]
                mNow += micLevel[(count - j + n) % n]; mThen += micLevel[(count - j - Self.smooth / 2 + n) % n]
            }
            reference[count % n] = rNow - rThen
            mic[count % n] = mNow - mThen
            count += 1
            i += Self.block
        }
        frames += 1
        guard frames % Self.every == 0, count >= n else { return nil }
        guard let (lag, c) = estimate() else { lastLag = nil; candidate = nil; return nil }
        lastLag = lag
        lastCorrelation = c
        guard let s = settled else {
            // The first delay settles once two estimates in a row agree on it.
            if let p = candidate, abs(p - lag) <= Self.agree { settled = lag; candidate = nil } else { candidate = lag }
            return nil
        }
        // Small moves (clock drift the ring already follows, the room's reflections) are
        // followed quietly; only a jump re-aligns.
        if abs(lag - s) < Self.jumpBlocks { settled = lag; candidate = nil; return nil }
        if let p = candidate, abs(p - lag) <= Self.agree {
            settled = lag
            candidate = nil
            return (lag - s) * Self.block
        }
        candidate = lag
        return nil
    }

    /// The lag (blocks) at which the microphone's envelope best follows the reference's
    /// over the last `window` blocks, and its normalised correlation; nil when the far
    /// end is quiet or the match is weak.
    private func estimate() -> (Int, Float)? {
        let n = reference.count, w = Self.window
        let newest = count - 1
        // Microphone: the last w blocks, mean-removed.
        var mMean = 0.0
        for j in 0..<w { mMean += Double(mic[(newest - j) % n]) }
        mMean /= Double(w)
        var mVar = 0.0
        for j in 0..<w { let d = Double(mic[(newest - j) % n]) - mMean; mVar += d * d }
        guard mVar > 0 else { return nil }
        // Reference sums over a window sliding with the lag, kept incrementally.
        var rSum = 0.0, rSq = 0.0
        for j in 0..<w { let v = Double(reference[(newest - j) % n]); rSum += v; rSq += v * v }
        // The far end must have spoken in the window (a block sum of 96 samples at ~-50 dBFS).
        var spoken = 0.0
        for j in 0..<w { spoken += Double(level[(newest - j) % n]) }
        guard spoken / Double(w) > 300 else { return nil }
        var best = -1, bestC = -1.0
        for lag in 0...Self.maxLag {
            if lag > 0 {
                // Slide the reference window one block older.
                let out = Double(reference[(newest - lag + 1) % n]), inn = Double(reference[(newest - lag - w + 1) % n])
                rSum += inn - out
                rSq += inn * inn - out * out
            }
            let rMean = rSum / Double(w)
            let rVar = rSq - Double(w) * rMean * rMean
            guard rVar > 1e-6 * rSq else { continue }
            var dot = 0.0
            for j in 0..<w { dot += (Double(mic[(newest - j) % n]) - mMean) * Double(reference[(newest - j - lag) % n]) }
            let c = dot / (mVar * rVar).squareRoot()
            if c > bestC { bestC = c; best = lag }
        }
        guard best >= 0, Float(bestC) >= Self.minCorrelation else { return nil }
        return (best, Float(bestC))
    }
}
