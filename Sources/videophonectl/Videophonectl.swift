import ArgumentParser
import BuildInfo
import VideoPhone
#if canImport(Glibc)
import Glibc
#endif

/// videophonectl: talks to the running daemon over its control socket, and pairs devices.
@main
struct Videophonectl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "videophonectl",
        abstract: "Control the video phone daemon and pair devices.",
        discussion: """
        Exit codes: 0 done, 1 the daemon refused or could not be reached, 64 a bad \
        command line. Pairing: run `pair-code` on each device, then `add-peer` with the \
        other device's code on each; the button then calls the other device.
        """,
        subcommands: [Status.self, Watch.self, Call.self, Answer.self, Hangup.self, Press.self, Identity.self,
                      Reload.self, Screenshot.self, PairCode_.self, AddPeer.self, Version.self])

    @Flag(name: .customLong("version"), help: "Print the version, the git commit and the encoder in use, then exit.")
    var version = false

    func run() throws {
        guard version else { throw CleanExit.helpRequest(self) }
        try Version.parse([]).run()
    }

    /// `videophonectl --socket PATH status` (the older order, which scripts use) is read
    /// as `videophonectl status --socket PATH`: options every subcommand has may come
    /// before its name.
    static func main() {
        var args = Array(CommandLine.arguments.dropFirst())
        var leading: [String] = []
        while let first = args.first {
            if ["--socket", "--config", "-c"].contains(first), args.count >= 2 {
                leading += args.prefix(2); args.removeFirst(2)
            } else if first.hasPrefix("--socket=") || first.hasPrefix("--config=") {
                leading.append(first); args.removeFirst()
            } else {
                break
            }
        }
        if !leading.isEmpty, let sub = args.first, !sub.hasPrefix("-") {
            args = [sub] + leading + args.dropFirst()
        } else {
            args = leading + args
        }
        do {
            var command = try parseAsRoot(args)
            try command.run()
        } catch {
            exit(withError: error)
        }
    }
}

/// Where the daemon is: its control socket, from --socket or the config file.
struct Connection: ParsableArguments {
    @Option(name: .customLong("socket"), help: ArgumentHelp("The daemon's control socket (default: control.socket from the config file, else /run/videophone/control.sock).", valueName: "path"))
    var socket: String?

    @Option(name: [.short, .customLong("config")], help: ArgumentHelp("The daemon's config file.", valueName: "path"))
    var config = "/etc/videophone/videophone.toml"

    var socketPath: String {
        if let socket { return socket }
        return (try? DeviceConfig.load(path: config))?.controlSocket ?? "/run/videophone/control.sock"
    }

    /// Sends one command line and prints the reply; `ok` replies exit 0, others 1.
    func send(_ line: String) throws {
        let reply: String
        do { reply = try controlRequest(path: socketPath, command: line) } catch {
            printError("videophonectl: \(error)\n")
            throw ExitCode(1)
        }
        if reply.hasPrefix("ok\n") || reply.hasPrefix("ok ") {
            print(reply.dropFirst(3), terminator: "")
        } else {
            printError("videophonectl: " + (reply.hasPrefix("error ") ? String(reply.dropFirst(6)) : reply))
            throw ExitCode(1)
        }
    }

    /// After a drop-in changed: asks the daemon to reload, or says how to.
    func reload() {
        if let reply = try? controlRequest(path: socketPath, command: "reload", timeout: 10) {
            print(reply.hasPrefix("ok ") ? "videophoned: " + reply.dropFirst(3) : "videophoned: " + reply.dropFirst(reply.hasPrefix("error ") ? 6 : 0), terminator: "")
        } else {
            print("videophoned is not reachable on \(socketPath): run `systemctl reload videophoned` (or start it)")
        }
    }
}

extension Videophonectl {
    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Call state and live figures.",
            discussion: "--json prints the stable format described in docs/STATUS-JSON.md.")
        @OptionGroup var connection: Connection
        @Flag(help: "One JSON object (docs/STATUS-JSON.md).") var json = false
        func run() throws { try connection.send(json ? "status --json" : "status") }
    }

    struct Watch: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Status, refreshed every second until Ctrl-C.")
        @OptionGroup var connection: Connection
        func run() throws {
            while true {
                print("\u{1B}[H\u{1B}[2J", terminator: "")
                try? connection.send("status")
                sleep(1)
            }
        }
    }

    struct Call: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Call a provisioned peer (the first by default).")
        @OptionGroup var connection: Connection
        @Argument(help: "The peer's name.") var peer: String?
        func validate() throws {
            if let peer, peer.contains(" ") || peer.isEmpty { throw ValidationError("a peer name has no spaces: '\(peer)'") }
        }
        func run() throws { try connection.send(peer.map { "call \($0)" } ?? "call") }
    }

    struct Answer: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Answer a ringing call.")
        @OptionGroup var connection: Connection
        func run() throws { try connection.send("answer") }
    }

    struct Hangup: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "End the call.")
        @OptionGroup var connection: Connection
        func run() throws { try connection.send("hangup") }
    }

    struct Press: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Press the call button (short: call, answer or hang up; long: reject or cancel).")
        @OptionGroup var connection: Connection
        @Flag(help: "A long press.") var long = false
        func run() throws { try connection.send(long ? "press --long" : "press") }
    }

    struct Identity: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "This device's certificate fingerprint.")
        @OptionGroup var connection: Connection
        func run() throws { try connection.send("identity") }
    }

    struct Reload: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Re-read the config file and peers.d (as SIGHUP); a broken file keeps the running configuration.")
        @OptionGroup var connection: Connection
        func run() throws { try connection.send("reload") }
    }

    struct Screenshot: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Write what the screen shows now to a PNG file (board or simulator).")
        @OptionGroup var connection: Connection
        @Argument(help: ArgumentHelp("The PNG file to write.", valueName: "file.png")) var file: String
        func validate() throws {
            if file.isEmpty { throw ValidationError("expected a file name, e.g. screen.png") }
        }
        func run() throws {
            let reply: String
            do { reply = try controlRequest(path: connection.socketPath, command: "screenshot") } catch {
                printError("videophonectl: \(error)\n")
                throw ExitCode(1)
            }
            let words = reply.split(separator: " ", maxSplits: 3)
            guard reply.hasPrefix("ok png "), words.count == 4 else {
                printError("videophonectl: " + (reply.hasPrefix("error ") ? String(reply.dropFirst(6)) : "unexpected reply: \(reply.prefix(80))\n"))
                throw ExitCode(1)
            }
            guard case .success(let decoded) = Base64URL.decode(String(words[3].filter { !$0.isWhitespace })) else {
                printError("videophonectl: the screenshot in the reply is not base64url\n")
                throw ExitCode(1)
            }
            let fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard fd >= 0 else {
                printError("videophonectl: cannot write \(file): \(String(cString: strerror(errno)))\n")
                throw ExitCode(1)
            }
            defer { close(fd) }
            let written = decoded.bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard written == decoded.bytes.count else {
                printError("videophonectl: cannot write \(file): \(String(cString: strerror(errno)))\n")
                throw ExitCode(1)
            }
            print("\(file): \(words[2]) screen, \(decoded.bytes.count) bytes")
        }
    }

    struct PairCode_: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "pair-code",
            abstract: "Print this device's pairing code: one line for `videophonectl add-peer` on the other device.",
            discussion: """
            The line holds this device's name, signalling URL (signalling.url, else its \
            address), certificate fingerprint and a fresh secret, which is kept in \
            peers.d/pending-ID.toml until `add-peer` here uses it. Pass the line on like a \
            password. Delete the pending file to withdraw a code.
            """)
        @OptionGroup var connection: Connection
        func run() throws {
            do {
                let (code, file) = try Pairing.makeCode(configPath: connection.config)
                print(code.encoded)
                printError("videophonectl: pending secret kept in \(file); now run on the other device: videophonectl add-peer CODE\n")
            } catch {
                printError("videophonectl: \(error)\n")
                throw ExitCode(1)
            }
        }
    }

    struct AddPeer: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "add-peer",
            abstract: "Provision the device whose pairing code this is: writes its [[peer]] to peers.d and reloads.",
            discussion: """
            Uses this device's pending code (from `pair-code`) as the secret the other \
            device will present. A truncated or mistyped code is refused and nothing is written.
            """)
        @OptionGroup var connection: Connection
        @Argument(help: "The other device's line from `videophonectl pair-code`.") var code: String
        @Option(help: ArgumentHelp("Which of this device's pending codes the other device received (when several are pending).", valueName: "id")) var pending: String?
        @Option(help: ArgumentHelp("The name to give the peer (default: the name in its code).", valueName: "name")) var name: String?
        @Flag(help: "Pair again with a peer added before by add-peer (its drop-in is replaced).") var replace = false

        func run() throws {
            let parsed: VideoPhone.PairCode
            do { parsed = try VideoPhone.PairCode(parsing: code) } catch {
                printError("videophonectl: pairing code refused, nothing written: \(error)\n")
                throw ExitCode(1)
            }
            do {
                let added = try Pairing.addPeer(parsed, configPath: connection.config, pendingID: pending, name: name, replace: replace)
                print("wrote \(added.file):")
                print(added.shown, terminator: "")
                connection.reload()
            } catch {
                printError("videophonectl: \(error)\n")
                throw ExitCode(1)
            }
        }
    }

    struct Version: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The version, the git commit and the encoder in use.")
        @OptionGroup var connection: Connection
        func run() throws {
            print("videophonectl \(BuildInfo.version)")
            print("commit: \(BuildInfo.commit)")
            print("encoder: \(EncoderCheck.inUse(try? DeviceConfig.load(path: connection.config)))")
        }
    }
}
