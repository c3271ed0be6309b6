import COpenSSL
#if canImport(Glibc)
import Glibc
#endif

/// The SRTP protection profile chosen in the DTLS handshake (RFC 5764 §4.1.2, RFC 7714 §14.2).
public enum SRTPProfile: UInt, Sendable {
    case aes128CmHmacSha1_80 = 0x0001
    case aeadAes128Gcm = 0x0007

    public var keyLength: Int { 16 }
    public var saltLength: Int { self == .aeadAes128Gcm ? 12 : 14 }
}

/// Keys for both directions, as `EXTRACTOR-dtls_srtp` lays them out (RFC 5764 §4.2).
public struct SRTPKeyMaterial: Sendable {
    public var profile: SRTPProfile
    /// key || salt for what we send and what we receive.
    public var localKeyAndSalt: [UInt8]
    public var remoteKeyAndSalt: [UInt8]
}

/// One shared OpenSSL context for every DTLS connection of the process: certificate,
/// cipher suites (ECDSA and RSA peers), DTLS-SRTP profiles.
public final class DTLSContext: @unchecked Sendable {
    let ctx: OpaquePointer
    public let certificate: DTLSCertificate

    public init(certificate: DTLSCertificate) throws(DTLSError) {
        guard let ctx = SSL_CTX_new(DTLS_method()) else { throw DTLSError("SSL_CTX_new failed") }
        self.ctx = ctx
        self.certificate = certificate
        guard copenssl_ctx_set_min_dtls12(ctx) == 1,
              SSL_CTX_use_certificate(ctx, certificate.certificate) == 1,
              SSL_CTX_use_PrivateKey(ctx, certificate.key) == 1,
              SSL_CTX_set_cipher_list(ctx, "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA") == 1,
              copenssl_ctx_set_groups(ctx, "P-256:X25519:P-384") == 1
        else { SSL_CTX_free(ctx); throw DTLSError("DTLS context setup failed") }
        // Returns 0 on success (sic).
        guard SSL_CTX_set_tlsext_use_srtp(ctx, "SRTP_AEAD_AES_128_GCM:SRTP_AES128_CM_SHA1_80") == 0 else {
            SSL_CTX_free(ctx); throw DTLSError("use_srtp setup failed")
        }
        copenssl_ctx_set_options(ctx, copenssl_op_no_query_mtu() | copenssl_op_no_ticket())
        // Self-signed peers are the rule: accept any certificate here and check it against
        // the SDP fingerprint once the handshake is done.
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT) { _, _ in 1 }
    }

    deinit { SSL_CTX_free(ctx) }
}

/// A DTLS 1.2 connection over memory BIOs: datagrams in, datagrams out, no sockets.
///
/// Not thread-safe: one transport loop owns it.
public final class DTLSEndpoint {
    public enum State: Sendable, Equatable { case handshaking, connected, failed(String), closed }

    let ssl: OpaquePointer
    let rbio: OpaquePointer
    let wbio: OpaquePointer
    public let isClient: Bool
    let expectedFingerprint: (algorithm: String, digest: [UInt8])
    public private(set) var state: State = .handshaking
    /// Largest datagram to emit; records are packed up to this size.
    public var mtu = 1200
    private var scratch = [UInt8](repeating: 0, count: 16384)
    /// Datagrams dropped before OpenSSL because their records were malformed, and the
    /// last reason (for a rate-limited log line by the owner).
    public private(set) var discarded = 0
    public private(set) var lastDiscardReason: String?

    public init(context: DTLSContext, client: Bool, remoteFingerprint: (algorithm: String, digest: [UInt8])) throws(DTLSError) {
        guard let ssl = SSL_new(context.ctx) else { throw DTLSError("SSL_new failed") }
        guard let r = BIO_new(BIO_s_mem()), let w = BIO_new(BIO_s_mem()) else { SSL_free(ssl); throw DTLSError("BIO_new failed") }
        copenssl_bio_set_mem_eof_return(r, -1)
        copenssl_bio_set_mem_eof_return(w, -1)
        SSL_set_bio(ssl, r, w)
        _ = copenssl_set_mtu(ssl, 1200)
        self.ssl = ssl
        self.rbio = r
        self.wbio = w
        self.isClient = client
        self.expectedFingerprint = remoteFingerprint
        if client { SSL_set_connect_state(ssl) } else { SSL_set_accept_state(ssl) }
    }

    deinit { SSL_free(ssl) }

    /// Starts the handshake (the client's first flight); returns datagrams to send.
    public func start() -> [[UInt8]] {
        step()
        return drainOutput()
    }

    /// Feeds one received DTLS datagram. Returns datagrams to send and, once connected,
    /// any application data (unused by WebRTC media, kept for completeness).
    public func handle(datagram: [UInt8]) -> [[UInt8]] {
        guard state == .handshaking || state == .connected else { return [] }
        if let why = DTLSRecordCheck.problem(datagram) {
            discarded += 1
            lastDiscardReason = why
            return []
        }
        _ = datagram.withUnsafeBytes { BIO_write(rbio, $0.baseAddress, Int32($0.count)) }
        if state == .handshaking {
            step()
        } else {
            // Read alerts (close_notify) and discard application data.
            let n = scratch.withUnsafeMutableBytes { SSL_read(ssl, $0.baseAddress, Int32($0.count)) }
            if n <= 0 {
                let err = SSL_get_error(ssl, n)
                if err == SSL_ERROR_ZERO_RETURN { state = .closed }
            }
        }
        return drainOutput()
    }

    /// When the handshake retransmission timer fires, relative to now; nil when idle.
    public var timeout: Duration? {
        guard state == .handshaking else { return nil }
        var tv = timeval()
        guard copenssl_dtls_get_timeout(ssl, &tv) == 1 else { return nil }
        return .seconds(Int64(tv.tv_sec)) + .microseconds(Int64(tv.tv_usec))
    }

    /// Retransmits the last flight if its timer ran out.
    public func handleTimeout() -> [[UInt8]] {
        guard state == .handshaking else { return [] }
        if copenssl_dtls_handle_timeout(ssl) < 0 { state = .failed(DTLSError("DTLS handshake timed out").description) }
        return drainOutput()
    }

    /// Sends close_notify (the peer learns the call ended even if signalling is lost).
    public func close() -> [[UInt8]] {
        guard state == .connected else { state = .closed; return [] }
        SSL_shutdown(ssl)
        state = .closed
        return drainOutput()
    }

    private func step() {
        let r = SSL_do_handshake(ssl)
        if r == 1 {
            verifyPeer()
            return
        }
        let err = SSL_get_error(ssl, r)
        if err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE {
            state = .failed(DTLSError("DTLS handshake failed").description)
        }
    }

    private func verifyPeer() {
        guard let peer = copenssl_get_peer_certificate(ssl) else {
            state = .failed("peer presented no certificate")
            return
        }
        defer { X509_free(peer) }
        guard let digest = DTLSCertificate.digest(peer, algorithm: expectedFingerprint.algorithm) else {
            state = .failed("cannot hash peer certificate with \(expectedFingerprint.algorithm)")
            return
        }
        guard digest == expectedFingerprint.digest else {
            state = .failed("peer certificate fingerprint \(expectedFingerprint.algorithm) \(hex(digest)) does not match the SDP's \(hex(expectedFingerprint.digest))")
            return
        }
        state = .connected
    }

    private func hex(_ b: [UInt8]) -> String {
        b.map { let s = String($0, radix: 16, uppercase: true); return s.count == 1 ? "0" + s : s }.joined(separator: ":")
    }

    /// Splits what OpenSSL wrote into datagrams at record boundaries, up to `mtu` each.
    private func drainOutput() -> [[UInt8]] {
        var bytes: [UInt8] = []
        while copenssl_bio_pending(wbio) > 0 {
            let n = scratch.withUnsafeMutableBytes { BIO_read(wbio, $0.baseAddress, Int32($0.count)) }
            if n <= 0 { break }
            bytes += scratch[0..<Int(n)]
        }
        var out: [[UInt8]] = []
        var current: [UInt8] = []
        var i = 0
        while i + 13 <= bytes.count {
            let len = Int(bytes[i + 11]) << 8 | Int(bytes[i + 12])
            let end = min(bytes.count, i + 13 + len)
            if !current.isEmpty && current.count + (end - i) > mtu { out.append(current); current = [] }
            current += bytes[i..<end]
            i = end
        }
        if !current.isEmpty { out.append(current) }
        return out
    }

    /// The negotiated SRTP keys (RFC 5764 §4.2); nil before the handshake completes.
    public func srtpKeys() -> SRTPKeyMaterial? {
        guard state == .connected, let p = SSL_get_selected_srtp_profile(ssl),
              let profile = SRTPProfile(rawValue: UInt(p.pointee.id)) else { return nil }
        let k = profile.keyLength, s = profile.saltLength
        var material = [UInt8](repeating: 0, count: 2 * (k + s))
        let label = "EXTRACTOR-dtls_srtp"
        guard SSL_export_keying_material(ssl, &material, material.count, label, label.utf8.count, nil, 0, 0) == 1 else { return nil }
        let clientKey = material[0..<k], serverKey = material[k..<2 * k]
        let clientSalt = material[2 * k..<2 * k + s], serverSalt = material[2 * k + s..<2 * k + 2 * s]
        let client = Array(clientKey + clientSalt), server = Array(serverKey + serverSalt)
        return SRTPKeyMaterial(profile: profile, localKeyAndSalt: isClient ? client : server,
                               remoteKeyAndSalt: isClient ? server : client)
    }
}
