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

    /// - Parameter verify: check the server certificate against the system's CAs (and
    ///   `serverName`); off for test beds with self-signed certificates.
    public init(fd: Int32, serverName: String?, verify: Bool) throws(DTLSError) {
        guard let ctx = SSL_CTX_new(TLS_client_method()) else { throw DTLSError("TLS context") }
        self.ctx = ctx
        if verify {
            SSL_CTX_set_default_verify_paths(ctx)
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
        }
        guard let ssl = SSL_new(ctx) else { SSL_CTX_free(ctx); throw DTLSError("TLS session") }
        self.ssl = ssl
        SSL_set_fd(ssl, fd)
        if let serverName { _ = serverName.withCString { SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, Int(TLSEXT_NAMETYPE_host_name), UnsafeMutableRawPointer(mutating: $0)) } }
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
        if e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE { failure = DTLSError("TLS handshake failed").description }
        return false
    }

    /// Writes all of `bytes` or nothing (the socket buffer is large enough for a frame);
    /// false when it would block or failed.
    public func write(_ bytes: [UInt8]) -> Bool {
        guard handshakeDone else { return false }
        let n = bytes.withUnsafeBytes { SSL_write(ssl, $0.baseAddress, Int32($0.count)) }
        return n == bytes.count
    }

    /// Reads what is available into `buffer`; returns the count, 0 when nothing, -1 on close.
    public func read(into buffer: inout [UInt8]) -> Int {
        guard handshakeDone else { handshake(); return 0 }
        var total = 0
        var chunk = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = chunk.withUnsafeMutableBytes { SSL_read(ssl, $0.baseAddress, Int32($0.count)) }
            if n > 0 {
                buffer += chunk[0..<Int(n)]
                total += Int(n)
                continue
            }
            let e = SSL_get_error(ssl, n)
            if e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE { return total }
            return total > 0 ? total : -1
        }
    }
}
