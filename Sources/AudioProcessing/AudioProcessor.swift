import CAudioProcessing
import NetworkCore
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What the microphone's processing stage does (`[audio]` in the config).
public struct AudioProcessingSettings: Sendable, Equatable {
    /// How hard the echo canceller's suppressor works on what the linear filter leaves.
    /// (0.3's classic AEC; AEC3 in 1.x tunes itself and ignores this.)
    public enum EchoLevel: String, CaseIterable, Sendable { case low, moderate, high }
    public enum NoiseLevel: String, CaseIterable, Sendable { case low, moderate, high, veryHigh = "very-high" }

    public var echoCancellation = false
    public var echoLevel = EchoLevel.moderate
    public var noiseSuppression = false
    public var noiseLevel = NoiseLevel.moderate
    public var gainControl = false
    /// The level the gain control aims for, dB below full scale (0...31).
    public var gainTargetDBFS = 3
    /// Whether the stage follows jumps of the bulk delay itself (`BulkDelayTracker`);
    /// off only to measure the library alone (`videophone-bench --aec-no-tracker`).
    public var followBulkDelay = true

    public init() {}

    /// All three on (the default for a real microphone and speaker).
    public static var speakerphone: AudioProcessingSettings {
        var s = AudioProcessingSettings()
        s.echoCancellation = true
        s.noiseSuppression = true
        s.gainControl = true
        return s
    }

    /// Whether any processing is asked for.
    public var anyEnabled: Bool { echoCancellation || noiseSuppression || gainControl }
}

/// The library would not start.
public struct AudioProcessingError: Error, CustomStringConvertible {
    public let description: String
}

/// The stage's figures for status and metrics. All exist from the start, at zero.
public struct AudioProcessingFigures: Sendable {
    public var library: String
    public var echoCancellation = false
    public var noiseSuppression = false
    public var gainControl = false
    public var framesProcessed: UInt64 = 0
    /// Echo return loss enhancement, dB, as the library measures it (0 until it has one).
    public var erleDB = 0.0
    /// The canceller's own estimate of the reference→microphone delay, ms.
    public var estimatedDelayMs = 0.0
    /// The delay the devices report (playback queue + capture queue − reference backlog), ms.
    public var systemDelayMs = 0.0
    /// 0...1 where the library gives it (1.x); nil otherwise.
    public var residualEchoLikelihood: Double?
    /// Share of the delay estimates the canceller judged unreliable (0.3).
    public var fractionPoorDelays = 0.0
    /// Wall time to process one 10 ms frame, ms: last, median and 99th percentile of recent frames.
    public var processingMsLast = 0.0
    public var processingMsMedian = 0.0
    public var processingMsP99 = 0.0
    /// 10 ms frames processed with no far-end reference at hand (speaker late or stopped).
    public var referenceMissingFrames: UInt64 = 0
    /// 10 ms steps the reference was moved by to follow clock drift between the cards.
    public var driftAdjustments: UInt64 = 0
    /// Times the stage re-aligned after an xrun or a device reopen.
    public var realignments: UInt64 = 0
    /// The stage's own estimate of the bulk delay from the far-end reference to its echo
    /// in the microphone, ms (envelope cross-correlation; nil until the far end has talked).
    public var bulkDelayMs: Double?
    /// Times that bulk delay jumped and the stage re-aligned to it, and by how much the
    /// reference is held back now, ms.
    public var bulkDelayJumps: UInt64 = 0
    public var referenceShiftMs = 0.0
    /// Microphone frames that clipped.
    public var clippedFrames: UInt64 = 0
    /// Frames the library refused (it then passed the microphone through).
    public var errors: UInt64 = 0
    /// What went into the stage and what came out of it (what the call sends), as W3C's
    /// `totalAudioEnergy`: Σ (mean square level, full scale 1) × seconds; and the seconds
    /// processed. Two readings give the stage's reduction over any stretch of time, the
    /// echo return loss enhancement as the far end hears it.
    public var microphoneEnergy = 0.0
    public var processedEnergy = 0.0
    public var totalSamplesDuration = 0.0

    public init(library: String) { self.library = library }
}

/// The stage between the microphone and the Opus encoder: acoustic echo cancellation
/// against the far-end reference (what the speaker is about to play), then noise
/// suppression, then gain control, over webrtc-audio-processing in 10 ms frames.
///
/// Threads: the speaker's thread calls ``referenceWillPlay(_:playbackDelay:)``; the
/// microphone's thread calls ``process(_:captureDelay:)``. They share only a lock-free
/// ring, so neither waits for the other; the library itself is used from the microphone's
/// thread alone. Nothing allocates per frame.
///
/// Clocks: the reference is consumed at the microphone's pace. When the two cards' clocks
/// drift apart the ring's backlog grows or shrinks; the stage moves its read point by 10 ms
/// when it leaves its band, and the canceller's delay estimator follows the step.
public final class AudioProcessor: @unchecked Sendable {
    public static let frameSamples = Int(VP_APM_FRAME)
    public let settings: AudioProcessingSettings
    private var apm: OpaquePointer
    private var librarySettings: vp_apm_settings
    private let ring = ReferenceRing(capacity: 48_000)
    private let reference: UnsafeMutableBufferPointer<Int16>
    private let work: UnsafeMutableBufferPointer<Int16>
    private var output: [Int16]
    private let times: UnsafeMutableBufferPointer<Double>
    private var timeCount = 0
    private let lock = Lock()
    private var shared: AudioProcessingFigures
    // Microphone thread only.
    private var primed = false
    private var missingRun = 0
    private var referenceStoppedLogged = false
    private var clippingLogged = false
    private var lastDiscontinuities = 0
    private var guardFrames = 0
    private var guardDeep = false
    private var recentReferenceLevel = 0.0
    private var frameCounter: UInt64 = 0
    // The reference's own delay line: the stage shifts the reference by a detected bulk
    // delay jump (`tracker`) so the canceller finds the echo where it left it.
    private var tracker = BulkDelayTracker()
    private let delayLine: UnsafeMutableBufferPointer<Int16>
    private var delayLineWritten = 0
    private var shift = 0
    /// Logs a condition once (reference stopped, microphone clipping); set before start.
    public var onEvent: (@Sendable (String) -> Void)?

    /// Backlog band, samples: the reader starts once `prime` samples wait and keeps the
    /// backlog under `high` (one 20 ms speaker period plus two 10 ms frames of slack).
    static let prime = 960
    static let high = 960 * 3
    /// After a discontinuity, frames during which residual echo is held down (see `process`).
    static let guardLength = 30
    /// The same after the canceller restarted on a jump of the bulk delay (it converges
    /// within ~0.5 s on the scenario's rooms).
    static let restartGuardLength = 100
    /// The most the reference can be held back to follow a bulk delay jump (250 ms).
    static let maxShift = 12_000

    public init(settings: AudioProcessingSettings) throws(AudioProcessingError) {
        self.settings = settings
        var s = vp_apm_settings(echo_cancellation: settings.echoCancellation ? 1 : 0,
                                echo_level: Int32(AudioProcessingSettings.EchoLevel.allCases.firstIndex(of: settings.echoLevel)!),
                                noise_suppression: settings.noiseSuppression ? 1 : 0,
                                noise_level: Int32(AudioProcessingSettings.NoiseLevel.allCases.firstIndex(of: settings.noiseLevel)!),
                                gain_control: settings.gainControl ? 1 : 0,
                                gain_target_dbfs: Int32(settings.gainTargetDBFS))
        var err = [CChar](repeating: 0, count: 200)
        guard let a = vp_apm_create(&s, &err, err.count) else {
            let reason = String(decoding: err.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw AudioProcessingError(description: "\(Self.library): \(reason)")
        }
        apm = a
        librarySettings = s
        reference = .allocate(capacity: Self.frameSamples)
        reference.initialize(repeating: 0)
        work = .allocate(capacity: Self.frameSamples)
        work.initialize(repeating: 0)
        output = [Int16](repeating: 0, count: 960)
        delayLine = .allocate(capacity: Self.maxShift + Self.frameSamples)
        delayLine.initialize(repeating: 0)
        times = .allocate(capacity: 500)
        times.initialize(repeating: 0)
        shared = AudioProcessingFigures(library: Self.library)
        shared.echoCancellation = settings.echoCancellation
        shared.noiseSuppression = settings.noiseSuppression
        shared.gainControl = settings.gainControl
    }

    deinit {
        vp_apm_destroy(apm)
        reference.deallocate()
        work.deallocate()
        delayLine.deallocate()
        tracker.deallocate()
        times.deallocate()
    }

    /// Which webrtc-audio-processing the shim was built against (fixed at build time: read
    /// once, not a new string for every status and metrics look).
    public static let library = String(cString: vp_apm_library())

    /// Speaker thread: the frame about to be written to the card (silence included), and
    /// how long until its first sample is heard.
    /// `discontinuities`: the speaker's underrun and reopen count.
    public func referenceWillPlay(_ frame: UnsafeBufferPointer<Int16>, playbackDelay: Duration, discontinuities: Int = 0) {
        speakerDiscontinuities.store(discontinuities, ordering: .relaxed)
        ring.write(frame, delaySamples: Int(playbackDelay.nanosecondsInt / 20_833))
    }

    /// Any thread: the devices were (re)started; the backlog is rebuilt before the next frame.
    public func restart() { restartRequests.add(1, ordering: .relaxed) }
    private let speakerDiscontinuities = Atomic<Int>(0)
    private let restartRequests = Atomic<Int>(0)

    /// Microphone thread: processes a chunk (a multiple of 10 ms) and returns the result.
    /// The returned array is the stage's own buffer: use it before the next call.
    /// `discontinuities`: the devices' xrun and reopen count; a change re-aligns the stage.
    public func process(_ samples: [Int16], captureDelay: Duration, discontinuities: Int = 0) -> [Int16] {
        let n = samples.count - samples.count % Self.frameSamples
        if output.count != samples.count { output = [Int16](repeating: 0, count: samples.count) }
        let all = discontinuities &+ speakerDiscontinuities.load(ordering: .relaxed) &+ restartRequests.load(ordering: .relaxed)
        if all != lastDiscontinuities {
            lastDiscontinuities = all
            realign()
        }
        output.withUnsafeMutableBufferPointer { out in
            samples.withUnsafeBufferPointer { inp in
                var offset = 0
                while offset < n {
                    work.baseAddress!.update(from: inp.baseAddress! + offset, count: Self.frameSamples)
                    processFrame(captureDelay: captureDelay)
                    (out.baseAddress! + offset).update(from: work.baseAddress!, count: Self.frameSamples)
                    offset += Self.frameSamples
                }
                // A tail shorter than 10 ms (never from our devices) passes through.
                if n < samples.count { (out.baseAddress! + n).update(from: inp.baseAddress! + n, count: samples.count - n) }
            }
        }
        return output
    }

    /// After an xrun or a reopen the backlog no longer matches what the speaker played:
    /// start again from a fresh backlog. The canceller keeps its filter (the room did not
    /// change), its delay estimator finds the new alignment; meanwhile `guardFrames`
    /// holds down what echo the suppressor might let through.
    private func realign() {
        ring.skip(ring.fill)
        primed = false
        guardFrames = Self.guardLength
        guardDeep = false
        lock.withLock { shared.realignments += 1 }
    }

    private func processFrame(captureDelay: Duration) {
        let start = Instant.now()
        var clipped = 0
        for s in work where s == .max || s == .min { clipped += 1 }
        let inputEnergy = Self.energy(work)

        // The far-end reference for this frame.
        var haveReference = false
        if !primed, ring.fill >= Self.prime { primed = true }
        if primed {
            var adjusted = false
            if ring.fill > Self.high {
                ring.skip(Self.frameSamples)
                adjusted = true
            }
            haveReference = ring.read(into: reference)
            if !haveReference { primed = false }
            if adjusted { lock.withLock { shared.driftAdjustments += 1 } }
        }
        if !haveReference { reference.update(repeating: 0) }
        var jumped = false
        if settings.echoCancellation && settings.followBulkDelay { jumped = followBulkDelay() }
        var referenceEnergy = 0.0
        for s in reference { referenceEnergy += Double(s) * Double(s) }
        // The echo trails the reference by the bulk delay (up to ~150 ms) and the room's
        // tail: a decaying peak of its level says whether echo may be arriving now.
        recentReferenceLevel = max(referenceEnergy / Double(Self.frameSamples), recentReferenceLevel * 0.9)
        let backlog = ring.fill
        let systemDelaySamples = ring.latestPlaybackDelay + Int(captureDelay.nanosecondsInt / 20_833) - backlog
        let delayMs = max(0, systemDelaySamples / 48)

        var failed = false
        if settings.echoCancellation { failed = vp_apm_analyze_reverse(apm, UnsafePointer(reference.baseAddress!)) != 0 }
        let r = vp_apm_process_capture(apm, work.baseAddress!, Int32(delayMs))
        failed = failed || r != 0

        // Just after a discontinuity the canceller may be misaligned for a few hundred
        // ms: while the far end talks, attenuate (−20 dB) rather than send its echo back;
        // −40 dB after a restart, while the fresh canceller has next to no filter yet.
        if guardFrames > 0 {
            guardFrames -= 1
            if recentReferenceLevel > 100 * 100 {
                let divisor: Int16 = guardDeep ? 100 : 10
                for i in 0..<work.count { work[i] = work[i] / divisor }
            }
        }

        let outputEnergy = Self.energy(work)
        frameCounter += 1
        var stats = vp_apm_stats()
        let refresh = frameCounter % 50 == 1
        if refresh { vp_apm_get_stats(apm, &stats) }
        let ms = (Instant.now() - start).milliseconds

        if haveReference { missingRun = 0 } else { missingRun += 1 }
        let logStopped = settings.echoCancellation && missingRun == 100 && !referenceStoppedLogged && frameCounter > 200
        if logStopped { referenceStoppedLogged = true }
        let logClipping = clipped > 4 && !clippingLogged
        if logClipping { clippingLogged = true }

        lock.withLock {
            shared.framesProcessed += 1
            times[timeCount % times.count] = ms
            timeCount += 1
            shared.processingMsLast = ms
            shared.systemDelayMs = Double(max(0, systemDelaySamples)) / 48
            if !haveReference && settings.echoCancellation { shared.referenceMissingFrames += 1 }
            if clipped > 4 { shared.clippedFrames += 1 }
            if failed { shared.errors += 1 }
            if jumped { shared.bulkDelayJumps += 1 }
            shared.microphoneEnergy += inputEnergy
            shared.processedEnergy += outputEnergy
            shared.totalSamplesDuration += Self.frameSeconds
            shared.referenceShiftMs = Double(shift) / 48
            shared.bulkDelayMs = tracker.settled.map { Double($0 * BulkDelayTracker.block) / 48 }
            if refresh {
                if stats.has_erle != 0 { shared.erleDB = stats.erle_db }
                if stats.has_delay != 0 { shared.estimatedDelayMs = stats.delay_ms }
                if stats.has_residual_echo_likelihood != 0 { shared.residualEchoLikelihood = stats.residual_echo_likelihood }
                if stats.has_fraction_poor_delays != 0 { shared.fractionPoorDelays = stats.fraction_poor_delays }
            }
        }
        if logStopped { onEvent?("echo canceller: the speaker's reference stopped (speaker failed or underran); going on without it") }
        if logClipping { onEvent?("microphone is clipping; lower its capture volume (the echo canceller cannot remove clipped echo)") }
    }

    private static let frameSeconds = Double(frameSamples) / 48_000

    /// One 10 ms frame's share of W3C's totalAudioEnergy: mean square level × seconds.
    private static func energy(_ frame: UnsafeMutableBufferPointer<Int16>) -> Double {
        var sum = 0.0
        for s in frame { sum += Double(s) * Double(s) }
        return sum / Double(frame.count) / (32768 * 32768) * frameSeconds
    }

    /// Feeds the tracker this frame's reference (as read) and microphone (unprocessed);
    /// on a bulk jump of the delay between them re-aligns (below). Leaves the reference
    /// to give the library in `reference`. True when it re-aligned.
    private func followBulkDelay() -> Bool {
        let jump = tracker.frame(reference: UnsafeBufferPointer(reference), microphone: UnsafeBufferPointer(work))
        let capacity = delayLine.count
        var at = delayLineWritten % capacity
        for s in reference {
            delayLine[at] = s
            at += 1
            if at == capacity { at = 0 }
        }
        delayLineWritten += Self.frameSamples
        var moved = false
        if let jump {
            // Hold the reference back by the jump where the line reaches (a jump down can
            // only undo earlier jumps up: the stage cannot read the speaker's future), and
            // start the canceller afresh on the new alignment: its own read pointer would
            // take seconds to follow (0.3), and even shifted back into place its filter
            // can trail it for a second or two. Echo is held down while it converges.
            shift = max(0, min(Self.maxShift, shift + jump))
            restartCanceller()
            guardFrames = Self.restartGuardLength
            guardDeep = true
            moved = true
        }
        if shift > 0 {
            var from = ((delayLineWritten - Self.frameSamples - shift) % capacity + capacity) % capacity
            for i in 0..<Self.frameSamples {
                reference[i] = delayLine[from]
                from += 1
                if from == capacity { from = 0 }
            }
        }
        return moved
    }

    /// A fresh library instance with the same settings (allocates: once per bulk delay
    /// jump, never per frame). Keeps the old one if the new one will not start.
    private func restartCanceller() {
        var err = [CChar](repeating: 0, count: 8)
        guard let fresh = vp_apm_create(&librarySettings, &err, err.count) else { return }
        vp_apm_destroy(apm)
        apm = fresh
    }

    /// Figures as of now (any thread).
    public var figures: AudioProcessingFigures {
        let snapshot: (AudioProcessingFigures, [Double]) = lock.withLock {
            (self.shared, Array(UnsafeBufferPointer(rebasing: self.times[0..<min(self.timeCount, self.times.count)])))
        }
        var f = snapshot.0
        let recentTimes = snapshot.1
        if !recentTimes.isEmpty {
            let recent = recentTimes.sorted()
            f.processingMsMedian = recent[recent.count / 2]
            f.processingMsP99 = recent[min(recent.count - 1, recent.count * 99 / 100)]
        }
        return f
    }
}
