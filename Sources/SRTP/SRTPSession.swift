import CSRTP

/// Why libsrtp refused a packet or a key; names the operation and libsrtp's status.
public struct SRTPError: Error, Equatable, CustomStringConvertible {
    public let operation: String
    public let status: Int32
    public init(_ operation: String, _ status: Int32) { self.operation = operation; self.status = status }
    public var description: String {
        let name: String
        switch status {
        case 2: name = "bad parameter"
        case 7: name = "authentication failure"
        case 9: name = "replayed packet"
        case 10: name = "replay too old"
        case 5: name = "no context for this SSRC"
        default: name = "status \(status)"
        }
        return "SRTP \(operation): \(name)"
    }
}

/// The SRTP/SRTCP protection suites this stack negotiates.
public enum SRTPSuite: Sendable {
    /// SRTP_AES128_CM_HMAC_SHA1_80 (RFC 3711, mandatory for WebRTC).
    case aes128CmHmacSha1_80
    /// AEAD_AES_128_GCM (RFC 7714).
    case aeadAes128Gcm

    public var keyAndSaltLength: Int { self == .aeadAes128Gcm ? 28 : 30 }
}

private let srtpLibraryReady: Bool = { srtp_init() == srtp_err_status_ok }()

/// One direction of SRTP/SRTCP protection over libsrtp2, for any SSRC.
///
/// libsrtp contexts are not thread-safe: an `SRTPSession` must be used by one thread at
/// a time (the sender guards its outbound session with a lock; the receive loop owns the
/// inbound one).
public final class SRTPSession {
    private var session: srtp_t?
    public let suite: SRTPSuite
    /// Bytes a protected packet grows by at most (auth tag / AEAD tag plus SRTCP index).
    public static let maxTrailer = 16 + 4 + 16

    /// - Parameters:
    ///   - keyAndSalt: master key followed by master salt, as exported by DTLS.
    ///   - inbound: true to unprotect, false to protect.
    public init(suite: SRTPSuite, keyAndSalt: [UInt8], inbound: Bool) throws(SRTPError) {
        guard srtpLibraryReady else { throw SRTPError("init", -1) }
        guard keyAndSalt.count == suite.keyAndSaltLength else { throw SRTPError("key of \(keyAndSalt.count) bytes", 2) }
        self.suite = suite
        var policy = srtp_policy_t()
        switch suite {
        case .aes128CmHmacSha1_80:
            srtp_crypto_policy_set_rtp_default(&policy.rtp)
            srtp_crypto_policy_set_rtcp_default(&policy.rtcp)
        case .aeadAes128Gcm:
            srtp_crypto_policy_set_aes_gcm_128_16_auth(&policy.rtp)
            srtp_crypto_policy_set_aes_gcm_128_16_auth(&policy.rtcp)
        }
        policy.ssrc.type = inbound ? ssrc_any_inbound : ssrc_any_outbound
        policy.window_size = 1024  // late NACK retransmissions must still pass the replay check
        policy.allow_repeat_tx = 1
        var key = keyAndSalt
        var s: srtp_t? = nil
        let status = key.withUnsafeMutableBufferPointer { buf -> srtp_err_status_t in
            policy.key = buf.baseAddress
            return srtp_create(&s, &policy)
        }
        guard status == srtp_err_status_ok else { throw SRTPError("create", Int32(status.rawValue)) }
        session = s
    }

    deinit { if let s = session { srtp_dealloc(s) } }

    /// Encrypts an RTP packet in place; `packet` grows by the auth tag.
    public func protectRTP(_ packet: inout [UInt8]) throws(SRTPError) {
        try run("protect RTP", &packet, srtp_protect)
    }

    /// Decrypts an SRTP packet held in `buffer[0..<length]` in place; updates `length`.
    public func unprotectRTP(buffer: UnsafeMutableRawPointer, length: inout Int) throws(SRTPError) {
        var len = Int32(length)
        let status = srtp_unprotect(session, buffer, &len)
        guard status == srtp_err_status_ok else { throw SRTPError("unprotect RTP", Int32(status.rawValue)) }
        length = Int(len)
    }

    /// Decrypts and authenticates an SRTP packet in place.
    public func unprotectRTP(_ packet: inout [UInt8]) throws(SRTPError) {
        try run("unprotect RTP", &packet, srtp_unprotect)
    }

    public func protectRTCP(_ packet: inout [UInt8]) throws(SRTPError) {
        try run("protect RTCP", &packet, srtp_protect_rtcp)
    }

    public func unprotectRTCP(_ packet: inout [UInt8]) throws(SRTPError) {
        try run("unprotect RTCP", &packet, srtp_unprotect_rtcp)
    }

    private func run(_ op: String, _ packet: inout [UInt8],
                     _ f: (srtp_t?, UnsafeMutableRawPointer?, UnsafeMutablePointer<Int32>?) -> srtp_err_status_t) throws(SRTPError) {
        let original = packet.count
        packet.append(contentsOf: repeatElement(0, count: SRTPSession.maxTrailer))
        var len = Int32(original)
        let status = packet.withUnsafeMutableBytes { f(session, $0.baseAddress, &len) }
        guard status == srtp_err_status_ok else {
            packet.removeLast(SRTPSession.maxTrailer)
            throw SRTPError(op, Int32(status.rawValue))
        }
        packet.removeLast(packet.count - Int(len))
    }
}
