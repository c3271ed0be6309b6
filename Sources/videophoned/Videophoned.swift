import ArgumentParser
import BuildInfo
import VideoPhone
#if canImport(Glibc)
import Glibc
#endif

/// videophoned: the video phone daemon, its config checks and its encoder check.
@main
struct Videophoned: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "videophoned",
        abstract: "The video phone daemon: press the button, the peer rings.",
        discussion: """
        With no option it runs the daemon on the config file (and the peers.d/*.toml \
        drop-ins beside it) until SIGTERM; SIGHUP (systemctl reload videophoned) re-reads \
        them, and a file with an error keeps the running configuration. Errors name the \
        file, the line and the key. Exit codes: 0 done, 1 a config or start error, 64 a \
        bad command line.
        """)

    @Option(name: [.short, .customLong("config")], help: ArgumentHelp("The config file; drop-ins come from peers.d/ beside it.", valueName: "path"))
    var config = "/etc/videophone/videophone.toml"

    @Option(name: .customLong("check-config"), help: ArgumentHelp("Check a config file and its peers.d drop-ins, then exit.", valueName: "path"))
    var checkConfig: String?

    @Flag(name: .customLong("print-config"), help: "Print the effective configuration (board profile merged, defaults filled in, peers.d included, secrets masked) and exit.")
    var printConfig = false

    @Flag(name: .customLong("show-secrets"), help: "With --print-config: print tokens and credentials instead of masking them.")
    var showSecrets = false

    @Option(name: .customLong("check-encoder"),
            help: ArgumentHelp("Encode a test picture on the board's V4L2 mem2mem encoder and report: 'auto' finds it, or DEV[:FOURCC] (FOURCC defaults to H264).", valueName: "auto|dev[:fourcc]"))
    var checkEncoder: String?

    @Option(name: .customLong("check-decoder"),
            help: ArgumentHelp("Decode a test picture on the board's V4L2 mem2mem decoder and compare: 'auto' finds it, or DEV[:FOURCC] (FOURCC defaults to H264).", valueName: "auto|dev[:fourcc]"))
    var checkDecoder: String?

    @Flag(name: .customLong("version"), help: "Print the version, the git commit and the encoder in use, then exit.")
    var version = false

    func validate() throws {
        if showSecrets && !printConfig { throw ValidationError("--show-secrets goes with --print-config") }
        let modes = [checkConfig != nil, printConfig, checkEncoder != nil, checkDecoder != nil, version].filter { $0 }.count
        if modes > 1 { throw ValidationError("--check-config, --print-config, --check-encoder, --check-decoder and --version are used one at a time") }
    }

    func run() throws {
        if version {
            let c = try? DeviceConfig.load(path: config)
            print("videophoned \(BuildInfo.version)")
            print("commit: \(BuildInfo.commit)")
            print("encoder: \(EncoderCheck.inUse(c))")
            return
        }
        if let spec = checkEncoder {
            let (report, ok) = EncoderCheck.run(spec: spec == "auto" || spec.isEmpty ? nil : spec)
            print(report)
            throw ExitCode(ok ? 0 : 1)
        }
        if let spec = checkDecoder {
            let (report, ok) = DecoderCheck.run(spec: spec == "auto" || spec.isEmpty ? nil : spec)
            print(report)
            throw ExitCode(ok ? 0 : 1)
        }
        if let path = checkConfig {
            let c = try load(path)
            let dropIns = c.dropIns.isEmpty ? "" : ", \(c.dropIns.count) drop-in(s)"
            print("\(path): OK (device '\(c.name)', \(c.peers.count) peer(s)\(dropIns))")
            return
        }
        if printConfig {
            print(try load(config).effectiveTOML(showSecrets: showSecrets), terminator: "")
            return
        }
        runDaemon(configPath: config)
    }

    func load(_ path: String) throws -> DeviceConfig {
        do { return try DeviceConfig.load(path: path) } catch {
            printError("videophoned: config error: \(error)\n")
            throw ExitCode(1)
        }
    }

    /// `--check-encoder` alone (as older scripts call it) means `--check-encoder auto`.
    static func main() {
        var args = Array(CommandLine.arguments.dropFirst())
        if let i = args.firstIndex(of: "--check-encoder"), i + 1 == args.count || args[i + 1].hasPrefix("-") {
            args[i] = "--check-encoder=auto"
        }
        do {
            var command = try parseAsRoot(args)
            try command.run()
        } catch {
            exit(withError: error)
        }
    }
}
