import AudioProcessing
import Codecs
import Display
import Logging
import MediaDevices
import NetworkCore
import PeerConnection
import RTP
#if canImport(Glibc)
import Glibc
#endif

/// The media of one call: camera → x264 → RTP, microphone → Opus → RTP, and the receive
/// side (Opus → speaker; reassembled video frames counted, timed and, with a screen,
/// decoded and shown in sync with the speaker by ``VideoPlayout``).
///
/// Encoding runs on the camera's and microphone's own threads. Nothing is sent before SRTP
/// keys exist (a lost first IDR costs seconds in other stacks); a keyframe is encoded while
/// DTLS runs and sent the moment keys exist, without waiting for the next capture.
public final class MediaSession: @unchecked Sendable {
    let logger: Logger
    let camera: (any VideoSource)?
    let microphone: (any AudioSource)?
    let speaker: any AudioSink
    /// Echo cancellation, noise suppression and gain control between the microphone and
    /// Opus (nil: none configured or the library failed). Shared by the device's calls.
    let audioProcessor: AudioProcessor?
    private let micTiming: (any AudioSourceTiming)?
    private let speakerTiming: (any AudioSinkTiming)?
    let videoSettings: H264EncoderSettings
    private let encoderLock = Lock()
    private var encoder: (any VideoEncoder)?
    /// Opens the encoder for given settings (x264 or the board's hardware encoder).
    let makeEncoder: (H264EncoderSettings) throws -> any VideoEncoder
    /// The screen, when the device has one (`[display] output` other than `none`); without
    /// one received video is not decoded at all.
    let screen: ScreenService?
    /// Decodes and shows the far end's video (nil without a screen or a decoder).
    let videoPlayout: VideoPlayout?
    private var insetScaler = I420Scaler()
    private var insetFrames = 0
    // Made up front: packets from the peer may arrive before capture has started.
    private let opus = try? OpusEncoder(channels: 1)
    private let playout = AudioPlayout()
    private var pc: PeerConnection?
    /// The same connection for the audio thread, which must never wait behind a video
    /// encode (the encoder lock is held for one; on a slow board that is a lost period).
    private let audioPeer = Locked<PeerConnection?>(nil)
    private let encoderName = Locked<String?>(nil)
    /// The connection the decode thread asks for keyframes through.
    private let videoPeer: Locked<PeerConnection?>?
    private let state = Locked(State())
    /// Recent latencies, ms: capture at the sender → frame reassembled here (transport
    /// thread), and encode time (encoder thread). Fixed rings, apart from ``State``: its
    /// copies (`state.current`) would share their storage and make the next add copy it.
    private let recentCaptureToFrame = Locked(RecentSamples(capacity: 4096))
    private let recentEncodeMs = Locked(RecentSamples(capacity: 600))
    /// Called once, when the first packet of media from the peer arrives.
    public var onFirstRemoteMedia: (@Sendable () -> Void)? {
        get { firstMediaHook.current }
        set { firstMediaHook.withLock { $0 = newValue } }
    }
    private let firstMediaHook = Locked<(@Sendable () -> Void)?>(nil)
    private let sawRemoteMedia = Locked(false)

    func remoteMediaArrived() {
        let first = sawRemoteMedia.withLock { seen -> Bool in defer { seen = true }; return !seen }
        if first { firstMediaHook.current?() }
    }

    struct State {
        var mediaReady = false
        var sendingAllowed = false
        var forceKeyframe = true
        var lastRequestedKeyframe: Instant?
        var stopped = false
        var framesReceived: UInt64 = 0
        var keyframesReceived: UInt64 = 0
        /// What the encoder is set to now (the ladder's rung).
        var encodedSize: (width: Int, height: Int, fps: Int)?
    }

    public init(logger: Logger, camera: (any VideoSource)?, microphone: (any AudioSource)?, speaker: any AudioSink,
                videoSettings: H264EncoderSettings, sendingAllowed: Bool,
                makeEncoder: @escaping (H264EncoderSettings) throws -> any VideoEncoder = { try X264Encoder(settings: $0) },
                audioProcessor: AudioProcessor? = nil, screen: ScreenService? = nil,
                makeDecoder: () throws -> any VideoDecoder = { try AVCodecH264Decoder() }) {
        self.logger = logger
        self.screen = screen
        if let screen {
            do {
                let decoder = try makeDecoder()
                let peer = Locked<PeerConnection?>(nil)
                videoPeer = peer
                videoPlayout = VideoPlayout(decoder: decoder, screen: screen, logger: logger) { peer.current?.requestKeyframe() }
                logger.debug("video decoder ready", metadata: ["decoder": "\(decoder.name)"])
            } catch {
                logger.error("no video decoder: the far end's video will not be shown", metadata: ["REASON": "\(error)"])
                videoPlayout = nil
                videoPeer = nil
            }
        } else {
            videoPlayout = nil
            videoPeer = nil
        }
        self.audioProcessor = audioProcessor
        micTiming = microphone as? any AudioSourceTiming
        speakerTiming = speaker as? any AudioSinkTiming
        self.makeEncoder = makeEncoder
        self.camera = camera
        self.microphone = microphone
        self.speaker = speaker
        self.videoSettings = videoSettings
        state.withLock { $0.sendingAllowed = sendingAllowed }
    }

    /// Handlers for the peer connection, bound to this session.
    public var handlers: PeerConnectionHandlers {
        var h = PeerConnectionHandlers()
        h.onMediaReady = { [weak self] in self?.mediaReady() }
        h.onKeyframeRequest = { [weak self] in self?.keyframeRequested(now: Instant.now()) }
        h.onTargetBitrate = { [weak self] kbps in self?.setVideoBitrate(kbps) }
        h.onVideoFrame = { [weak self] frame, arrival in self?.receivedVideo(frame, arrival: arrival) }
        h.onSenderReport = { [weak self] video, ntp, rtp in self?.videoPlayout?.senderReport(video: video, ntp: ntp, rtp: rtp) }
        h.onAudioPacket = { [weak self] payload, seq, ts in self?.receivedAudio(payload, sequence: seq, timestamp: ts) }
        return h
    }

    /// Opens the encoders and starts capture; runs while signalling and ICE proceed.
    public func start(peerConnection: PeerConnection) throws {
        // The call may have ended while this thread was getting here.
        if state.current.stopped { return }
        encoderLock.withLock { pc = peerConnection }
        audioPeer.withLock { $0 = peerConnection }
        videoPeer?.withLock { $0 = peerConnection }
        videoPlayout?.start()
        if let camera {
            // The driver may have picked another size than asked for: encode what it gives.
            var settings = videoSettings
            settings.width = camera.width
            settings.height = camera.height
            let enc = try makeEncoder(settings)
            encoderLock.withLock {
                encoder = enc
                ladder = EncodingLadder(width: camera.width, height: camera.height, fps: videoSettings.fps)
            }
            encoderName.withLock { $0 = enc.name }
            try camera.start { [weak self] frame in self?.capturedVideo(frame) }
        }
        // A new call's devices: the reference backlog starts again (the canceller keeps its filter).
        audioProcessor?.restart()
        if let microphone {
            try microphone.start { [weak self] samples, _ in self?.capturedAudio(samples) }
        }
        let playout = self.playout
        let processor = audioProcessor, timing = speakerTiming
        let video = videoPlayout
        try speaker.start { out in
            let sound = playout.render(into: out)
            // Lip sync: this frame's RTP timestamp is heard once the card's queue has played.
            video?.audioPlayed(rtp: sound ? playout.playedTimestamp : nil, heard: Instant.now() + (timing?.playbackDelay ?? .zero))
            if let processor {
                // The far-end reference is exactly what the card gets, silence included.
                if !sound { out.update(repeating: 0) }
                processor.referenceWillPlay(UnsafeBufferPointer(out), playbackDelay: timing?.playbackDelay ?? .zero,
                                            discontinuities: timing?.discontinuities ?? 0)
            }
            return sound
        }
    }

    public func stop() {
        state.withLock { $0.stopped = true }
        camera?.stop()
        microphone?.stop()
        speaker.stop()
        videoPlayout?.stop()
    }

    /// The callee answered: media may flow now.
    public func allowSending() {
        let ready = state.withLock { s -> Bool in s.sendingAllowed = true; s.forceKeyframe = true; return s.mediaReady }
        if ready { sendPendingKeyframe() }
    }

    func mediaReady() {
        let allowed = state.withLock { s -> Bool in s.mediaReady = true; s.forceKeyframe = true; return s.sendingAllowed }
        if allowed { sendPendingKeyframe() }
    }

    /// A keyframe encoded while keys did not exist yet, sent the moment they do: the first
    /// frame costs no encoding time on the critical path.
    private var pendingKeyframe: (EncodedVideoFrame, Instant, UInt64)?
    private var lastPreEncode: Instant?

    private func sendPendingKeyframe() {
        encoderLock.withLock {
            guard let pc, let encoder, let (frame, t, ntp) = pendingKeyframe else { return }
            pendingKeyframe = nil
            state.withLock { $0.forceKeyframe = false }
            pc.sendVideo(frame.data, isKeyframe: true, width: encoder.settings.width, height: encoder.settings.height, captureTime: t, captureNTP: ntp)
        }
    }

    /// When the camera or microphone last delivered something (the watchdog's pulse).
    public var lastCapture: Instant? { captureClock.current }
    private let captureClock = Locked<Instant?>(nil)

    func capturedVideo(_ frame: VideoFrame) {
        captureClock.withLock { $0 = frame.captureTime }
        let s = state.current
        if s.stopped { return }
        if let screen { updateInset(frame, screen: screen) }
        encoderLock.withLock {
            // A camera that came back at another size: a new ladder and encoder, starting
            // with a keyframe.
            if ladder.rungs[0].width != frame.width || ladder.rungs[0].height != frame.height {
                ladder = EncodingLadder(width: frame.width, height: frame.height, fps: videoSettings.fps)
                reopenEncoder(ladder.current)
            }
            if !(s.mediaReady && s.sendingAllowed) {
                // Keep a fresh keyframe ready: every frame during connection setup (tens of
                // ms), a few per second while ringing.
                let now = Instant.now()
                if !s.mediaReady || lastPreEncode.map({ now - $0 > .milliseconds(100) }) ?? true, let encoder {
                    lastPreEncode = now
                    if let out = encoder.encode(i420: frame.buffer, forceKeyframe: true) {
                        pendingKeyframe = (out, frame.captureTime, frame.captureNTP)
                    }
                }
                return
            }
            if pendingKeyframe != nil {
                // Keys arrived between two frames and nothing was sent yet: send that first.
                if let pc, let (kf, t, ntp) = pendingKeyframe {
                    pc.sendVideo(kf.data, isKeyframe: true, width: videoSettings.width, height: videoSettings.height, captureTime: t, captureNTP: ntp)
                    state.withLock { $0.forceKeyframe = false }
                }
                pendingKeyframe = nil
            }
            encodeAndSend(frame)
        }
    }

    /// Every third camera frame, a small copy for the screen's inset (camera thread).
    private func updateInset(_ frame: VideoFrame, screen: ScreenService) {
        insetFrames += 1
        guard insetFrames % 3 == 1, frame.width >= 64, frame.height >= 36 else { return }
        let w = 320, h = max(2, (320 * frame.height / frame.width) & ~1)
        insetScaler.scale(frame.buffer, width: frame.width, height: frame.height, toWidth: w, toHeight: h)
        insetScaler.output.withUnsafeBytes { screen.setLocal($0, width: w, height: h) }
    }

    /// PLI or FIR: the next frame is an IDR, at once. Requests closer than 500 ms to the
    /// last one are dropped: on a congested link every lost keyframe brings another PLI, and
    /// answering each with a big IDR keeps the link flooded (the KPI's freeze).
    func keyframeRequested(now: Instant) {
        state.withLock { s in
            if let last = s.lastRequestedKeyframe, now - last < .milliseconds(500) { return }
            s.lastRequestedKeyframe = now
            s.forceKeyframe = true
        }
    }

    /// Congestion control moved the target (transport thread): the camera thread applies
    /// it before its next encode, so the transport thread never waits for an encode.
    func setVideoBitrate(_ kbps: Int) { pendingBitrate.withLock { $0 = kbps } }
    private let pendingBitrate = Locked<Int?>(nil)

    /// Picture size and frame rate from the target (encoder thread, `encoderLock` held).
    private var ladder = EncodingLadder(width: 2, height: 2, fps: 30)
    private var scaler = I420Scaler()
    private var targetKbps: Int?
    private var framesSeen = 0
    private var pausedForFeedback = false

    /// A new encoder for `rung` at the present target; the next frame is a keyframe.
    /// Call with `encoderLock` held.
    private func reopenEncoder(_ rung: EncodingLadder.Rung) {
        guard let e = encoder else { return }
        var settings = e.settings
        settings.width = rung.width
        settings.height = rung.height
        settings.fps = rung.fps
        if let t = targetKbps { settings.bitrateKbps = t }
        do {
            encoder = try makeEncoder(settings)
        } catch {
            logger.warning("encoder did not reopen for a new size; keeping the old one", metadata: ["size": "\(rung.width)x\(rung.height)@\(rung.fps)", "REASON": "\(error)"])
            return
        }
        encoderName.withLock { $0 = encoder?.name }
        state.withLock { $0.forceKeyframe = true; $0.encodedSize = (rung.width, rung.height, rung.fps) }
    }

    /// Call with `encoderLock` held.
    private func encodeAndSend(_ frame: VideoFrame) {
        guard encoder != nil, let pc else { return }
        if let kbps = pendingBitrate.withLock({ p -> Int? in defer { p = nil }; return p }) {
            targetKbps = kbps
            encoder!.setBitrate(kbps: kbps)
        }
        if let t = targetKbps, let rung = ladder.update(targetKbps: t, seconds: Double(frame.captureTime.nanoseconds) / 1e9) {
            logger.info("video adapts to the network", metadata: ["size": "\(rung.width)x\(rung.height)", "fps": "\(rung.fps)", "targetKbps": "\(t)"])
            reopenEncoder(rung)
        }
        // The peer's feedback stopped: frames would go into a dead path. Hold them, and
        // start again with a keyframe, which the far end can show at once.
        switch pc.videoFeedbackDecision() {
        case .hold:
            if !pausedForFeedback {
                pausedForFeedback = true
                logger.notice("video paused: no transport feedback from the peer for a second")
            }
            state.withLock { $0.forceKeyframe = true }
            return
        case .probe:
            break  // one keyframe a second while paused
        case .send:
            if pausedForFeedback {
                pausedForFeedback = false
                logger.notice("video resumed: the peer's feedback is back")
            }
        }
        let rung = ladder.current
        framesSeen += 1
        // Half the frame rate: every other captured frame.
        if rung.fps < ladder.rungs[0].fps, framesSeen % max(1, ladder.rungs[0].fps / rung.fps) != 0 { return }
        // The path's queue is draining after it nearly overflowed: not encoded, so the
        // next frame still refers to one the far end has.
        guard pc.videoMayEncode() else { return }
        guard let encoder else { return }
        let captureTime = frame.captureTime, captureNTP = frame.captureNTP
        let force = state.withLock { s -> Bool in defer { s.forceKeyframe = false }; return s.forceKeyframe }
        let t0 = Instant.now()
        let encoded: EncodedVideoFrame?
        if encoder.settings.width == frame.width && encoder.settings.height == frame.height {
            encoded = encoder.encode(i420: frame.buffer, forceKeyframe: force)
        } else {
            scaler.scale(frame.buffer, width: frame.width, height: frame.height, toWidth: encoder.settings.width, toHeight: encoder.settings.height)
            encoded = scaler.output.withUnsafeBytes { encoder.encode(i420: $0, forceKeyframe: force) }
        }
        guard let out = encoded else { return }
        let ms = (Instant.now() - t0).milliseconds
        recentEncodeMs.withLock { $0.add(ms) }
        pc.sendVideo(out.data, isKeyframe: out.isKeyframe, width: encoder.settings.width, height: encoder.settings.height,
                     captureTime: captureTime, captureNTP: captureNTP)
    }

    func capturedAudio(_ samples: [Int16]) {
        if camera == nil { captureClock.withLock { $0 = Instant.now() } }
        let s = state.current
        if s.stopped { return }
        // Processed even before media flows: the canceller converges on the ringing call.
        let pcm = audioProcessor?.process(samples, captureDelay: micTiming?.captureDelay ?? .zero,
                                          discontinuities: micTiming?.discontinuities ?? 0) ?? samples
        guard s.mediaReady, s.sendingAllowed, let opus, let pc = audioPeer.current else { return }
        _ = opus.encode(pcm) { pc.sendAudio($0, samples: OpusEncoder.frameSamples) }
    }

    func receivedAudio(_ payload: ArraySlice<UInt8>, sequence: UInt16, timestamp: UInt32) {
        remoteMediaArrived()
        playout.insert(payload, sequence: sequence, timestamp: timestamp, arrival: Instant.now())
    }

    func receivedVideo(_ frame: AssembledFrame, arrival: Instant = Instant.now()) {
        remoteMediaArrived()
        videoPlayout?.insert(frame, arrival: arrival)
        let latency = frame.captureNTP.map { Double(wallClockNanoseconds() - NTPTime.toUnixNanoseconds($0)) / 1e6 }
        state.withLock { s in
            s.framesReceived += 1
            if frame.isKeyframe { s.keyframesReceived += 1 }
        }
        if let l = latency { recentCaptureToFrame.withLock { $0.add(l) } }
    }

    /// Figures for status and benchmarks.
    public struct Figures: Sendable {
        public var framesReceived: UInt64
        public var keyframesReceived: UInt64
        public var audioPacketsDecoded: UInt64
        public var audioDecodeErrors: UInt64
        public var audioSamplesPlayed: Int
        /// Samples played from concealment (lost, late or FEC-rebuilt packets).
        public var audioConcealedSamples: UInt64
        public var audioRecoveredByFEC: UInt64
        public var audioLatePackets: Int
        public var audioDiscardedPackets: Int
        /// The jitter buffer's target and present delay, ms.
        public var jitterBufferTargetMs: Double
        public var jitterBufferDelayMs: Double
        public var audioLevel: Double
        public var totalAudioEnergy: Double
        public var totalSamplesDuration: Double
        /// W3C encoderImplementation: `x264` or the hardware encoder's node and card.
        public var encoderImplementation: String?
        public var microphoneOverruns: Int
        public var speakerUnderruns: Int
        /// Capture at the sender → frame reassembled here, ms (recent frames).
        public var captureToFrameMs: [Double]
        public var encodeMs: [Double]
        /// The decode-and-show path (nil without a screen).
        public var video: VideoFigures?
    }

    /// The received video's decoding, sync and display.
    public struct VideoFigures: Sendable {
        public var decoder: String
        public var decoded: UInt64
        public var decodeErrors: UInt64
        public var concealed: UInt64
        public var keyframeRequests: UInt64
        public var dropped: UInt64
        public var lipSynced: UInt64
        public var late: UInt64
        public var skipped: UInt64
        public var jitterBufferMs: Double
        public var decodeMs: [Double]
        /// Flip time minus the time its audio was heard, ms (positive: audio ahead of video).
        public var syncOffsetMs: [Double]
    }

    /// Calls `body` with each encode time (ms) recorded after the first `seen` and still
    /// held, oldest first, without copying them; returns how many were ever recorded.
    @discardableResult
    public func encodeTimes(since seen: UInt64, _ body: (Double) -> Void) -> UInt64 {
        recentEncodeMs.withLock { $0.forEach(since: seen, body) }
    }

    /// What the metrics tick sets four times a second: ``figures`` without the latency
    /// samples it copies into new arrays.
    public var liveAudio: (jitterBufferDelayMs: Double, concealedSamples: UInt64, microphoneOverruns: Int, speakerUnderruns: Int) {
        let a = playout.current
        return (a.currentDelayMs, a.concealedSamples, microphone?.overruns ?? 0, speaker.underruns)
    }

    public var figures: Figures {
        let s = state.current
        let a = playout.current
        return Figures(framesReceived: s.framesReceived, keyframesReceived: s.keyframesReceived, audioPacketsDecoded: a.decoded,
                       audioDecodeErrors: a.decodeErrors, audioSamplesPlayed: speaker.samplesPlayed,
                       audioConcealedSamples: a.concealedSamples, audioRecoveredByFEC: a.recoveredByFEC,
                       audioLatePackets: a.counters.late, audioDiscardedPackets: a.counters.discarded,
                       jitterBufferTargetMs: a.targetDelayMs, jitterBufferDelayMs: a.currentDelayMs, audioLevel: a.audioLevel,
                       totalAudioEnergy: a.totalAudioEnergy, totalSamplesDuration: a.totalSamplesDuration,
                       encoderImplementation: encoderName.current,
                       microphoneOverruns: microphone?.overruns ?? 0, speakerUnderruns: speaker.underruns,
                       captureToFrameMs: recentCaptureToFrame.withLock { $0.values }, encodeMs: recentEncodeMs.withLock { $0.values },
                       video: videoPlayout.map { p in
                           let v = p.current
                           return VideoFigures(decoder: p.decoderName, decoded: v.decoded, decodeErrors: v.decodeErrors, concealed: v.concealed,
                                               keyframeRequests: v.keyframeRequests, dropped: v.dropped, lipSynced: v.lipSynced, late: v.late, skipped: v.skipped,
                                               jitterBufferMs: v.jitterBufferMs, decodeMs: v.decodeMs, syncOffsetMs: v.syncOffsetMs)
                       })
    }
}

/// Median and percentiles of a sample.
public func percentile(_ values: [Double], _ p: Double) -> Double? {
    guard !values.isEmpty else { return nil }
    let sorted = values.sorted()
    let idx = min(sorted.count - 1, max(0, Int((p / 100 * Double(sorted.count - 1)).rounded())))
    return sorted[idx]
}
