import COpenSSL

/// The identity key signs more than DTLS handshakes: signalling messages that travel
/// through a broker carry its signature, so a peer that pinned the certificate's
/// fingerprint can tell them from a forgery (see the SignedSignalling module).
extension DTLSCertificate {
    /// The certificate, DER-encoded (what the fingerprint hashes).
    public var der: [UInt8] {
        let n = i2d_X509(certificate, nil)
        guard n > 0 else { return [] }
        var out = [UInt8](repeating: 0, count: Int(n))
        out.withUnsafeMutableBufferPointer { buf in
            var p: UnsafeMutablePointer<UInt8>? = buf.baseAddress
            _ = i2d_X509(certificate, &p)
        }
        return out
    }

    /// An ECDSA P-256 signature (DER) over SHA-256 of `message`, with the identity key.
    public func sign(_ message: [UInt8]) throws(DTLSError) -> [UInt8] {
        guard let ctx = EVP_MD_CTX_new() else { throw DTLSError("EVP_MD_CTX_new failed") }
        defer { EVP_MD_CTX_free(ctx) }
        guard EVP_DigestSignInit(ctx, nil, EVP_sha256(), nil, key) == 1 else { throw DTLSError("cannot start signing") }
        var len = 0
        guard message.withUnsafeBufferPointer({ EVP_DigestSign(ctx, nil, &len, $0.baseAddress, $0.count) }) == 1 else {
            throw DTLSError("cannot size signature")
        }
        var sig = [UInt8](repeating: 0, count: len)
        let ok = message.withUnsafeBufferPointer { m in
            sig.withUnsafeMutableBufferPointer { EVP_DigestSign(ctx, $0.baseAddress, &len, m.baseAddress, m.count) }
        }
        guard ok == 1 else { throw DTLSError("signing failed") }
        return Array(sig.prefix(len))
    }
}
