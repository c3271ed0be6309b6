import NetworkCore
#if canImport(Glibc)
import Glibc
#endif

/// A camera that draws a moving test pattern: colour bars scrolling sideways and a white
/// square bouncing, so motion (and so encoder load) resembles a real scene. Frames come
/// from a small pool of reused buffers; drawing a frame costs a few row copies.
public final class TestPatternCamera: VideoSource, @unchecked Sendable {
    public let width: Int
    public let height: Int
    public let fps: Int
    private let runner = PeriodicRunner()
    private var pool: [UnsafeMutableRawBufferPointer]
    private var poolIndex = 0
    private var frameNumber = 0
    private let barsRow: [UInt8]

    public init(width: Int = 1280, height: Int = 720, fps: Int = 30) {
        self.width = width & ~1
        self.height = height & ~1
        self.fps = fps
        let size = self.width * self.height * 3 / 2
        // Frames are consumed synchronously on this thread, so one buffer is enough.
        pool = (0..<1).map { _ in
            let p = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 64)
            p.initializeMemory(as: UInt8.self, repeating: 128)
            return p
        }
        // Luma of eight bars, twice as wide as the frame so a window can scroll over it.
        let levels: [UInt8] = [235, 210, 170, 145, 106, 81, 41, 16]
        let w = self.width
        barsRow = (0..<(2 * w)).map { levels[($0 * 8 / w) % 8] }
    }

    deinit { for p in pool { p.deallocate() } }

    /// Starts delivering frames; a no-op once ``stop()`` was called (a call may end while
    /// its devices are still starting).
    public func start(_ onFrame: @escaping @Sendable (VideoFrame) -> Void) throws {
        // The thread holds the camera until stop() ends it.
        runner.start(name: "test-camera", interval: .nanoseconds(1_000_000_000 / Int64(fps))) { now in
            let ntp = NTPTime.now()
            let buf = self.draw()
            onFrame(VideoFrame(width: self.width, height: self.height, buffer: UnsafeRawBufferPointer(buf), captureTime: now, captureNTP: ntp))
        }
    }

    public func stop() { runner.stop() }

    /// Draws the next frame into the next pool buffer (public for the benchmarks, which
    /// encode the same moving picture without the camera's thread).
    public func draw() -> UnsafeMutableRawBufferPointer {
        let buf = pool[poolIndex]
        poolIndex = (poolIndex + 1) % pool.count
        frameNumber += 1
        let w = width, h = height
        let shift = (frameNumber * 8) % w
        let y = buf.baseAddress!.assumingMemoryBound(to: UInt8.self)
        barsRow.withUnsafeBufferPointer { bars in
            for row in 0..<h {
                // Slight vertical gradient so rows differ.
                (y + row * w).update(from: bars.baseAddress! + (shift + row / 8) % w, count: w)
            }
        }
        // A bouncing square.
        let side = h / 6
        let period = 2 * (w - side)
        var x = (frameNumber * 12) % period
        if x > w - side { x = period - x }
        let top = (h - side) / 2 + Int(Double(h / 4) * sin(Double(frameNumber) / 15))
        for row in max(0, top)..<min(h, top + side) {
            (y + row * w + x).update(repeating: 235, count: side)
        }
        // Chroma: a slowly changing tint.
        let u = y + w * h, v = u + (w / 2) * (h / 2)
        u.update(repeating: UInt8(96 + frameNumber % 64), count: (w / 2) * (h / 2))
        v.update(repeating: UInt8(160 - frameNumber % 64), count: (w / 2) * (h / 2))
        return buf
    }
}

/// A microphone that produces a 440 Hz tone in 20 ms chunks.
public final class ToneSource: AudioSource, @unchecked Sendable {
    private let runner = PeriodicRunner()
    /// The tone as a unit phasor turned by one sample's angle per sample: two multiply-adds
    /// a sample instead of a `sin` (the simulated microphone's cost is the device's in the
    /// CPU benchmarks), put back on the unit circle once a chunk so rounding cannot drift.
    private var re = 1.0, im = 0.0
    public let frequency: Double

    private var chunk = [Int16](repeating: 0, count: 960)

    public init(frequency: Double = 440) { self.frequency = frequency }

    public func start(_ onSamples: @escaping @Sendable ([Int16], Instant) -> Void) throws {
        let step = 2 * Double.pi * frequency / 48000
        let c = cos(step), s = sin(step)
        runner.start(name: "tone-mic", interval: .milliseconds(20)) { now in
            // One buffer for every chunk: consumers copy what they keep, so it is unique
            // again by the next chunk and refilling it allocates nothing.
            var samples = self.chunk
            self.chunk = []
            var re = self.re, im = self.im
            for i in 0..<960 {
                samples[i] = Int16(8000 * im)
                (re, im) = (re * c - im * s, re * s + im * c)
            }
            let norm = (re * re + im * im).squareRoot()
            self.re = re / norm
            self.im = im / norm
            onSamples(samples, now)
            self.chunk = samples
        }
    }

    public func stop() { runner.stop() }
}

/// A speaker without sound hardware: pulls a frame every 20 ms like a sound card would,
/// counts what carried sound and measures its level.
public final class CountingAudioSink: AudioSink, @unchecked Sendable {
    private let lock = Lock()
    private let runner = PeriodicRunner()
    private var played = 0
    private var energy = 0.0
    private let frame = UnsafeMutableBufferPointer<Int16>.allocate(capacity: 960)
    /// Where the sound goes (the simulator's echo path), silence included.
    private let room: SimulatedRoom?

    public init(room: SimulatedRoom? = nil) {
        self.room = room
        frame.initialize(repeating: 0)
    }

    deinit {
        runner.stop()
        frame.deallocate()
    }

    public func start(_ render: @escaping @Sendable (UnsafeMutableBufferPointer<Int16>) -> Bool) throws {
        runner.start(name: "sim-speaker", interval: .milliseconds(20)) { [self] _ in
            let sound = render(frame)
            if let room {
                if !sound { frame.update(repeating: 0) }
                room.speakerPlayed(UnsafeBufferPointer(frame))
            }
            guard sound else { return }
            var e = 0.0
            for s in frame { e += Double(s) * Double(s) }
            lock.withLock {
                played += frame.count
                energy = (e / Double(frame.count)).squareRoot()
            }
        }
    }

    public func stop() { runner.stop() }

    public var samplesPlayed: Int { lock.withLock { played } }
    /// RMS level of the last chunk played.
    public var lastLevel: Double { lock.withLock { energy } }
}
