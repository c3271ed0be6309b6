import COpenSSL
#if canImport(Glibc)
import Glibc
#endif

/// Why a DTLS operation failed, with OpenSSL's own reason where it gave one.
public struct DTLSError: Error, CustomStringConvertible {
    public let description: String
    public init(_ what: String) {
        var reasons: [String] = []
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            var buf = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buf, buf.count)
            reasons.append(String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        description = reasons.isEmpty ? what : "\(what): \(reasons.joined(separator: "; "))"
    }
}

/// The device's long-lived identity: an ECDSA P-256 key and self-signed certificate
/// (RFC 8827 §6.5), created once and kept in the state directory so that calls do not pay
/// for key generation and peers can pin its fingerprint.
public final class DTLSCertificate: @unchecked Sendable {
    // Immutable after init; OpenSSL objects are only read (ref-counted) from here on.
    let key: OpaquePointer
    let certificate: OpaquePointer
    /// SHA-256 digest of the DER certificate.
    public let sha256: [UInt8]

    /// `AB:CD:...` form for `a=fingerprint:sha-256`.
    public var fingerprint: String {
        sha256.map { b in let s = String(b, radix: 16, uppercase: true); return s.count == 1 ? "0" + s : s }.joined(separator: ":")
    }

    init(key: OpaquePointer, certificate: OpaquePointer) throws(DTLSError) {
        self.key = key
        self.certificate = certificate
        guard let d = DTLSCertificate.digest(certificate, algorithm: "sha-256") else { throw DTLSError("cannot hash certificate") }
        sha256 = d
    }

    deinit {
        EVP_PKEY_free(key)
        X509_free(certificate)
    }

    /// Makes a new P-256 key and a self-signed certificate valid for ten years.
    public static func generate(commonName: String = "videophone") throws(DTLSError) -> DTLSCertificate {
        guard let key = copenssl_ec_p256_generate() else { throw DTLSError("P-256 key generation failed") }
        guard let x509 = X509_new() else { EVP_PKEY_free(key); throw DTLSError("X509_new failed") }
        X509_set_version(x509, 2)
        let serial = ASN1_INTEGER_new()
        var rnd: UInt64 = 0
        withUnsafeMutableBytes(of: &rnd) { _ = RAND_bytes($0.baseAddress!.assumingMemoryBound(to: UInt8.self), 8) }
        ASN1_INTEGER_set_uint64(serial, rnd >> 1)
        X509_set_serialNumber(x509, serial)
        ASN1_INTEGER_free(serial)
        X509_gmtime_adj(copenssl_x509_not_before(x509), -86400)
        X509_gmtime_adj(copenssl_x509_not_after(x509), 10 * 365 * 86400)
        X509_set_pubkey(x509, key)
        let name = X509_get_subject_name(x509)
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, commonName, -1, -1, 0)
        X509_set_issuer_name(x509, name)
        guard X509_sign(x509, key, EVP_sha256()) > 0 else {
            X509_free(x509); EVP_PKEY_free(key)
            throw DTLSError("certificate signing failed")
        }
        return try DTLSCertificate(key: key, certificate: x509)
    }

    /// Reads `path` (key and certificate, PEM) or, when it does not exist, creates the
    /// identity and writes it there with mode 0600.
    public static func loadOrCreate(path: String) throws(DTLSError) -> (DTLSCertificate, created: Bool) {
        if access(path, F_OK) == 0 {
            guard let f = fopen(path, "r") else { throw DTLSError("cannot open identity file \(path): \(String(cString: strerror(errno)))") }
            defer { fclose(f) }
            guard let key = PEM_read_PrivateKey(f, nil, nil, nil) else { throw DTLSError("identity file \(path) has no private key") }
            guard let cert = PEM_read_X509(f, nil, nil, nil) else { EVP_PKEY_free(key); throw DTLSError("identity file \(path) has no certificate") }
            return (try DTLSCertificate(key: key, certificate: cert), false)
        }
        let c = try generate()
        let tmp = path + ".tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0, let f = fdopen(fd, "w") else { throw DTLSError("cannot create identity file \(tmp): \(String(cString: strerror(errno)))") }
        let ok = PEM_write_PrivateKey(f, c.key, nil, nil, 0, nil, nil) == 1 && PEM_write_X509(f, c.certificate) == 1
        fflush(f)
        fsync(fd)
        fclose(f)
        guard ok, rename(tmp, path) == 0 else { unlink(tmp); throw DTLSError("cannot write identity file \(path)") }
        return (c, true)
    }

    /// The digest of a certificate with an SDP hash name (`sha-256`, `sha-1`, ...).
    static func digest(_ cert: OpaquePointer, algorithm: String) -> [UInt8]? {
        let md: OpaquePointer?
        switch algorithm.lowercased() {
        case "sha-1": md = EVP_sha1()
        case "sha-256": md = EVP_sha256()
        case "sha-384": md = EVP_sha384()
        case "sha-512": md = EVP_sha512()
        default: return nil
        }
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var len: UInt32 = 0
        guard X509_digest(cert, md, &out, &len) == 1 else { return nil }
        return Array(out.prefix(Int(len)))
    }
}
