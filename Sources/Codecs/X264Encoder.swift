import CX264

/// Why an encoder could not be opened or failed.
public struct CodecError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// One encoded access unit.
public struct EncodedVideoFrame: Sendable {
    /// Annex B byte stream; SPS and PPS precede every IDR.
    public var data: [UInt8]
    public var isKeyframe: Bool
    public init(data: [UInt8], isKeyframe: Bool) { self.data = data; self.isKeyframe = isKeyframe }
}

/// Settings for the H.264 encoder, tuned for cheap boards and low latency.
public struct H264EncoderSettings: Sendable {
    public var width: Int
    public var height: Int
    public var fps: Int
    public var bitrateKbps: Int
    /// Keyframe interval in frames: a safety net of 60 s by default. Receivers ask for
    /// keyframes with PLI when they need one (as WebRTC stacks do); periodic ones every
    /// few seconds cost bandwidth and their bursts overflow a bottleneck queue.
    public var keyframeInterval: Int
    /// The negotiated profile-level-id (e.g. `42e01f`); the SPS is made to say exactly this.
    public var profileLevelID: String
    public var threads: Int
    public var preset: String

    public init(width: Int = 1280, height: Int = 720, fps: Int = 30, bitrateKbps: Int = 2000,
                keyframeInterval: Int? = nil, profileLevelID: String = "42e01f", threads: Int = 1, preset: String = "ultrafast") {
        self.width = width; self.height = height; self.fps = fps; self.bitrateKbps = bitrateKbps
        self.keyframeInterval = keyframeInterval ?? fps * 60
        self.profileLevelID = profileLevelID; self.threads = threads; self.preset = preset
    }
}

/// A video encoder for calls: x264 in software, or a board's V4L2 mem2mem hardware encoder.
/// Driven by one capture thread.
public protocol VideoEncoder: AnyObject {
    var settings: H264EncoderSettings { get }
    /// Encodes one I420 frame (planes tightly packed); nil when nothing came out yet.
    func encode(i420: UnsafeRawBufferPointer, forceKeyframe: Bool) -> EncodedVideoFrame?
    /// Changes the target bitrate without a keyframe (congestion control).
    func setBitrate(kbps: Int)
    /// What it is, for logs and status (`x264`, `v4l2 /dev/video11 (bcm2835-codec)`).
    var name: String { get }
}

/// H.264 through x264: Constrained Baseline, no B-frames, `zerolatency`, SPS/PPS repeated
/// before every IDR, a keyframe on demand (PLI/FIR, media start).
///
/// Not thread-safe: one capture thread drives it.
public final class X264Encoder: VideoEncoder {
    public var name: String { "x264" }
    private var encoder: OpaquePointer?
    private var picture = x264_picture_t()
    private var pts: Int64 = 0
    public private(set) var settings: H264EncoderSettings
    private let profileBytes: (UInt8, UInt8, UInt8)?

    public init(settings: H264EncoderSettings) throws(CodecError) {
        self.settings = settings
        profileBytes = X264Encoder.parseProfileLevelID(settings.profileLevelID)
        var p = x264_param_t()
        guard x264_param_default_preset(&p, settings.preset, "zerolatency") == 0 else { throw CodecError("x264: unknown preset \(settings.preset)") }
        p.i_width = Int32(settings.width)
        p.i_height = Int32(settings.height)
        p.i_csp = X264_CSP_I420
        p.i_fps_num = UInt32(settings.fps)
        p.i_fps_den = 1
        p.i_timebase_num = 1
        p.i_timebase_den = UInt32(settings.fps)
        p.i_threads = Int32(settings.threads)
        p.b_sliced_threads = 0
        p.i_keyint_max = Int32(settings.keyframeInterval)
        p.i_keyint_min = Int32(min(settings.keyframeInterval, settings.fps))
        p.b_intra_refresh = 0
        p.i_bframe = 0
        p.b_repeat_headers = 1
        p.b_annexb = 1
        p.b_aud = 0
        p.i_log_level = X264_LOG_NONE
        // Capped CRF: constant quality, held under the target by a VBV of ~1.5 frames.
        // ABR would keep a long account of the bits it owes: after congestion control
        // cuts the target it first overshoots, then starves the picture to pay back.
        // A capped CRF follows a new cap from the next frame, and spends less than the
        // cap on a picture that needs less.
        p.rc.i_rc_method = X264_RC_CRF
        p.rc.f_rf_constant = 23
        p.rc.i_bitrate = Int32(settings.bitrateKbps)
        p.rc.i_vbv_max_bitrate = Int32(settings.bitrateKbps)
        // About 1.5 frames of VBV buffer: frame sizes stay even, so does latency.
        p.rc.i_vbv_buffer_size = Int32(max(1, settings.bitrateKbps * 3 / (settings.fps * 2)))
        p.i_level_idc = Int32(profileBytes?.2 ?? 31)
        guard x264_param_apply_profile(&p, "baseline") == 0 else { throw CodecError("x264: baseline profile rejected") }
        guard let e = cx264_encoder_open(&p) else {
            throw CodecError("x264: cannot open encoder for \(settings.width)x\(settings.height)@\(settings.fps)")
        }
        encoder = e
        x264_picture_init(&picture)
        picture.img.i_csp = X264_CSP_I420
        picture.img.i_plane = 3
    }

    deinit { if let e = encoder { x264_encoder_close(e) } }

    /// Changes the target bitrate without a keyframe (congestion control).
    public func setBitrate(kbps: Int) {
        guard let e = encoder, kbps != settings.bitrateKbps else { return }
        var p = x264_param_t()
        x264_encoder_parameters(e, &p)
        p.rc.i_bitrate = Int32(kbps)
        p.rc.i_vbv_max_bitrate = Int32(kbps)
        p.rc.i_vbv_buffer_size = Int32(max(1, kbps * 3 / (settings.fps * 2)))
        if x264_encoder_reconfig(e, &p) == 0 { settings.bitrateKbps = kbps }
    }

    /// Encodes one I420 frame (planes tightly packed: Y w×h, U and V w/2×h/2).
    public func encode(i420: UnsafeRawBufferPointer, forceKeyframe: Bool) -> EncodedVideoFrame? {
        guard let e = encoder else { return nil }
        let w = settings.width, h = settings.height
        guard i420.count >= w * h * 3 / 2, let base = i420.baseAddress else { return nil }
        let y = UnsafeMutablePointer(mutating: base.assumingMemoryBound(to: UInt8.self))
        picture.img.plane.0 = y
        picture.img.plane.1 = y + w * h
        picture.img.plane.2 = y + w * h + (w / 2) * (h / 2)
        picture.img.i_stride.0 = Int32(w)
        picture.img.i_stride.1 = Int32(w / 2)
        picture.img.i_stride.2 = Int32(w / 2)
        picture.i_pts = pts
        pts += 1
        picture.i_type = forceKeyframe ? X264_TYPE_IDR : X264_TYPE_AUTO
        var nals: UnsafeMutablePointer<x264_nal_t>? = nil
        var nalCount: Int32 = 0
        var out = x264_picture_t()
        let size = x264_encoder_encode(e, &nals, &nalCount, &picture, &out)
        guard size > 0, let nals else { return nil }
        // With b_annexb the NAL payloads are contiguous, start codes included.
        var data = [UInt8](UnsafeBufferPointer(start: nals[0].p_payload, count: Int(size)))
        if let pb = profileBytes { X264Encoder.patchSPS(&data, profile: pb) }
        return EncodedVideoFrame(data: data, isKeyframe: out.b_keyframe != 0)
    }

    /// `42e01f` → (profile_idc, constraint flags, level_idc).
    public static func parseProfileLevelID(_ s: String) -> (UInt8, UInt8, UInt8)? {
        guard s.count == 6, let v = UInt32(s, radix: 16) else { return nil }
        return (UInt8(v >> 16), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF))
    }

    /// Rewrites profile_idc, the constraint flags and level_idc of every SPS so the stream
    /// says what was negotiated. x264's baseline output is Constrained Baseline, which
    /// also conforms to Main and High (constraint_set1).
    public static func patchSPS(_ data: inout [UInt8], profile: (UInt8, UInt8, UInt8)) {
        var i = 0
        while i + 7 < data.count {
            if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
                if data[i + 3] & 0x1F == 7 {
                    data[i + 4] = profile.0
                    // Keep constraint_set1 (Constrained Baseline) whatever the profile says.
                    data[i + 5] = profile.1 | (profile.0 == 66 ? 0x40 : 0)
                    data[i + 6] = profile.2
                }
                i += 3
            } else {
                i += 1
            }
        }
    }
}
