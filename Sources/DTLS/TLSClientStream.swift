import COpenSSL
#if canImport(Glibc)
import Glibc
#endif

/// A TLS client over a non-blocking TCP socket (TURN over TLS, RFC 8656 §3.1). The owner
/// drives it from its poll loop; it never blocks.
///
/// Not thread-safe: callers serialise access (the relay's lock).
public final class TLSClientStream {
    let ctx: OpaquePointer
    let ssl: OpaquePointer
    public private(set) var handshakeDone = false
    public private(set) var failure: String?

    /// - Parameters:
    ///   - verify: check the server's certificate chain and name; the handshake fails
    ///     otherwise. Off only for tests that mean it.
    ///   - caFile: a PEM file of the CAs to trust (a private TURN server's own CA or
    ///     self-signed certificate); nil: the system's CA store.
    ///   - serverName: the DNS name the certificate must carry (also sent as SNI).
    ///   - expectedIP: the IP address the certificate must carry (subjectAltName IP) when
    ///     there is no `serverName`, as for a server configured by address.
    public init(fd: Int32, serverName: String?, verify: Bool, caFile: String? = nil, expectedIP: String? = nil) throws(DTLSError) {
        guard let ctx = SSL_CTX_new(TLS_client_method()) else { throw DTLSError("TLS context") }
        self.ctx = ctx
        _ = SSL_CTX_ctrl(ctx, SSL_CTRL_SET_MIN_PROTO_VERSION, Int(TLS1_2_VERSION), nil)
        if verify {
            if let caFile {
                guard SSL_CTX_load_verify_locations(ctx, caFile, nil) == 1 else {
                    ERR_clear_error()
                    SSL_CTX_free(ctx)
                    throw DTLSError("cannot load the TLS CA file '\(caFile)'")
                }
            } else if SSL_CTX_set_default_verify_paths(ctx) != 1 {
                ERR_clear_error()
                SSL_CTX_free(ctx)
                throw DTLSError("cannot load the system's CA store")
            }
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
        }
        guard let ssl = SSL_new(ctx) else { SSL_CTX_free(ctx); throw DTLSError("TLS session") }
        self.ssl = ssl
        SSL_set_fd(ssl, fd)
        // Partial writes: the socket may take part of a frame; the owner keeps the rest.
        _ = SSL_ctrl(ssl, SSL_CTRL_MODE, Int(SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER), nil)
        if let serverName { _ = serverName.withCString { SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, Int(TLSEXT_NAMETYPE_host_name), UnsafeMutableRawPointer(mutating: $0)) } }
        if verify {
            let param = SSL_get0_param(ssl)
            if let serverName {
                guard X509_VERIFY_PARAM_set1_host(param, serverName, 0) == 1 else {
                    SSL_free(ssl); SSL_CTX_free(ctx)
                    throw DTLSError("cannot check the TLS server name '\(serverName)'")
                }
            } else if let expectedIP {
                guard X509_VERIFY_PARAM_set1_ip_asc(param, expectedIP) == 1 else {
                    SSL_free(ssl); SSL_CTX_free(ctx)
                    throw DTLSError("cannot check the TLS server address '\(expectedIP)'")
                }
            } else {
                SSL_free(ssl); SSL_CTX_free(ctx)
                throw DTLSError("TLS verification needs the server's name or address")
            }
        }
        SSL_set_connect_state(ssl)
    }

    deinit {
        SSL_free(ssl)
        SSL_CTX_free(ctx)
    }

    /// Advances the handshake; true once it is done.
    @discardableResult
    public func handshake() -> Bool {
        guard !handshakeDone, failure == nil else { return handshakeDone }
        let r = SSL_do_handshake(ssl)
        if r == 1 { handshakeDone = true; return true }
        let e = SSL_get_error(ssl, r)
        if e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE {
            let verify = SSL_get_verify_result(ssl)
            if verify != Int(X509_V_OK) {
                let why = X509_verify_cert_error_string(verify).map { String(cString: $0) } ?? "error \(verify)"
                failure = "TLS server certificate refused: \(why)"
            } else {
                failure = DTLSError("TLS handshake failed").description
            }
            ERR_clear_error()
        }
        return false
    }

    /// Writes what the socket takes of `bytes`: the count written (maybe fewer than
    /// offered), 0 when it would block, -1 when the connection failed. After 0, offer
    /// the same bytes again (from the same position on).
    public func write(_ bytes: UnsafeRawBufferPointer) -> Int {
        guard handshakeDone, failure == nil else { return failure == nil ? 0 : -1 }
        guard bytes.count > 0 else { return 0 }
        let n = SSL_write(ssl, bytes.baseAddress, Int32(clamping: bytes.count))
        if n > 0 { return Int(n) }
        let e = SSL_get_error(ssl, n)
        if e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE { return 0 }
        failure = "TLS write failed"
        ERR_clear_error()
        return -1
    }

    /// Writes all of `bytes` or reports false (would block or failed).
    public func write(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { write($0) } == bytes.count
    }

    /// Reads what is available into `buffer`, up to `max` bytes; returns the count, 0 when
    /// nothing, -1 on close.
    public func read(into buffer: inout [UInt8], max limit: Int = Int.max) -> Int {
        guard handshakeDone else { handshake(); return 0 }
        var total = 0
        var chunk = [UInt8](repeating: 0, count: 16384)
        while total < limit {
            let want = Int32(min(chunk.count, limit - total))
            let n = chunk.withUnsafeMutableBytes { SSL_read(ssl, $0.baseAddress, want) }
            if n > 0 {
                buffer += chunk[0..<Int(n)]
                total += Int(n)
                continue
            }
            let e = SSL_get_error(ssl, n)
            if e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE { return total }
            return total > 0 ? total : -1
        }
        return total
    }
}
