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

extension DeviceMetrics {
    /// Once a second, in or out of a call.
    func sampleAudioProcessing(_ device: Device) {
        let (settings, f, fault) = device.audioProcessingStatus
        for (stage, on) in [("echo_cancellation", settings.echoCancellation), ("noise_suppression", settings.noiseSuppression),
                            ("gain_control", settings.gainControl)] {
            gauge("audio_processing_enabled", "", "1 when the microphone's processing stage runs this step.", [("stage", stage)])
                .set(to: on && fault == nil && device.config.audioSource != "none" ? 1 : 0)
        }
        gauge("audio_processing_fault", "", "1 when the processing library would not start (status says why).").set(to: fault == nil ? 0 : 1)
        gauge("echo_return_loss_enhancement", "decibels", "The echo canceller's ERLE (library's running average).").set(f.erleDB)
        gauge("echo_delay_estimated", "seconds", "Speaker-to-microphone delay the canceller estimated.").set(f.estimatedDelayMs / 1000)
        gauge("echo_delay_reported", "seconds", "Speaker-to-microphone delay from the sound cards' queues.").set(f.systemDelayMs / 1000)
        gauge("residual_echo_likelihood", "", "Residual echo likelihood, 0-1 (webrtc-audio-processing 1.x; 0 with 0.3).").set(f.residualEchoLikelihood ?? 0)
        gauge("audio_processing_frame_time_median", "seconds", "Median time to process one 10 ms microphone frame (recent frames).").set(f.processingMsMedian / 1000)
        gauge("audio_processing_frame_time_p99", "seconds", "99th percentile time to process one 10 ms microphone frame (recent frames).").set(f.processingMsP99 / 1000)
        gauge("audio_processing_frames", "", "10 ms microphone frames processed since start.").set(Double(f.framesProcessed))
        gauge("audio_reference_missing_frames", "", "Frames processed without the speaker's reference since start.").set(Double(f.referenceMissingFrames))
        gauge("audio_processing_realignments", "", "Times the stage re-aligned (call start, xrun, reopen).").set(Double(f.realignments))
        gauge("echo_bulk_delay_jumps", "", "Jumps of the speaker-to-microphone bulk delay the stage found and re-aligned to.").set(Double(f.bulkDelayJumps))
        gauge("audio_drift_adjustments", "", "10 ms steps taken to follow speaker/microphone clock drift.").set(Double(f.driftAdjustments))
    }
}
