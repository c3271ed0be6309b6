import MediaDevices

/// A talker file (`audio.talker_file`): any bytes give nil or 48 kHz samples, never a trap,
/// and never more samples than the file's frames resampled from at least 8 kHz allow.
func fuzzWAV(_ data: [UInt8]) {
    guard let pcm = loadSpeechWAV(data) else { return }
    require(pcm.count <= data.count / 2 * 6 + 1, "\(pcm.count) samples from \(data.count) bytes")
}
