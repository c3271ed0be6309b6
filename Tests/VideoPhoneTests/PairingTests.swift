import Foundation
import DTLS
import Testing
@testable import VideoPhone

@Suite struct PairingTests {
    let code = PairCode(name: "bob", url: "http://192.0.2.7:8080", fingerprint: Array(0..<32), token: Array(100..<118))

    @Test func codeRoundTrip() throws {
        let line = code.encoded
        #expect(line.hasPrefix("vp1:") && !line.contains("\n") && !line.contains("="))
        #expect(try PairCode(parsing: "  " + line + "\n") == code)
    }

    /// A truncated or mistyped code is refused with what is wrong.
    @Test func damagedCodesAreRefused() throws {
        let line = code.encoded
        func problem(_ text: String) -> String {
            do { _ = try PairCode(parsing: text); return "accepted" } catch { return error.description }
        }
        #expect(problem(String(line.dropLast(5))).hasPrefix("truncated"))
        #expect(problem(line + "AA").contains("too many"))
        #expect(problem(String(line.prefix(12))).hasPrefix("truncated"))
        #expect(problem("vp2:abc").contains("vp2"))
        #expect(problem("sha-256 AB:CD").hasPrefix("not a pairing code"))
        #expect(problem(line.replacingOccurrences(of: "vp1:A", with: "vp1:A!")).contains("character '!'"))
        // Every single-character change of the payload is caught.
        let chars = Array(line)
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        for i in 4..<chars.count {
            var m = chars
            m[i] = alphabet[(alphabet.firstIndex(of: m[i])! + 7) % alphabet.count]
            let p = problem(String(m))
            if p == "accepted" { Issue.record("changed character \(i) accepted") }
        }
    }

    func tempDir() throws -> String {
        let dir = NSTemporaryDirectory() + "vp-pair-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    func config(_ dir: String, name: String, port: Int, peers: String = "") throws -> String {
        let path = dir + "/\(name).toml"
        try """
        [device]
        name = "\(name)"
        state_directory = "\(dir)/state-\(name)"
        [signalling]
        listen = "127.0.0.1:\(port)"
        [control]
        socket = "\(dir)/none.sock"
        \(peers)
        """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Drop-ins are checked like the main file, and a name used twice names both files.
    @Test func dropInsMergeAndNameBothFilesOnConflict() throws {
        let dir = try tempDir()
        let main = try config(dir, name: "alice", port: 9000, peers: "[[peer]]\nname = \"bob\"\nurl = \"http://127.0.0.1:9001\"\n")
        try FileManager.default.createDirectory(atPath: dir + "/peers.d", withIntermediateDirectories: true)
        try "[[peer]]\nname = \"carol\"\nurl = \"http://127.0.0.1:9002\"\n".write(toFile: dir + "/peers.d/carol.toml", atomically: true, encoding: .utf8)
        let c = try DeviceConfig.load(path: main)
        #expect(c.peers.map(\.name) == ["bob", "carol"] && c.peers[1].source == dir + "/peers.d/carol.toml:2")
        try "\n[[peer]]\nname = \"bob\"\nurl = \"http://127.0.0.1:9003\"\n".write(toFile: dir + "/peers.d/x.toml", atomically: true, encoding: .utf8)
        #expect { try DeviceConfig.load(path: main) } throws: { e in
            "\(e)" == "\(dir)/peers.d/x.toml:3: peer.name: peer 'bob' defined twice: here and at \(main):9"
        }
        try "[[peer]]\nname = \"dave\"\nurl = 5\n".write(toFile: dir + "/peers.d/x.toml", atomically: true, encoding: .utf8)
        #expect { try DeviceConfig.load(path: main) } throws: { e in "\(e)".hasPrefix("\(dir)/peers.d/x.toml:3: peer.url: expected a string") }
        try "[video]\nfps = 5\n".write(toFile: dir + "/peers.d/x.toml", atomically: true, encoding: .utf8)
        #expect { try DeviceConfig.load(path: main) } throws: { e in "\(e)".hasPrefix("\(dir)/peers.d/x.toml:2: video.fps: a peers.d drop-in sets only") }
    }

    /// Two devices pair with pair-code and add-peer and end up with matching token pairs.
    @Test func twoDevicesPair() throws {
        let dirA = try tempDir(), dirB = try tempDir()
        let a = try config(dirA, name: "alice", port: 9000), b = try config(dirB, name: "bob", port: 9001)
        // No daemon: the identity comes from the state directory.
        for (dir, n) in [(dirA, "alice"), (dirB, "bob")] {
            let c = try DeviceConfig.load(path: dir + "/\(n).toml")
            try Daemon.makeDirectory(c.stateDirectory, mode: 0o700)
            _ = try DTLSCertificate.loadOrCreate(path: c.stateDirectory + "/identity.pem")
        }
        let (codeA, pendingA) = try Pairing.makeCode(configPath: a)
        let (codeB, _) = try Pairing.makeCode(configPath: b)
        #expect(codeA.url == "http://127.0.0.1:9000" && DropIns.exists(pendingA))
        // A mistyped code writes nothing.
        #expect(throws: PairCode.Problem.self) { try PairCode(parsing: String(codeB.encoded.dropLast())) }
        let addedOnA = try Pairing.addPeer(try PairCode(parsing: codeB.encoded), configPath: a)
        let addedOnB = try Pairing.addPeer(try PairCode(parsing: codeA.encoded), configPath: b)
        #expect(!addedOnA.shown.contains(codeB.tokenText) && !addedOnB.shown.contains(codeA.tokenText) && !DropIns.exists(pendingA))
        let ca = try DeviceConfig.load(path: a), cb = try DeviceConfig.load(path: b)
        #expect(ca.peers.count == 1 && cb.peers.count == 1 && ca.pendingPairings.isEmpty)
        #expect(ca.peers[0].name == "bob" && ca.peers[0].url == "http://127.0.0.1:9001")
        #expect(ca.peers[0].token == cb.peers[0].acceptToken && cb.peers[0].token == ca.peers[0].acceptToken)
        #expect(ca.peers[0].fingerprint == codeB.fingerprintText)
        // Adding the same peer again is refused unless --replace.
        _ = try Pairing.makeCode(configPath: a)
        #expect(throws: Pairing.Failure.self) { try Pairing.addPeer(codeB, configPath: a) }
        _ = try Pairing.addPeer(codeB, configPath: a, replace: true)
        // With no code pending, add-peer says to run pair-code first.
        #expect { try Pairing.addPeer(codeB, configPath: a, replace: true) } throws: { e in "\(e)".contains("run `videophonectl pair-code`") }
    }

    @Test func printConfigMasksSecretsAndReadsBack() throws {
        let c = try DeviceConfig.parse("""
        [device]
        name = "door"
        [signalling]
        token = "guest-secret"
        [[peer]]
        name = "p"
        url = "http://192.0.2.1:8080"
        token = "s1"
        accept_token = "s2"
        """, file: "cfg.toml")
        let text = c.effectiveTOML()
        #expect(!text.contains("guest-secret") && !text.contains("\"s1\"") && text.contains("********"))
        let again = try DeviceConfig.parse(c.effectiveTOML(showSecrets: true), file: "printed.toml")
        #expect(again.peers[0].token == "s1" && again.name == "door" && again.videoWidth == c.videoWidth)
    }
}
