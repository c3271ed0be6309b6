import CALSA
import MediaDevices
import NetworkCore
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Why a sound device could not be used: the device name and ALSA's reason.
public struct SoundError: Error, CustomStringConvertible {
    public let description: String
    init(_ device: String, _ what: String, _ code: Int32) {
        description = "sound device \(device): \(what): \(String(cString: snd_strerror(code)))"
    }
    init(_ device: String, library: LibraryError) { description = "sound device \(device): \(library)" }
}

/// 20 ms at 48 kHz: one Opus frame per period, so a capture period is exactly one packet.
let periodFrames = 960

/// Opens a PCM for 48 kHz mono S16 with 20 ms periods and a short ring (`periods` deep):
/// latency is the product, so the ring is only as deep as xrun safety needs.
private func openPCM(_ device: String, capture: Bool, periods: Int) throws(SoundError) -> OpaquePointer {
    do { try BoardLibrary.alsa.load() } catch { throw SoundError(device, library: error) }
    var pcm: OpaquePointer? = nil
    var r = snd_pcm_open(&pcm, device, capture ? SND_PCM_STREAM_CAPTURE : SND_PCM_STREAM_PLAYBACK, 0)
    guard r >= 0, let pcm else { throw SoundError(device, "cannot open", r) }
    var hw: OpaquePointer? = nil
    snd_pcm_hw_params_malloc(&hw)
    defer { snd_pcm_hw_params_free(hw) }
    var rate: UInt32 = 48000
    var period = snd_pcm_uframes_t(periodFrames)
    var buffer = snd_pcm_uframes_t(periodFrames * periods)
    var dir: Int32 = 0
    r = snd_pcm_hw_params_any(pcm, hw)
    if r >= 0 { r = snd_pcm_hw_params_set_access(pcm, hw, SND_PCM_ACCESS_RW_INTERLEAVED) }
    if r >= 0 { r = snd_pcm_hw_params_set_format(pcm, hw, SND_PCM_FORMAT_S16_LE) }
    if r >= 0 { r = snd_pcm_hw_params_set_channels(pcm, hw, 1) }
    if r >= 0 { r = snd_pcm_hw_params_set_rate_near(pcm, hw, &rate, &dir) }
    guard r >= 0, rate == 48000 else {
        snd_pcm_close(pcm)
        throw SoundError(device, "no 48 kHz mono S16 (use a plughw: or default device)", r < 0 ? r : -EINVAL)
    }
    if r >= 0 { r = snd_pcm_hw_params_set_period_size_near(pcm, hw, &period, &dir) }
    if r >= 0 { r = snd_pcm_hw_params_set_buffer_size_near(pcm, hw, &buffer) }
    if r >= 0 { r = snd_pcm_hw_params(pcm, hw) }
    guard r >= 0 else { snd_pcm_close(pcm); throw SoundError(device, "cannot set 20 ms periods", r) }
    if !capture {
        // Start playing once two periods are queued: one being played, one ready.
        var sw: OpaquePointer? = nil
        snd_pcm_sw_params_malloc(&sw)
        defer { snd_pcm_sw_params_free(sw) }
        snd_pcm_sw_params_current(pcm, sw)
        snd_pcm_sw_params_set_start_threshold(pcm, sw, period * 2)
        snd_pcm_sw_params(pcm, sw)
    }
    return pcm
}

/// An ALSA microphone (`default`, `plughw:CARD=...`): one 20 ms chunk per period on its
/// own thread; overruns are counted and recovered.
public final class ALSACapture: AudioSource, AudioSourceTiming, @unchecked Sendable {
    public let device: String
    private let pcm: OpaquePointer
    private let loop = DeviceThread()
    private let xruns = Atomic<Int>(0)
    private let queuedFrames = Atomic<Int>(0)
    /// Times capture overran (the thread was late) and was restarted.
    public var overruns: Int { xruns.load(ordering: .relaxed) }
    public var discontinuities: Int { overruns }
    /// The card's queue after the last read (`snd_pcm_delay`) plus half a period: the
    /// average age of a 10 ms frame of the chunk just delivered.
    public var captureDelay: Duration { .microseconds((queuedFrames.load(ordering: .relaxed) + periodFrames / 2) * 1000 / 48) }
    /// Whether the thread asks for SCHED_FIFO (set before `start`; a test harness sharing
    /// one CPU with the daemon it measures must not starve it).
    public var realtime = true

    public init(device: String) throws(SoundError) {
        self.device = device
        pcm = try openPCM(device, capture: true, periods: 4)
    }

    deinit {
        stop()
        snd_pcm_close(pcm)
    }

    public func start(_ onSamples: @escaping @Sendable ([Int16], Instant) -> Void) throws {
        guard !loop.isRunning else { return }
        let r = snd_pcm_start(pcm)
        if r < 0 && r != -EBADFD { throw SoundError(device, "cannot start capture", r) }
        loop.start(name: "alsa-capture") { [self] in
            if realtime { _ = requestRealtimePriority() }
            var chunk = [Int16](repeating: 0, count: periodFrames)
            var filled = 0
            while loop.isRunning {
                let n = chunk.withUnsafeMutableBufferPointer { p in
                    snd_pcm_readi(pcm, p.baseAddress! + filled, snd_pcm_uframes_t(periodFrames - filled))
                }
                if n < 0 {
                    xruns.add(1, ordering: .relaxed)
                    filled = 0
                    if snd_pcm_recover(pcm, Int32(n), 1) < 0 { usleep(20_000) } else { snd_pcm_start(pcm) }
                    continue
                }
                filled += Int(n)
                if filled == periodFrames {
                    var queued = snd_pcm_sframes_t(0)
                    if snd_pcm_delay(pcm, &queued) == 0 { queuedFrames.store(max(0, Int(queued)), ordering: .relaxed) }
                    onSamples(chunk, Instant.now())
                    filled = 0
                }
            }
            snd_pcm_drop(pcm)
        }
    }

    public func stop() { loop.stop() }
}

/// An ALSA speaker. A thread pulls each 20 ms frame from the call's playout just before
/// the card needs it, so the card's clock paces playout; underruns are counted and
/// recovered with a period of silence.
public final class ALSAPlayback: AudioSink, AudioSinkTiming, @unchecked Sendable {
    public let device: String
    private let pcm: OpaquePointer
    private let loop = DeviceThread()
    private let counts = Locked((played: 0, underruns: 0))
    private let xruns = Atomic<Int>(0)
    private let queuedFrames = Atomic<Int>(0)
    public var samplesPlayed: Int { counts.current.played }
    /// Times the card ran out of samples and was restarted.
    public var underruns: Int { counts.current.underruns }
    public var discontinuities: Int { xruns.load(ordering: .relaxed) }
    /// What the card had queued (`snd_pcm_delay`) just before the frame being rendered.
    public var playbackDelay: Duration { .microseconds(queuedFrames.load(ordering: .relaxed) * 1000 / 48) }
    /// Whether the thread asks for SCHED_FIFO (set before `start`).
    public var realtime = true

    public init(device: String) throws(SoundError) {
        self.device = device
        pcm = try openPCM(device, capture: false, periods: 3)
    }

    deinit {
        stop()
        snd_pcm_close(pcm)
    }

    public func start(_ render: @escaping @Sendable (UnsafeMutableBufferPointer<Int16>) -> Bool) throws {
        loop.start(name: "alsa-playback") { [self] in
            if realtime { _ = requestRealtimePriority() }
            let frame = UnsafeMutableBufferPointer<Int16>.allocate(capacity: periodFrames)
            defer { frame.deallocate() }
            frame.initialize(repeating: 0)
            // One period of silence ahead of the first real one: the start threshold.
            writeAll(frame)
            while loop.isRunning {
                var queued = snd_pcm_sframes_t(0)
                if snd_pcm_delay(pcm, &queued) == 0 { queuedFrames.store(max(0, Int(queued)), ordering: .relaxed) }
                let sound = render(frame)
                if !sound { frame.update(repeating: 0) }
                writeAll(frame)
                if sound { counts.withLock { $0.played += periodFrames } }
            }
            snd_pcm_drop(pcm)
        }
    }

    private func writeAll(_ frame: UnsafeMutableBufferPointer<Int16>) {
        var offset = 0
        while offset < frame.count && loop.isRunning {
            let n = snd_pcm_writei(pcm, frame.baseAddress! + offset, snd_pcm_uframes_t(frame.count - offset))
            if n < 0 {
                counts.withLock { $0.underruns += 1 }
                xruns.add(1, ordering: .relaxed)
                if snd_pcm_recover(pcm, Int32(n), 1) < 0 { usleep(20_000); return }
                continue
            }
            offset += Int(n)
        }
    }

    public func stop() { loop.stop() }
}
