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
    public let registry = PrometheusCollectorRegistry()
    /// A swift-metrics factory writing into ``registry``.
    public var factory: PrometheusMetricsFactory { PrometheusMetricsFactory(registry: registry) }

    private let setupBuckets: [Duration] = [5, 10, 20, 35, 50, 75, 100, 150, 250, 500, 1000, 2500, 5000].map { .milliseconds($0) }
    private let latencyBuckets: [Duration] = [1, 2, 4, 6, 8, 10, 15, 20, 30, 50, 100].map { .milliseconds($0) }
    private let sampler = Locked(SamplerState())

    public init() {
        registerCallOutcomes()
        registerKnownSeries()
        registerSignalling()
    }

    struct SamplerState {
        var lastCPU: Double = 0
        var pairRecorded: String?
        var encodeSeen = 0
        var wireSeen = 0
        var callKey: String?
        var inCall = false
    }

    func descriptor(_ name: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "videophone", metricName: name, unitName: unit, helpText: help)
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
        for part in DeviceFault.allCases {
            gauge("device_fault", "", "1 while a part of the board cannot be used (the journal says why).", [("part", part.rawValue)]).set(to: 0)
        }
        gauge("in_call", "", "1 while a call is in progress.").set(to: 0)
        _ = cpuCounter
        residentGauge.set(Double(DeviceMetrics.residentBytes()))
        resetCallGauges()
        _ = registry.makeDurationHistogram(descriptor: descriptor("encode", "seconds", "Time to encode one video frame."), labels: [], buckets: latencyBuckets)
        _ = registry.makeDurationHistogram(descriptor: descriptor("capture_to_wire", "seconds", "Capture to first RTP packet of the frame on the wire."), labels: [], buckets: latencyBuckets)
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

    private var cpuCounter: Prometheus.Counter {
        registry.makeCounter(descriptor: MetricNameDescriptor(namespace: "process", metricName: "cpu", unitName: "seconds_total",
                                                              helpText: "User and system CPU time of the daemon."), labels: [])
    }

    private var residentGauge: Prometheus.Gauge {
        registry.makeGauge(descriptor: MetricNameDescriptor(namespace: "process", metricName: "resident_memory", unitName: "bytes",
                                                            helpText: "Resident set size of the daemon."), labels: [])
    }

    /// The in-call gauges with their known labels, at 0 (at start and while idle).
    private func resetCallGauges() {
        gauge("target_media_rate", "bytes_per_second", "Congestion control's video target.").set(to: 0)
        gauge("jitter_buffer_delay", "seconds", "Delay the audio jitter buffer adds now.").set(to: 0)
        gauge("audio_concealed_samples", "", "Received audio samples concealed in this call (lost, late or corrupt packets).").set(to: 0)
        for direction in ["capture", "playback"] {
            gauge("sound_xruns", "", "Sound card overruns (capture) and underruns (playback) in this call.", [("direction", direction)]).set(to: 0)
        }
        gauge("round_trip_time", "seconds", "RTT of the selected candidate pair (RTCP).").set(to: 0)
        for kind in ["audio", "video"] {
            gauge("jitter", "seconds", "Interarrival jitter of received media.", [("kind", kind)]).set(to: 0)
            gauge("packets_lost", "", "Packets lost in this call so far.", [("kind", kind)]).set(to: 0)
            for direction in ["receive", "send"] {
                gauge("media_rate", "bytes_per_second", "Media payload rate.", [("direction", direction), ("kind", kind)]).set(to: 0)
            }
        }
        for direction in ["receive", "send"] {
            gauge("frames_per_second", "", "Video frame rate.", [("direction", direction)]).set(to: 0)
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

    /// Once a second: live figures of the call in progress and of the process.
    func sample(_ device: Device) {
        let processCPU = DeviceMetrics.cpuSeconds()
        let delta = sampler.withLock { s -> Double in defer { s.lastCPU = processCPU }; return max(0, processCPU - s.lastCPU) }
        cpuCounter.increment(by: delta)
        residentGauge.set(Double(DeviceMetrics.residentBytes()))
        let faults = Set(device.currentFaults)
        for part in [DeviceFault.network, .broker, .camera, .button, .microphone, .speaker] {
            gauge("device_fault", "", "1 while a part of the board cannot be used (the journal says why).", [("part", part.rawValue)])
                .set(to: faults.contains(part) ? 1 : 0)
        }
        sampleAudioProcessing(device)
        guard let (pc, media, _) = device.currentCall else {
            let wasInCall = sampler.withLock { s -> Bool in defer { s.inCall = false }; return s.inCall }
            gauge("in_call", "", "1 while a call is in progress.").set(to: 0)
            if wasInCall { resetCallGauges() }
            return
        }
        sampler.withLock { $0.inCall = true }
        gauge("in_call", "", "1 while a call is in progress.").set(to: 1)
        let s = pc.stats
        gauge("target_media_rate", "bytes_per_second", "Congestion control's video target.").set(Double(s.targetVideoBitrateKbps * 1000 / 8))
        let a = media.figures
        gauge("jitter_buffer_delay", "seconds", "Delay the audio jitter buffer adds now.").set(a.jitterBufferDelayMs / 1000)
        gauge("audio_concealed_samples", "", "Received audio samples concealed in this call (lost, late or corrupt packets).").set(Double(a.audioConcealedSamples))
        gauge("sound_xruns", "", "Sound card overruns (capture) and underruns (playback) in this call.", [("direction", "capture")]).set(Double(a.microphoneOverruns))
        gauge("sound_xruns", "", "Sound card overruns (capture) and underruns (playback) in this call.", [("direction", "playback")]).set(Double(a.speakerUnderruns))
        if let rtt = s.candidatePair.currentRoundTripTime { gauge("round_trip_time", "seconds", "RTT of the selected candidate pair (RTCP).").set(rtt) }
        for i in s.inbound {
            gauge("jitter", "seconds", "Interarrival jitter of received media.", [("kind", i.kind)]).set(i.jitter)
            gauge("packets_lost", "", "Packets lost in this call so far.", [("kind", i.kind)]).set(Double(i.packetsLost))
            gauge("media_rate", "bytes_per_second", "Media payload rate.", [("direction", "receive"), ("kind", i.kind)]).set(i.bitrate / 8)
            if i.kind == "video" { gauge("frames_per_second", "", "Video frame rate.", [("direction", "receive")]).set(i.framesPerSecond) }
        }
        for o in s.outbound {
            gauge("media_rate", "bytes_per_second", "Media payload rate.", [("direction", "send"), ("kind", o.kind)]).set(o.bitrate / 8)
            if o.kind == "video" { gauge("frames_per_second", "", "Video frame rate.", [("direction", "send")]).set(o.framesPerSecond) }
        }
        // Histograms take every new sample since the last look.
        let figures = a
        let wire = pc.captureToWireSamples
        let key = "\(ObjectIdentifier(pc))"
        let (newEncode, newWire, recordPair) = sampler.withLock { st -> ([Double], [Double], Bool) in
            if st.callKey != key { st.callKey = key; st.encodeSeen = 0; st.wireSeen = 0; st.pairRecorded = nil }
            let e = figures.encodeMs.count >= st.encodeSeen ? Array(figures.encodeMs[st.encodeSeen...]) : figures.encodeMs
            let w = wire.count >= st.wireSeen ? Array(wire[st.wireSeen...]) : wire
            st.encodeSeen = figures.encodeMs.count
            st.wireSeen = wire.count
            let record = st.pairRecorded == nil && !s.candidatePair.localCandidateType.isEmpty
            if record { st.pairRecorded = s.candidatePair.localCandidateType }
            return (e, w, record)
        }
        let encode = registry.makeDurationHistogram(descriptor: descriptor("encode", "seconds", "Time to encode one video frame."), labels: [], buckets: latencyBuckets)
        for ms in newEncode { encode.record(.nanoseconds(Int64(ms * 1e6))) }
        let c2w = registry.makeDurationHistogram(descriptor: descriptor("capture_to_wire", "seconds", "Capture to first RTP packet of the frame on the wire."), labels: [], buckets: latencyBuckets)
        for ms in newWire { c2w.record(.nanoseconds(Int64(ms * 1e6))) }
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

    static func residentBytes() -> Int {
        guard let f = fopen("/proc/self/statm", "r") else { return 0 }
        defer { fclose(f) }
        var size = 0, resident = 0
        guard withUnsafeMutablePointer(to: &size, { s in withUnsafeMutablePointer(to: &resident) { r in vfscanfShim(f, s, r) } }) else { return 0 }
        return resident * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    static func vfscanfShim(_ f: UnsafeMutablePointer<FILE>, _ s: UnsafeMutablePointer<Int>, _ r: UnsafeMutablePointer<Int>) -> Bool {
        var buf = [CChar](repeating: 0, count: 128)
        guard fgets(&buf, 128, f) != nil else { return false }
        let parts = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self).split(separator: " ")
        guard parts.count >= 2, let a = Int(parts[0]), let b = Int(parts[1]) else { return false }
        s.pointee = a
        r.pointee = b
        return true
    }
}
