import NetworkCore
#if canImport(Glibc)
import Glibc
#endif

/// A raw video frame in I420, with when it was captured.
public struct VideoFrame {
    public var width: Int
    public var height: Int
    /// Y plane (w×h), then U and V (w/2×h/2 each), tightly packed.
    public var buffer: UnsafeRawBufferPointer
    /// Monotonic capture time (for latency) and the same moment as NTP (for abs-capture-time).
    public var captureTime: Instant
    public var captureNTP: UInt64

    public init(width: Int, height: Int, buffer: UnsafeRawBufferPointer, captureTime: Instant, captureNTP: UInt64) {
        self.width = width; self.height = height; self.buffer = buffer; self.captureTime = captureTime; self.captureNTP = captureNTP
    }
}

/// A camera. `start` delivers frames on the source's own thread until `stop`; a slow
/// consumer makes the source skip frames rather than queue them (latency over smoothness).
public protocol VideoSource: AnyObject, Sendable {
    var width: Int { get }
    var height: Int { get }
    var fps: Int { get }
    func start(_ onFrame: @escaping @Sendable (VideoFrame) -> Void) throws
    func stop()
}

/// A microphone delivering 20 ms of 48 kHz mono PCM per callback.
public protocol AudioSource: AnyObject, Sendable {
    func start(_ onSamples: @escaping @Sendable ([Int16], Instant) -> Void) throws
    func stop()
    /// Times capture overran (samples lost because the capture thread was late).
    var overruns: Int { get }
}

extension AudioSource {
    public var overruns: Int { 0 }
}

/// What the echo canceller needs from a microphone beyond its samples. Read from the
/// microphone's own thread inside `onSamples`; implementations keep them lock-free.
public protocol AudioSourceTiming: Sendable {
    /// How long ago, on average, the chunk just delivered was captured (the card's queue).
    var captureDelay: Duration { get }
    /// Overruns and reopens so far: a change means samples went missing.
    var discontinuities: Int { get }
}

/// The same for a speaker, read from the speaker's thread inside `render`.
public protocol AudioSinkTiming: Sendable {
    /// How long until the first sample of the frame being rendered is heard (the card's queue).
    var playbackDelay: Duration { get }
    /// Underruns and reopens so far.
    var discontinuities: Int { get }
}

/// A speaker. Its own clock paces playout: from `start` until `stop` it asks `render`
/// for each 20 ms frame (960 samples of 48 kHz mono) just before playing it. `render`
/// fills the buffer and returns whether it held sound from the peer (false: silence).
public protocol AudioSink: AnyObject, Sendable {
    func start(_ render: @escaping @Sendable (UnsafeMutableBufferPointer<Int16>) -> Bool) throws
    func stop()
    /// Samples played that carried the peer's sound (decoded or concealed).
    var samplesPlayed: Int { get }
    /// Times the card ran dry (playout was late) and restarted.
    var underruns: Int { get }
}

extension AudioSink {
    public var underruns: Int { 0 }
}

/// Asks for real-time scheduling for the calling thread (audio: a late period is an
/// audible click). Needs CAP_SYS_NICE or an RLIMIT_RTPRIO (`LimitRTPRIO=` in the unit);
/// returns false when refused, and the thread goes on at normal priority.
@discardableResult
public func requestRealtimePriority(_ priority: Int32 = 10) -> Bool {
    var param = sched_param()
    param.sched_priority = priority
    return pthread_setschedparam(pthread_self(), SCHED_FIFO, &param) == 0
}

/// A thread that runs `body` every `interval` on absolute deadlines, skipping ticks
/// it is too late for. Used by the simulated devices.
final class PeriodicThread: @unchecked Sendable {
    /// `running` and the handle under one lock, so `start` and `stop` on different threads
    /// agree on which thread to join.
    private let lock = Lock()
    private var running = false
    private var thread: pthread_t?
    let interval: Duration
    let body: (Instant) -> Void

    init(interval: Duration, body: @escaping (Instant) -> Void) {
        self.interval = interval
        self.body = body
    }

    func start(name: String) {
        lock.withLock {
            running = true
            thread = startThread(name: name) { [self] in run() }
        }
    }

    func stop() {
        let t = lock.withLock { () -> pthread_t? in
            running = false
            defer { thread = nil }
            return thread
        }
        join(t)
    }

    private func run() {
        var next = Instant.now()
        while lock.withLock({ running }) {
            let now = Instant.now()
            if now < next {
                let wait = next - now
                var ts = timespec(tv_sec: Int(wait.nanosecondsInt / 1_000_000_000), tv_nsec: Int(wait.nanosecondsInt % 1_000_000_000))
                nanosleep(&ts, nil)
            }
            body(Instant.now())
            next = next + interval
            let after = Instant.now()
            // Too late for one or more ticks: skip them instead of bursting.
            while next < after { next = next + interval }
        }
    }
}



/// Starts a ``PeriodicThread`` once and stops it for good: `start` after `stop` does
/// nothing, since a call may end while its devices are still starting.
final class PeriodicRunner: @unchecked Sendable {
    private let lock = Lock()
    private var thread: PeriodicThread?
    private var stopped = false

    func start(name: String, interval: Duration, _ body: @escaping (Instant) -> Void) {
        let t = PeriodicThread(interval: interval, body: body)
        // Started under the lock: a `stop` racing this start either comes first (nothing
        // starts) or finds the running thread to stop.
        lock.withLock {
            guard !stopped, thread == nil else { return }
            thread = t
            t.start(name: name)
        }
    }

    func stop() {
        let t = lock.withLock { () -> PeriodicThread? in stopped = true; defer { thread = nil }; return thread }
        t?.stop()
    }
}
