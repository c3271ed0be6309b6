import BuildInfo
import CallControl
import NetworkCore
import PeerConnection
import Prometheus
import SignedSignalling
#if canImport(Glibc)
import Glibc
#endif

/// The device's Prometheus metrics: one registry per device, scraped at `/metrics`. The
/// same registry backs swift-metrics (see ``DeviceMetrics/factory``) so libraries that
/// report through swift-metrics land on the same page.
public final class DeviceMetrics: @unchecked Sendable {
    public let registry: PrometheusCollectorRegistry
    /// A swift-metrics factory writing into ``registry``.
    public var factory: PrometheusMetricsFactory { PrometheusMetricsFactory(registry: registry) }

    private let setupBuckets: [Duration] = [5, 10, 20, 35, 50, 75, 100, 150, 250, 500, 1000, 2500, 5000].map { .milliseconds($0) }
    private let latencyBuckets: [Duration] = [1, 2, 4, 6, 8, 10, 15, 20, 30, 50, 100].map { .milliseconds($0) }
    private let sampler = Locked(SamplerState())
    /// The series ``sample(_:)`` sets, made once (see ``LiveSeries``).
    let live: LiveSeries

    public init() {
        registry = PrometheusCollectorRegistry()
        live = LiveSeries(registry, setupBuckets: setupBuckets, latencyBuckets: latencyBuckets)
        registerCallOutcomes()
        registerKnownSeries()
        registerSignalling()
    }

    struct SamplerState {
        var lastCPU: Double = 0
        var pairRecorded: String?
        var encodeSeen: UInt64 = 0
        var wireSeen: UInt64 = 0
        var callKey: ObjectIdentifier?
        var inCall = false
    }

    func descriptor(_ name: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        Self.descriptor(name, unit, help)
    }

    static func descriptor(_ name: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "videophone", metricName: name, unitName: unit, helpText: help)
    }

    /// The series ``sample(_:)`` sets four times a second, made once at start-up: the
    /// registry's `make…` looks a series up by building its name and label strings on every
    /// call (some 240 mallocs a tick on call control, before).
    struct LiveSeries {
        typealias Gauge = Prometheus.Gauge
        /// The per-kind (`audio`, `video`) in-call series.
        struct Kind {
            let jitter, packetsLost, receiveRate, sendRate: Gauge
        }
        let cpu: Prometheus.Counter
        let resident: Gauge
        let faults: [(part: DeviceFault, gauge: Gauge)]
        let inCall, targetMediaRate, jitterBufferDelay, audioConcealedSamples, roundTripTime: Gauge
        let xruns: (capture: Gauge, playback: Gauge)
        let audio, video: Kind
        let framesPerSecond: (receive: Gauge, send: Gauge)
        let encode, captureToWire: DurationHistogram
        let audioProcessing: AudioProcessingSeries

        init(_ registry: PrometheusCollectorRegistry, setupBuckets: [Duration], latencyBuckets: [Duration]) {
            func gauge(_ name: String, _ unit: String, _ help: String, _ labels: [(String, String)] = []) -> Gauge {
                registry.makeGauge(descriptor: DeviceMetrics.descriptor(name, unit, help), labels: labels)
            }
            cpu = registry.makeCounter(descriptor: MetricNameDescriptor(namespace: "process", metricName: "cpu", unitName: "seconds_total",
                                                                        helpText: "User and system CPU time of the daemon."), labels: [])
            resident = registry.makeGauge(descriptor: MetricNameDescriptor(namespace: "process", metricName: "resident_memory", unitName: "bytes",
                                                                           helpText: "Resident set size of the daemon."), labels: [])
            faults = DeviceFault.allCases.map {
                ($0, gauge("device_fault", "", "1 while a part of the board cannot be used (the journal says why).", [("part", $0.rawValue)]))
            }
            inCall = gauge("in_call", "", "1 while a call is in progress.")
            targetMediaRate = gauge("target_media_rate", "bytes_per_second", "Congestion control's video target.")
            jitterBufferDelay = gauge("jitter_buffer_delay", "seconds", "Delay the audio jitter buffer adds now.")
            audioConcealedSamples = gauge("audio_concealed_samples", "", "Received audio samples concealed in this call (lost, late or corrupt packets).")
            let xrunsHelp = "Sound card overruns (capture) and underruns (playback) in this call."
            xruns = (gauge("sound_xruns", "", xrunsHelp, [("direction", "capture")]), gauge("sound_xruns", "", xrunsHelp, [("direction", "playback")]))
            roundTripTime = gauge("round_trip_time", "seconds", "RTT of the selected candidate pair (RTCP).")
            func kind(_ k: String) -> Kind {
                Kind(jitter: gauge("jitter", "seconds", "Interarrival jitter of received media.", [("kind", k)]),
                     packetsLost: gauge("packets_lost", "", "Packets lost in this call so far.", [("kind", k)]),
                     receiveRate: gauge("media_rate", "bytes_per_second", "Media payload rate.", [("direction", "receive"), ("kind", k)]),
                     sendRate: gauge("media_rate", "bytes_per_second", "Media payload rate.", [("direction", "send"), ("kind", k)]))
            }
            audio = kind("audio")
            video = kind("video")
            framesPerSecond = (gauge("frames_per_second", "", "Video frame rate.", [("direction", "receive")]),
                               gauge("frames_per_second", "", "Video frame rate.", [("direction", "send")]))
            encode = registry.makeDurationHistogram(descriptor: DeviceMetrics.descriptor("encode", "seconds", "Time to encode one video frame."),
                                                    labels: [], buckets: latencyBuckets)
            captureToWire = registry.makeDurationHistogram(
                descriptor: DeviceMetrics.descriptor("capture_to_wire", "seconds", "Capture to first RTP packet of the frame on the wire."),
                labels: [], buckets: latencyBuckets)
            audioProcessing = AudioProcessingSeries(gauge)
        }

        /// The series of a stats `kind` (nil for one this device does not send).
        func kind(_ k: String) -> Kind? { k == "video" ? video : k == "audio" ? audio : nil }
    }

    private var calls: [CallOutcome: Prometheus.Counter] = [:]

    /// Every outcome's counter exists from start-up at zero, so a fresh device's dashboard
    /// and alerts see the series.
    func registerCallOutcomes() {
        for outcome in CallOutcome.allCases {
            calls[outcome] = registry.makeCounter(descriptor: descriptor("calls", "total", "Calls by how they ended."), labels: [("outcome", outcome.rawValue)])
        }
    }

    /// The set-up stages ``recordSetup(_:offerSentAt:)`` records.
    static let setupStages = ["signalling", "ice", "dtls", "first_media"]
    /// ICE candidate types, for the selected-pair counter's labels.
    static let candidateTypes = ["host", "srflx", "prflx", "relay"]

    /// Every other series the device can emit, created at start-up with its known labels at
    /// zero: Prometheus's instrumentation practice, so dashboards and alerts (for example
    /// `increase(...) == 0` or `absent(...)`) see a fresh device the same as a busy one.
    /// The in-call gauges read 0 while idle, as ``sample(_:)`` leaves them after a call.
    func registerKnownSeries() {
        for stage in Self.setupStages {
            _ = registry.makeDurationHistogram(descriptor: descriptor("call_setup", "seconds", "Call set-up time by stage, from the offer."),
                                               labels: [("stage", stage)], buckets: setupBuckets)
        }
        for (_, g) in live.faults { g.set(to: 0) }
        live.inCall.set(to: 0)
        live.resident.set(Double(DeviceMetrics.residentBytes()))
        resetCallGauges()
        for local in Self.candidateTypes {
            for remote in Self.candidateTypes {
                _ = registry.makeCounter(descriptor: descriptor("ice_selected_pairs", "total", "Candidate pairs used by calls, by candidate types."),
                                         labels: [("local", local), ("remote", remote)])
            }
        }
        setEncoder("unknown")
    }

    private let buildInfoEncoder = Locked<String?>(nil)

    /// `videophone_build_info{version,arch,encoder} 1`: which firmware runs where, and which
    /// H.264 encoder its calls use (`x264`, `v4l2`; `unknown` until the daemon has looked).
    public func setEncoder(_ encoder: String) {
        let help = "Always 1; the labels say which firmware build runs and which H.264 encoder calls use."
        let old = buildInfoEncoder.withLock { e -> String? in defer { e = encoder }; return e }
        if let old, old != encoder {
            registry.unregisterGauge(registry.makeGauge(descriptor: descriptor("build_info", "", help),
                                                        labels: [("version", BuildInfo.version), ("arch", Self.arch), ("encoder", old)]))
        }
        registry.makeGauge(descriptor: descriptor("build_info", "", help),
                           labels: [("version", BuildInfo.version), ("arch", Self.arch), ("encoder", encoder)]).set(to: 1)
    }

    /// The CPU architecture the firmware was built for, as Debian names it.
    static var arch: String {
        #if arch(arm64)
        "arm64"
        #elseif arch(x86_64)
        "amd64"
        #elseif arch(arm)
        "armhf"
        #else
        "other"
        #endif
    }

    /// The in-call gauges with their known labels, at 0 (at start and while idle).
    private func resetCallGauges() {
        for g in [live.targetMediaRate, live.jitterBufferDelay, live.audioConcealedSamples, live.xruns.capture, live.xruns.playback,
                  live.roundTripTime, live.framesPerSecond.receive, live.framesPerSecond.send] {
            g.set(to: 0)
        }
        for k in [live.audio, live.video] {
            for g in [k.jitter, k.packetsLost, k.receiveRate, k.sendRate] { g.set(to: 0) }
        }
    }
    private var refusedSignalling: [String: Prometheus.Counter] = [:]
    private var brokerMessages: [Bool: Prometheus.Counter] = [:]

    /// Broker signalling series, at zero from start-up (a device without a broker shows
    /// them at zero too: one dashboard for the fleet).
    func registerSignalling() {
        for label in SignalRefusal.labels {
            refusedSignalling[label] = registry.makeCounter(
                descriptor: descriptor("signalling_refused", "total", "Signalling messages from the broker refused, by reason."),
                labels: [("reason", label)])
        }
        for sent in [true, false] {
            brokerMessages[sent] = registry.makeCounter(
                descriptor: descriptor("broker_messages", "total", "Signed signalling messages through the broker."),
                labels: [("direction", sent ? "sent" : "received")])
        }
        gauge("broker_connected", "", "1 while connected to a broker of [broker] urls.").set(to: 0)
        _ = registry.makeCounter(descriptor: descriptor("broker_connects", "total", "Connections made to a broker (the first and every reconnect)."), labels: [])
    }

    func signallingRefused(_ label: String) { refusedSignalling[label]?.increment() }
    func brokerMessage(sent: Bool) { brokerMessages[sent]?.increment() }
    func brokerConnected(_ up: Bool) {
        gauge("broker_connected", "", "1 while connected to a broker of [broker] urls.").set(to: up ? 1 : 0)
        if up {
            registry.makeCounter(descriptor: descriptor("broker_connects", "total", "Connections made to a broker (the first and every reconnect)."),
                                 labels: []).increment()
        }
    }
    func peerPresence(_ peer: String, _ p: BrokerSignalling.Presence) {
        gauge("peer_online", "", "1 when the peer's broker presence is online, 0 offline, -1 unknown.", [("peer", peer)])
            .set(to: p == .online ? 1 : p == .offline ? 0 : -1)
    }

    /// Counts a call by how it ended.
    public func callOutcome(_ outcome: CallOutcome) {
        calls[outcome]?.increment()
    }

    /// Records how long each set-up stage took, from the offer (or the connection's birth).
    func recordSetup(_ t: SetupTimeline, offerSentAt: Instant?) {
        let start = offerSentAt ?? t.created
        for (stage, at) in [("signalling", t.remoteDescription), ("ice", t.iceConnected), ("dtls", t.dtlsConnected),
                            ("first_media", t.firstVideoFrameReceived ?? t.firstAudioReceived)] {
            guard let at else { continue }
            registry.makeDurationHistogram(descriptor: descriptor("call_setup", "seconds", "Call set-up time by stage, from the offer."),
                                           labels: [("stage", stage)], buckets: setupBuckets).record(at - start)
        }
    }

    func gauge(_ name: String, _ unit: String, _ help: String, _ labels: [(String, String)] = []) -> Prometheus.Gauge {
        registry.makeGauge(descriptor: descriptor(name, unit, help), labels: labels)
    }

    /// Four times a second (the device tick): live figures of the call in progress and of
    /// the process. No series lookups and no copies of the latency samples: it runs all year.
    func sample(_ device: Device) {
        let processCPU = DeviceMetrics.cpuSeconds()
        let delta = sampler.withLock { s -> Double in defer { s.lastCPU = processCPU }; return max(0, processCPU - s.lastCPU) }
        live.cpu.increment(by: delta)
        live.resident.set(Double(DeviceMetrics.residentBytes()))
        let faults = device.parts.current
        for (part, g) in live.faults { g.set(to: faults.contains(part) ? 1 : 0) }
        sampleAudioProcessing(device)
        guard let (pc, media, _) = device.currentCall else {
            let wasInCall = sampler.withLock { s -> Bool in defer { s.inCall = false }; return s.inCall }
            live.inCall.set(to: 0)
            if wasInCall { resetCallGauges() }
            return
        }
        sampler.withLock { $0.inCall = true }
        live.inCall.set(to: 1)
        let s = pc.stats
        live.targetMediaRate.set(Double(s.targetVideoBitrateKbps * 1000 / 8))
        let a = media.liveAudio
        live.jitterBufferDelay.set(a.jitterBufferDelayMs / 1000)
        live.audioConcealedSamples.set(Double(a.concealedSamples))
        live.xruns.capture.set(Double(a.microphoneOverruns))
        live.xruns.playback.set(Double(a.speakerUnderruns))
        if let rtt = s.candidatePair.currentRoundTripTime { live.roundTripTime.set(rtt) }
        for i in s.inbound {
            guard let k = live.kind(i.kind) else { continue }
            k.jitter.set(i.jitter)
            k.packetsLost.set(Double(i.packetsLost))
            k.receiveRate.set(i.bitrate / 8)
            if i.kind == "video" { live.framesPerSecond.receive.set(i.framesPerSecond) }
        }
        for o in s.outbound {
            live.kind(o.kind)?.sendRate.set(o.bitrate / 8)
            if o.kind == "video" { live.framesPerSecond.send.set(o.framesPerSecond) }
        }
        // Histograms take every new sample since the last look, read in place.
        let key = ObjectIdentifier(pc)
        let (encodeSeen, wireSeen, recordPair) = sampler.withLock { st -> (UInt64, UInt64, Bool) in
            if st.callKey != key { st.callKey = key; st.encodeSeen = 0; st.wireSeen = 0; st.pairRecorded = nil }
            let record = st.pairRecorded == nil && !s.candidatePair.localCandidateType.isEmpty
            if record { st.pairRecorded = s.candidatePair.localCandidateType }
            return (st.encodeSeen, st.wireSeen, record)
        }
        let encode = live.encode, c2w = live.captureToWire
        let encodeTotal = media.encodeTimes(since: encodeSeen) { encode.record(.nanoseconds(Int64($0 * 1e6))) }
        let wireTotal = pc.captureToWire(since: wireSeen) { c2w.record(.nanoseconds(Int64($0 * 1e6))) }
        sampler.withLock { $0.encodeSeen = encodeTotal; $0.wireSeen = wireTotal }
        if recordPair {
            registry.makeCounter(descriptor: descriptor("ice_selected_pairs", "total", "Candidate pairs used by calls, by candidate types."),
                                 labels: [("local", s.candidatePair.localCandidateType), ("remote", s.candidatePair.remoteCandidateType)]).increment()
        }
    }

    /// The Prometheus text exposition.
    public func render() -> String { registry.emitToString() }

    static func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(Int32(RUSAGE_SELF.rawValue), &usage)
        return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
    }

    /// The resident set size, from `/proc/self/statm` ("size resident shared …", in pages):
    /// read into a stack buffer and parsed in place, no stdio and no allocation.
    static func residentBytes() -> Int {
        let fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return 0 }
        defer { close(fd) }
        let pages = withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 128) { buf -> Int? in
            let n = read(fd, buf.baseAddress, buf.count)
            guard n > 0 else { return nil }
            return parseStatmResident(UnsafeBufferPointer(rebasing: buf[..<n]))
        }
        return (pages ?? 0) * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// The second field of a `/proc/<pid>/statm` line (resident pages); nil when there is none.
    static func parseStatmResident(_ line: UnsafeBufferPointer<UInt8>) -> Int? {
        var i = 0
        while i < line.count, line[i] != UInt8(ascii: " ") { i += 1 }
        i += 1
        var pages = 0, digits = 0
        while i < line.count, digits < 18, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(line[i]) {
            pages = pages * 10 + Int(line[i] - UInt8(ascii: "0"))
            i += 1
            digits += 1
        }
        return digits > 0 ? pages : nil
    }
}
