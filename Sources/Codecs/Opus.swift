import COpus

/// Opus at 48 kHz, 20 ms frames (RFC 7587), tuned for voice with in-band FEC.
///
/// Not thread-safe: one audio thread drives it.
public final class OpusEncoder {
    private let encoder: OpaquePointer
    public let channels: Int
    public static let sampleRate = 48000
    public static let frameSamples = 960
    private var out = [UInt8](repeating: 0, count: 1500)

    public init(channels: Int = 1, bitrate: Int = 32000) throws(CodecError) {
        var err: Int32 = 0
        guard let e = opus_encoder_create(48000, Int32(channels), COPUS_APPLICATION_VOIP, &err), err == OPUS_OK else {
            throw CodecError("opus: encoder create failed (\(err))")
        }
        encoder = e
        self.channels = channels
        copus_set_bitrate(e, Int32(bitrate))
        copus_set_inband_fec(e, 1)
        copus_set_packet_loss_perc(e, 5)
        copus_set_complexity(e, 5)
        copus_set_signal_voice(e)
    }

    deinit { opus_encoder_destroy(encoder) }

    /// Encodes 20 ms (960 samples per channel, interleaved).
    public func encode(_ pcm: [Int16]) -> [UInt8]? {
        encode(pcm) { Array($0) }
    }

    /// Encodes 20 ms (960 samples per channel, interleaved) into the encoder's own buffer
    /// and hands the packet to `body`, valid only inside it: no array per packet. Nil when
    /// the frame is short or the encoder failed.
    public func encode<R>(_ pcm: [Int16], _ body: (UnsafeRawBufferPointer) -> R) -> R? {
        guard pcm.count >= OpusEncoder.frameSamples * channels else { return nil }
        let n = pcm.withUnsafeBufferPointer { p in
            out.withUnsafeMutableBufferPointer { o in
                opus_encode(encoder, p.baseAddress!, Int32(OpusEncoder.frameSamples), o.baseAddress!, Int32(o.count))
            }
        }
        guard n > 0 else { return nil }
        return out.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[0..<Int(n)])) }
    }
}

/// Opus decoder with loss concealment and in-band FEC recovery.
public final class OpusDecoder {
    private let decoder: OpaquePointer
    public let channels: Int
    private var pcm: [Int16]

    public init(channels: Int = 1) throws(CodecError) {
        var err: Int32 = 0
        guard let d = opus_decoder_create(48000, Int32(channels), &err), err == OPUS_OK else {
            throw CodecError("opus: decoder create failed (\(err))")
        }
        decoder = d
        self.channels = channels
        pcm = [Int16](repeating: 0, count: 5760 * channels)
    }

    deinit { opus_decoder_destroy(decoder) }

    /// Decodes a packet; `nil` data conceals a lost one. Returns samples per channel or
    /// `nil` when the packet is corrupt.
    public func decode(_ data: ArraySlice<UInt8>?, fec: Bool = false) -> ArraySlice<Int16>? {
        let frameSize = Int32(fec ? OpusEncoder.frameSamples : 5760)
        let n: Int32 = pcm.withUnsafeMutableBufferPointer { out in
            if let data {
                return data.withUnsafeBufferPointer { d in
                    opus_decode(decoder, d.baseAddress, Int32(d.count), out.baseAddress!, frameSize, fec ? 1 : 0)
                }
            }
            return opus_decode(decoder, nil, 0, out.baseAddress!, Int32(OpusEncoder.frameSamples), 0)
        }
        guard n > 0 else { return nil }
        return pcm[0..<Int(n) * channels]
    }
}
