import COpenSSL
import Foundation
import Testing
@testable import DTLS
#if canImport(Glibc)
import Glibc
#endif

/// TURN over TLS: the client checks the server's certificate chain (a CA file or the
/// system store) and its name or address. A local OpenSSL server on a socket pair plays
/// the TURN server.
@Suite(.serialized) struct TLSVerifyTests {
    /// A directory with two self-signed certificates: `server` (naming 127.0.0.1 and
    /// turn.example.test) and an unrelated `other`.
    static let dir: String = {
        let d = NSTemporaryDirectory() + "videophone-tls-\(getpid())"
        try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        for (name, san) in [("server", "IP:127.0.0.1,DNS:turn.example.test"), ("other", "IP:127.0.0.1")] {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
            p.arguments = ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                           "-subj", "/CN=\(name)", "-addext", "subjectAltName=\(san)",
                           "-keyout", "\(d)/\(name).key", "-out", "\(d)/\(name).crt"]
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try? p.run()
            p.waitUntilExit()
        }
        return d
    }()

    /// Runs a handshake between a `TLSClientStream` built by `makeClient` and a server with
    /// the `server` certificate; returns the client's result (done, failure).
    func handshake(_ makeClient: (Int32) throws -> TLSClientStream) throws -> (Bool, String?) {
        var fds: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        for fd in fds { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        let ctx = SSL_CTX_new(TLS_server_method())!
        defer { SSL_CTX_free(ctx) }
        #expect(SSL_CTX_use_certificate_file(ctx, "\(Self.dir)/server.crt", SSL_FILETYPE_PEM) == 1)
        #expect(SSL_CTX_use_PrivateKey_file(ctx, "\(Self.dir)/server.key", SSL_FILETYPE_PEM) == 1)
        let server = SSL_new(ctx)!
        defer { SSL_free(server) }
        SSL_set_fd(server, fds[1])
        SSL_set_accept_state(server)
        let client = try makeClient(fds[0])
        for _ in 0..<200 {
            if client.handshake() || client.failure != nil { break }
            _ = SSL_do_handshake(server)
            usleep(1000)
        }
        ERR_clear_error()
        return (client.handshakeDone, client.failure)
    }

    @Test func aServerSignedByTheConfiguredCAAndNamingTheAddressIsAccepted() throws {
        let (done, failure) = try handshake { try TLSClientStream(fd: $0, serverName: nil, verify: true, caFile: "\(Self.dir)/server.crt", expectedIP: "127.0.0.1") }
        #expect(done)
        #expect(failure == nil)
    }

    @Test func aServerNameIsCheckedWhenGiven() throws {
        let good = try handshake { try TLSClientStream(fd: $0, serverName: "turn.example.test", verify: true, caFile: "\(Self.dir)/server.crt") }
        #expect(good.0)
        let bad = try handshake { try TLSClientStream(fd: $0, serverName: "other.example.test", verify: true, caFile: "\(Self.dir)/server.crt") }
        #expect(!bad.0)
        #expect(bad.1?.contains("certificate refused") == true)
    }

    @Test func aCertificateFromAnotherCAIsRefused() throws {
        let (done, failure) = try handshake { try TLSClientStream(fd: $0, serverName: nil, verify: true, caFile: "\(Self.dir)/other.crt", expectedIP: "127.0.0.1") }
        #expect(!done)
        #expect(failure?.contains("certificate refused") == true)
    }

    @Test func aCertificateForAnotherAddressIsRefused() throws {
        let (done, failure) = try handshake { try TLSClientStream(fd: $0, serverName: nil, verify: true, caFile: "\(Self.dir)/server.crt", expectedIP: "10.9.9.9") }
        #expect(!done)
        #expect(failure?.contains("certificate refused") == true)
    }

    @Test func aSelfSignedServerIsRefusedByTheSystemStore() throws {
        let (done, failure) = try handshake { try TLSClientStream(fd: $0, serverName: nil, verify: true, expectedIP: "127.0.0.1") }
        #expect(!done)
        #expect(failure != nil)
    }

    @Test func aMissingCAFileIsAnErrorAtOnce() {
        #expect(throws: DTLSError.self) {
            _ = try TLSClientStream(fd: -1, serverName: nil, verify: true, caFile: "\(Self.dir)/does-not-exist.pem", expectedIP: "127.0.0.1")
        }
    }

    @Test func partialWritesReportWhatWentOut() throws {
        // After the handshake, a write larger than the socket buffer takes part and says so.
        var fds: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        for fd in fds { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        let ctx = SSL_CTX_new(TLS_server_method())!
        defer { SSL_CTX_free(ctx) }
        _ = SSL_CTX_use_certificate_file(ctx, "\(Self.dir)/server.crt", SSL_FILETYPE_PEM)
        _ = SSL_CTX_use_PrivateKey_file(ctx, "\(Self.dir)/server.key", SSL_FILETYPE_PEM)
        let server = SSL_new(ctx)!
        defer { SSL_free(server) }
        SSL_set_fd(server, fds[1])
        SSL_set_accept_state(server)
        let client = try TLSClientStream(fd: fds[0], serverName: nil, verify: true, caFile: "\(Self.dir)/server.crt", expectedIP: "127.0.0.1")
        for _ in 0..<200 where !client.handshake() { _ = SSL_do_handshake(server); usleep(1000) }
        #expect(client.handshakeDone)
        let big = [UInt8](repeating: 7, count: 4 * 1024 * 1024)
        let n = big.withUnsafeBytes { client.write($0) }
        #expect(n > 0 && n < big.count)
    }
}
