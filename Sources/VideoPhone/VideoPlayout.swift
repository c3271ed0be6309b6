import Codecs
import Display
import Logging
import NetworkCore
import PeerConnection
import RTP

/// The receive side of a call's video: reassembled frames wait in a short bounded queue,
/// are decoded on their own `video-decode` thread (never on the transport thread), and are
/// shown at the time lip sync (or the jitter buffer) gives them.
///
/// A decode error, a picture that had to be concealed, or frames that need a reference the
/// decoder lacks ask the sender for a keyframe through ``requestKeyframe`` (at most every
/// 500 ms; the transport thread sends the PLI). When the queue overflows the oldest frames
/// go and decoding waits for the next keyframe (one is asked for).
final class VideoPlayout: @unchecked Sendable {
    struct Item {
        var frame: AssembledFrame
        var arrival: Instant
    }

    /// Frames waiting for the decoder: a second at 30 fps is far more than the jitter
    /// buffer holds; more means the decoder cannot keep up.
    static let capacity = 30
    static let keyframeRequestInterval: Duration = .milliseconds(500)

    private let lock = Lock()
    private var queue: [Item] = []
    private var scheduler = VideoPlayoutScheduler()
    private let wake = Semaphore()
    private let thread = DeviceThread()
    private let decoder: any VideoDecoder
    private let screen: ScreenService
    private let logger: Logger
    /// Asks the sender for a keyframe (queues a PLI on the transport thread).
    let requestKeyframe: @Sendable () -> Void
    private var lastRequest: Instant?
    /// From calling the screen to the flip (compose, then the wait for vblank): the wait for
    /// the due time ends this much earlier so the flip lands on it. Smoothed.
    private var presentLatencyMs = 10.0
    private var waitingForKeyframe = false

    struct Figures: Sendable {
        var decoded: UInt64 = 0
        var decodeErrors: UInt64 = 0
        var concealed: UInt64 = 0
        var keyframeRequests: UInt64 = 0
        var dropped: UInt64 = 0
        var late: UInt64 = 0
        /// Decoded but not drawn: late, with a newer frame already waiting.
        var skipped: UInt64 = 0
        var lipSynced: UInt64 = 0
        var decodeMs: [Double] = []
        /// Audio heard minus video shown for lip-synced frames, ms (positive: audio ahead).
        var syncOffsetMs: [Double] = []
        var jitterBufferMs = 0.0
    }
    private var figures = Figures()
    /// Recent decode times and lip-sync offsets: fixed rings (their arrays in ``Figures`` are
    /// filled by ``current``; a copy of a growing array made the decode thread copy it).
    private var decodeTimes = RecentSamples(capacity: 2048)
    private var syncOffsets = RecentSamples(capacity: 4096)

    init(decoder: any VideoDecoder, screen: ScreenService, logger: Logger, requestKeyframe: @escaping @Sendable () -> Void) {
        self.decoder = decoder
        self.screen = screen
        self.logger = logger
        self.requestKeyframe = requestKeyframe
    }

    func start() {
        thread.start(name: "video-decode") { [self] in run() }
    }

    func stop() {
        thread.stop { wake.signal() }
    }

    // MARK: inputs (transport and speaker threads): short, no decoding

    /// A reassembled frame (transport thread).
    func insert(_ frame: AssembledFrame, arrival: Instant) {
        let overflow = lock.withLock { () -> Bool in
            if queue.count >= VideoPlayout.capacity {
                figures.dropped += UInt64(queue.count)
                queue.removeAll(keepingCapacity: true)
                waitingForKeyframe = true
                if !frame.isKeyframe { return true }
            }
            queue.append(Item(frame: frame, arrival: arrival))
            return false
        }
        if overflow { keyframeNeeded(reason: "the decoder fell \(VideoPlayout.capacity) frames behind", now: arrival) }
        wake.signal()
    }

    func senderReport(video: Bool, ntp: UInt64, rtp: UInt32) {
        lock.withLock {
            if video { scheduler.videoSenderReport(ntp: ntp, rtp: rtp) } else { scheduler.audioSenderReport(ntp: ntp, rtp: rtp) }
        }
    }

    /// The speaker thread played audio timestamp `rtp`, heard at `heard` (nil: silence).
    func audioPlayed(rtp: UInt32?, heard: Instant) {
        lock.withLock {
            if let rtp { scheduler.audioPlayed(rtp: rtp, heard: heard) } else { scheduler.audioStopped() }
        }
    }

    var current: Figures {
        lock.withLock {
            var f = figures
            f.decodeMs = decodeTimes.values
            f.syncOffsetMs = syncOffsets.values
            return f
        }
    }
    var decoderName: String { decoder.name }

    private func keyframeNeeded(reason: String, now: Instant) {
        let send = lock.withLock { () -> Bool in
            if let l = lastRequest, now - l < VideoPlayout.keyframeRequestInterval { return false }
            lastRequest = now
            figures.keyframeRequests += 1
            return true
        }
        if send {
            logger.debug("asking the peer for a keyframe", metadata: ["REASON": "\(reason)"])
            requestKeyframe()
        }
    }

    // MARK: the decode thread

    private func run() {
        var picture = I420Picture()
        while thread.isRunning {
            guard let item = lock.withLock({ queue.isEmpty ? nil : queue.removeFirst() }) else {
                _ = wake.wait(timeout: .milliseconds(200))
                continue
            }
            let skip = lock.withLock { () -> Bool in
                if waitingForKeyframe && !item.frame.isKeyframe { return true }
                if item.frame.isKeyframe { waitingForKeyframe = false }
                return false
            }
            if skip { continue }
            let t0 = Instant.now()
            let result = item.frame.data.withUnsafeBytes { decoder.decode($0, into: &picture) }
            let decodeMs = (Instant.now() - t0).milliseconds
            switch result {
            case .picture(let concealed):
                lock.withLock {
                    figures.decoded += 1
                    if concealed { figures.concealed += 1 }
                    decodeTimes.add(decodeMs)
                }
                if concealed { keyframeNeeded(reason: "the decoder concealed missing data", now: Instant.now()) }
                show(picture, item)
            case .noPicture:
                // One in, one out: a frame with no picture lacks its reference.
                if !item.frame.isKeyframe || item.frame.data.count > 64 {
                    lock.withLock { figures.decodeErrors += 1 }
                    keyframeNeeded(reason: "a frame gave no picture (reference missing)", now: Instant.now())
                }
            case .failed(let why):
                lock.withLock { figures.decodeErrors += 1 }
                logger.debug("video frame did not decode", metadata: ["REASON": "\(why)", "rtpTimestamp": "\(item.frame.rtpTimestamp)"])
                keyframeNeeded(reason: "decode error: \(why)", now: Instant.now())
            }
        }
    }

    /// Waits until the frame's due time (a newer frame that is due already cuts the wait
    /// short: the older one is skipped rather than shown late), then flips it.
    private func show(_ picture: I420Picture, _ item: Item) {
        let now = Instant.now()
        let decision = lock.withLock { () -> VideoPlayoutScheduler.Decision in
            let d = scheduler.schedule(rtp: item.frame.rtpTimestamp, arrival: item.arrival, now: now)
            figures.jitterBufferMs = scheduler.targetDelay.milliseconds
            switch d.mode {
            case .late: figures.late += 1
            case .lipSync: figures.lipSynced += 1
            case .jitterBuffer: break
            }
            return d
        }
        // Behind (a late frame with a newer one already waiting): decode only. Every frame
        // must be decoded (references), but drawing one that is already stale only adds delay.
        if decision.mode == .late, lock.withLock({ !queue.isEmpty }) {
            lock.withLock { figures.skipped += 1 }
            return
        }
        let wakeAt = decision.due - .nanoseconds(Int64(presentLatencyMs * 1e6))
        while thread.isRunning {
            let n = Instant.now()
            if wakeAt <= n { break }
            let left = wakeAt - n
            // New frames wake this wait; they keep their place in the queue.
            _ = wake.wait(timeout: left)
            if lock.withLock({ queue.count > VideoPlayout.capacity / 2 }) { break }
        }
        let presentStart = Instant.now()
        guard thread.isRunning, let flip = screen.present(remote: picture, captureNTP: item.frame.captureNTP) else { return }
        let took = flip >= presentStart ? (flip - presentStart).milliseconds : 0
        presentLatencyMs += (min(took, 50) - presentLatencyMs) / 8
        if decision.mode == .lipSync, let heard = lock.withLock({ scheduler.lipSyncTime(rtp: item.frame.rtpTimestamp) }) {
            // Positive: the sound was heard before the picture showed (audio ahead).
            let offset = (flip - heard).milliseconds
            lock.withLock { syncOffsets.add(offset) }
        }
    }
}
