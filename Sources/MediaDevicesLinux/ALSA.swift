import CALSA
import MediaDevices
import NetworkCore
#if canImport(Glibc)
import Glibc
#endif

/// Why a sound device could not be used: the device name and ALSA's reason.
public struct SoundError: Error, CustomStringConvertible {
    public let description: String
    init(_ device: String, _ what: String, _ code: Int32) {
        description = "sound device \(device): \(what): \(String(cString: snd_strerror(code)))"
    }
}

/// Opens a PCM for 48 kHz mono S16 with ~20 ms periods (the Opus frame), low latency.
private func openPCM(_ device: String, capture: Bool) throws(SoundError) -> OpaquePointer {
    var pcm: OpaquePointer? = nil
    var r = snd_pcm_open(&pcm, device, capture ? SND_PCM_STREAM_CAPTURE : SND_PCM_STREAM_PLAYBACK, 0)
    guard r >= 0, let pcm else { throw SoundError(device, "cannot open", r) }
    r = snd_pcm_set_params(pcm, SND_PCM_FORMAT_S16_LE, SND_PCM_ACCESS_RW_INTERLEAVED, 1, 48000, 1, 60_000)
    guard r >= 0 else { snd_pcm_close(pcm); throw SoundError(device, "cannot set 48 kHz mono S16", r) }
    return pcm
}

/// An ALSA microphone (`default`, `plughw:CARD=...`): 20 ms chunks on its own thread,
/// overruns recovered.
public final class ALSACapture: AudioSource, @unchecked Sendable {
    public let device: String
    private let pcm: OpaquePointer
    private let running = Locked(false)
    private var thread: pthread_t?
    public private(set) var overruns = 0

    public init(device: String) throws(SoundError) {
        self.device = device
        pcm = try openPCM(device, capture: true)
    }

    deinit {
        stop()
        snd_pcm_close(pcm)
    }

    public func start(_ onSamples: @escaping @Sendable ([Int16], Instant) -> Void) throws {
        guard running.withLock({ r -> Bool in defer { r = true }; return !r }) else { return }
        thread = startThread(name: "alsa-capture") { [self] in
            var chunk = [Int16](repeating: 0, count: 960)
            while running.current {
                let n = chunk.withUnsafeMutableBytes { snd_pcm_readi(pcm, $0.baseAddress, 960) }
                if n < 0 {
                    overruns += 1
                    if snd_pcm_recover(pcm, Int32(n), 1) < 0 { usleep(20_000) }
                    continue
                }
                if n == 960 { onSamples(chunk, Instant.now()) }
            }
        }
    }

    public func stop() {
        running.withLock { $0 = false }
        join(thread)
        thread = nil
    }
}

/// An ALSA speaker. Underruns (nothing decoded in time) are recovered quietly.
public final class ALSAPlayback: AudioSink, @unchecked Sendable {
    public let device: String
    private let pcm: OpaquePointer
    private let lock = Lock()
    private var played = 0
    public private(set) var underruns = 0

    public init(device: String) throws(SoundError) {
        self.device = device
        pcm = try openPCM(device, capture: false)
    }

    deinit { snd_pcm_close(pcm) }

    public func play(_ samples: ArraySlice<Int16>) {
        lock.withLock {
            var offset = samples.startIndex
            while offset < samples.endIndex {
                let n = samples[offset...].withUnsafeBytes { snd_pcm_writei(pcm, $0.baseAddress, snd_pcm_uframes_t(samples.endIndex - offset)) }
                if n < 0 {
                    underruns += 1
                    if snd_pcm_recover(pcm, Int32(n), 1) < 0 { return }
                    continue
                }
                offset += Int(n)
            }
            played += samples.count
        }
    }

    public var samplesPlayed: Int { lock.withLock { played } }
}
