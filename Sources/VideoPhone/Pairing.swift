import DTLS
import NetworkCore
import PeerConnection
#if canImport(Glibc)
import Glibc
#endif

/// Pairing two devices with one paste each way (`videophonectl pair-code`, `add-peer`).
///
/// On A, `pair-code` makes a fresh secret T_A, keeps it as a pending drop-in
/// (`peers.d/pending-ID.toml`, `[[pending]] accept_token = T_A`) and prints A's code:
/// name, signalling URL, certificate fingerprint and T_A. On B, `add-peer CODE_A` writes
/// `peers.d/A.toml`: `[[peer]]` with A's name, URL and pinned fingerprint, `token = T_A`
/// (what B presents when calling A) and `accept_token = T_B` (the secret from B's own
/// pending code, which A presents when calling B). Once each side has run both commands,
/// each accepts exactly the other. With several codes pending, `add-peer --pending ID`
/// names the one the other side received.
public enum Pairing {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
        init(_ d: String) { description = d }
    }

    /// The URL peers call this device at: `signalling.url`, else the listen address when
    /// it is a specific one, else the first of `network.addresses`, else the first address
    /// of an interface that is up.
    public static func advertisedURL(_ c: DeviceConfig) -> String? {
        if let u = c.signallingURL { return u }
        func url(_ host: String) -> String { host.contains(":") ? "http://[\(host)]:\(c.signallingPort)" : "http://\(host):\(c.signallingPort)" }
        if c.signallingHost != "0.0.0.0" && c.signallingHost != "::" { return url(c.signallingHost) }
        if let a = c.networkAddresses?.first { return url(a) }
        let found = localInterfaceAddresses(includeLoopback: false, includeIPv6: false)
        return found.first.map { url($0.host) }
    }

    /// This device's certificate fingerprint: from the running daemon, else from the
    /// identity file in the state directory.
    public static func localFingerprint(_ c: DeviceConfig) throws(Failure) -> [UInt8] {
        var text: String?
        if let reply = try? controlRequest(path: c.controlSocket, command: "identity", timeout: 5), reply.hasPrefix("ok\n") {
            text = String(reply.dropFirst(3)).trimmingWhitespace
        } else {
            let path = c.stateDirectory + "/identity.pem"
            guard access(path, R_OK) == 0, let (cert, _) = try? DTLSCertificate.loadOrCreate(path: path) else {
                throw Failure("cannot learn this device's certificate: the daemon does not answer on \(c.controlSocket) and \(path) is not readable (start videophoned once)")
            }
            text = "sha-256 " + cert.fingerprint
        }
        let parts = (text ?? "").split(separator: " ")
        guard parts.count == 2, parts[0] == "sha-256", let d = Hex.decode(String(parts[1])), d.count == 32 else {
            throw Failure("unexpected fingerprint '\(text ?? "")'")
        }
        return d
    }

    static func randomBytes(_ n: Int) -> [UInt8] {
        var g = SystemRandomNumberGenerator()  // getrandom(2)
        return (0..<n).map { _ in UInt8.random(in: 0...255, using: &g) }
    }

    static func now() -> String {
        var t = time(nil)
        var tm = tm()
        gmtime_r(&t, &tm)
        func p(_ v: Int32, _ n: Int) -> String { let s = String(v); return String(repeating: "0", count: max(0, n - s.count)) + s }
        return "\(p(tm.tm_year + 1900, 4))-\(p(tm.tm_mon + 1, 2))-\(p(tm.tm_mday, 2))T\(p(tm.tm_hour, 2)):\(p(tm.tm_min, 2)):\(p(tm.tm_sec, 2))Z"
    }

    /// `pair-code`: a fresh code for this device, its secret kept as a pending drop-in.
    /// Returns the code and the drop-in written.
    public static func makeCode(configPath: String) throws(Failure) -> (code: PairCode, file: String) {
        let c: DeviceConfig
        do { c = try DeviceConfig.load(path: configPath) } catch { throw Failure("\(error)") }
        guard let url = advertisedURL(c) else {
            throw Failure("no address to put in the code: set [signalling] url = \"http://ADDRESS:PORT\" in \(configPath)")
        }
        let code = PairCode(name: c.name, url: url, fingerprint: try localFingerprint(c), token: randomBytes(18))
        let id = Hex.encode(randomBytes(4))
        let file = DropIns.directory(beside: configPath) + "/pending-\(id).toml"
        let text = """
        # A pairing code handed out by `videophonectl pair-code`: the other device presents
        # this token once it has run `videophonectl add-peer` with the code. Running
        # `videophonectl add-peer` here with the other device's code turns this file into its
        # [[peer]]. Delete the file to withdraw the code.
        [[pending]]
        id = \(TOMLWriter.quoted(id))
        accept_token = \(TOMLWriter.quoted(code.tokenText))
        created = \(now())

        """
        try write(text, to: file, configPath: configPath)
        return (code, file)
    }

    /// Writes a drop-in, then checks the whole configuration with it; a configuration that
    /// no longer loads puts things back as they were.
    static func write(_ text: String, to file: String, configPath: String, restoring old: String? = nil) throws(Failure) {
        do { try DropIns.write(text, to: file) } catch { throw Failure("\(error)") }
        do { _ = try DeviceConfig.load(path: configPath) } catch {
            if let old { try? DropIns.write(old, to: file) } else { DropIns.remove(file) }
            throw Failure("not written, the configuration would not load: \(error)")
        }
    }

    /// The result of `add-peer`: the drop-in written and its text with the secrets masked.
    public struct Added: Sendable {
        public var file: String
        public var shown: String
        public var peer: String
    }

    /// `add-peer CODE`: writes the other device's `[[peer]]` drop-in and consumes the
    /// pending code whose secret it will present to us.
    public static func addPeer(_ code: PairCode, configPath: String, pendingID: String? = nil, name: String? = nil,
                               replace: Bool = false) throws(Failure) -> Added {
        let c: DeviceConfig
        do { c = try DeviceConfig.load(path: configPath) } catch { throw Failure("\(error)") }
        let peerName = name ?? code.name
        guard !peerName.isEmpty, peerName.count <= 64 else { throw Failure("a peer name has 1 to 64 characters") }
        let pending: PendingPairing
        let candidates = pendingID.map { id in c.pendingPairings.filter { $0.id == id } } ?? c.pendingPairings
        switch candidates.count {
        case 1: pending = candidates[0]
        case 0 where pendingID != nil:
            throw Failure("no pending code '\(pendingID!)'; pending: \(c.pendingPairings.map(\.id).joined(separator: ", "))")
        case 0:
            throw Failure("no pairing code of this device is pending: run `videophonectl pair-code` here first and give its line to '\(code.name)'")
        default:
            throw Failure("\(candidates.count) pairing codes of this device are pending (\(candidates.map(\.id).joined(separator: ", "))): say which one '\(code.name)' received with --pending ID")
        }
        if let mine = try? localFingerprint(c), mine == code.fingerprint {
            throw Failure("this is this device's own code: run add-peer on the other device")
        }
        let safe = String(peerName.map { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") ? $0 : "_" })
        let file = DropIns.directory(beside: configPath) + "/peer-\(safe).toml"
        var old: String? = nil
        if let existing = c.peers.first(where: { $0.name == peerName }) {
            let inFile = existing.source.map { $0.hasPrefix(file + ":") } ?? false
            guard replace && inFile else {
                throw Failure("a peer named '\(peerName)' is already provisioned (\(existing.source ?? configPath)): "
                              + (inFile ? "pass --replace to pair again" : "give this one another name with --name NAME"))
            }
            old = try? DeviceConfig.readText(file)
        } else if DropIns.exists(file) {
            throw Failure("\(file) exists: remove it or pass --name NAME")
        }
        func body(_ token: String, _ accept: String) -> String {
            """
            # Paired by `videophonectl add-peer` on \(now()) (this device's code \(pending.id)).
            [[peer]]
            name = \(TOMLWriter.quoted(peerName))
            url = \(TOMLWriter.quoted(code.url))
            token = \(token)          # what we present when we call \(peerName) (from its code)
            accept_token = \(accept)   # what \(peerName) presents when it calls us (from our code)
            fingerprint = \(TOMLWriter.quoted(code.fingerprintText))

            """
        }
        let text = body(TOMLWriter.quoted(code.tokenText), TOMLWriter.quoted(pending.acceptToken))
        try write(text, to: file, configPath: configPath, restoring: old)
        DropIns.remove(pending.file)
        return Added(file: file, shown: body("\"********\"", "\"********\""), peer: peerName)
    }
}
