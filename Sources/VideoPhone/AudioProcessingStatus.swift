import AudioProcessing
import Prometheus

/// The microphone's processing stage in status and metrics: present from start-up (at
/// zero before the first call), with the library's fault when it would not start.
extension Device {
    /// The stage's settings, figures and fault as of now.
    public var audioProcessingStatus: (settings: AudioProcessingSettings, figures: AudioProcessingFigures, fault: String?) {
        let s = parts.audioProcessingStatus(config)
        return (s.settings, s.figures ?? AudioProcessingFigures(library: AudioProcessor.library), s.fault)
    }

    func audioProcessingJSON(_ j: inout JSONWriter) {
        let (settings, f, fault) = audioProcessingStatus
        j.beginObject("audioProcessing")
        j.field("library", f.library)
        j.field("echoCancellation", settings.echoCancellation && config.audioSource != "none")
        j.field("noiseSuppression", settings.noiseSuppression && config.audioSource != "none")
        j.field("gainControl", settings.gainControl && config.audioSource != "none")
        if let fault { j.field("fault", fault) }
        j.field("framesProcessed", f.framesProcessed)
        j.field("echoReturnLossEnhancementDb", f.erleDB)
        j.field("estimatedDelayMs", f.estimatedDelayMs)
        j.field("systemDelayMs", f.systemDelayMs)
        j.field("residualEchoLikelihood", f.residualEchoLikelihood)
        j.field("processingMsMedian", f.processingMsMedian)
        j.field("processingMsP99", f.processingMsP99)
        j.field("referenceMissingFrames", f.referenceMissingFrames)
        j.field("driftAdjustments", f.driftAdjustments)
        j.field("realignments", f.realignments)
        j.field("bulkDelayMs", f.bulkDelayMs)
        j.field("bulkDelayJumps", f.bulkDelayJumps)
        j.field("referenceShiftMs", f.referenceShiftMs)
        j.field("clippedFrames", f.clippedFrames)
        // W3C-style energies in and out of the stage: ERLE as the far end hears it.
        j.field("microphoneEnergy", exactly: f.microphoneEnergy)
        j.field("processedEnergy", exactly: f.processedEnergy)
        j.field("totalSamplesDuration", f.totalSamplesDuration)
        j.endObject()
    }
}

/// The processing stage's series, made once (``DeviceMetrics/LiveSeries``).
struct AudioProcessingSeries {
    typealias Gauge = Prometheus.Gauge
    let echoCancellation, noiseSuppression, gainControl: Gauge
    let fault, erle, delayEstimated, delayReported, residualEcho, frameTimeMedian, frameTimeP99: Gauge
    let frames, referenceMissing, realignments, bulkDelayJumps, driftAdjustments: Gauge

    init(_ gauge: (_ name: String, _ unit: String, _ help: String, _ labels: [(String, String)]) -> Gauge) {
        let enabledHelp = "1 when the microphone's processing stage runs this step."
        echoCancellation = gauge("audio_processing_enabled", "", enabledHelp, [("stage", "echo_cancellation")])
        noiseSuppression = gauge("audio_processing_enabled", "", enabledHelp, [("stage", "noise_suppression")])
        gainControl = gauge("audio_processing_enabled", "", enabledHelp, [("stage", "gain_control")])
        fault = gauge("audio_processing_fault", "", "1 when the processing library would not start (status says why).", [])
        erle = gauge("echo_return_loss_enhancement", "decibels", "The echo canceller's ERLE (library's running average).", [])
        delayEstimated = gauge("echo_delay_estimated", "seconds", "Speaker-to-microphone delay the canceller estimated.", [])
        delayReported = gauge("echo_delay_reported", "seconds", "Speaker-to-microphone delay from the sound cards' queues.", [])
        residualEcho = gauge("residual_echo_likelihood", "", "Residual echo likelihood, 0-1 (webrtc-audio-processing 1.x; 0 with 0.3).", [])
        frameTimeMedian = gauge("audio_processing_frame_time_median", "seconds", "Median time to process one 10 ms microphone frame (recent frames).", [])
        frameTimeP99 = gauge("audio_processing_frame_time_p99", "seconds", "99th percentile time to process one 10 ms microphone frame (recent frames).", [])
        frames = gauge("audio_processing_frames", "", "10 ms microphone frames processed since start.", [])
        referenceMissing = gauge("audio_reference_missing_frames", "", "Frames processed without the speaker's reference since start.", [])
        realignments = gauge("audio_processing_realignments", "", "Times the stage re-aligned (call start, xrun, reopen).", [])
        bulkDelayJumps = gauge("echo_bulk_delay_jumps", "", "Jumps of the speaker-to-microphone bulk delay the stage found and re-aligned to.", [])
        driftAdjustments = gauge("audio_drift_adjustments", "", "10 ms steps taken to follow speaker/microphone clock drift.", [])
    }
}

extension DeviceMetrics {
    /// Every tick, in or out of a call.
    func sampleAudioProcessing(_ device: Device) {
        let (settings, f, fault) = device.audioProcessingStatus
        let g = live.audioProcessing
        let runs = fault == nil && device.config.audioSource != "none"
        g.echoCancellation.set(to: settings.echoCancellation && runs ? 1 : 0)
        g.noiseSuppression.set(to: settings.noiseSuppression && runs ? 1 : 0)
        g.gainControl.set(to: settings.gainControl && runs ? 1 : 0)
        g.fault.set(to: fault == nil ? 0 : 1)
        g.erle.set(f.erleDB)
        g.delayEstimated.set(f.estimatedDelayMs / 1000)
        g.delayReported.set(f.systemDelayMs / 1000)
        g.residualEcho.set(f.residualEchoLikelihood ?? 0)
        g.frameTimeMedian.set(f.processingMsMedian / 1000)
        g.frameTimeP99.set(f.processingMsP99 / 1000)
        g.frames.set(Double(f.framesProcessed))
        g.referenceMissing.set(Double(f.referenceMissingFrames))
        g.realignments.set(Double(f.realignments))
        g.bulkDelayJumps.set(Double(f.bulkDelayJumps))
        g.driftAdjustments.set(Double(f.driftAdjustments))
    }
}
