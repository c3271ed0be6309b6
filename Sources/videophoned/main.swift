import Logging
import NetworkCore
import VideoPhone
#if canImport(Glibc)
import Glibc
#endif

/// videophoned: the video phone daemon.
let usage = """
usage: videophoned [--config PATH]       run the daemon (default /etc/videophone/videophone.toml)
       videophoned --check-config PATH   validate a config file and exit

"""

var configPath = "/etc/videophone/videophone.toml"
var checkOnly = false
var args = CommandLine.arguments.dropFirst()
while let a = args.popFirst() {
    switch a {
    case "--config", "-c":
        guard let p = args.popFirst() else { printError(usage); exit(2) }
        configPath = p
    case "--check-config":
        guard let p = args.popFirst() else { printError(usage); exit(2) }
        configPath = p
        checkOnly = true
    case "--help", "-h":
        print(usage, terminator: "")
        exit(0)
    default:
        printError("videophoned: unknown argument '\(a)'\n" + usage)
        exit(2)
    }
}

let config: DeviceConfig
do {
    config = try DeviceConfig.load(path: configPath)
} catch {
    printError("videophoned: config error: \(error)\n")
    exit(1)
}
if checkOnly {
    print("\(configPath): OK (device '\(config.name)', \(config.peers.count) peer(s))")
    exit(0)
}

let level = Logger.Level(rawValue: String(cString: getenv("VIDEOPHONE_LOG_LEVEL") ?? strdup("info"))) ?? .info
LoggingSystem.bootstrap { label in
    var h = StreamLogHandler.standardError(label: label)
    h.logLevel = level
    return h
}
let logger = Logger(label: "videophoned")

// Signals are taken synchronously by the main thread; every other thread inherits the mask.
signal(SIGPIPE, SIG_IGN)
var signals = sigset_t()
sigemptyset(&signals)
for s in [SIGINT, SIGTERM, SIGHUP] { sigaddset(&signals, s) }
pthread_sigmask(SIG_BLOCK, &signals, nil)

let daemon: Daemon
do {
    daemon = try Daemon(config: config, logger: logger)
} catch {
    logger.critical("cannot start", metadata: ["REASON": "\(error)"])
    exit(1)
}

SystemdNotify.send("READY=1\nSTATUS=idle")
if let interval = SystemdNotify.watchdogInterval {
    // Pet the watchdog at half its period.
    _ = startWatchdog(every: interval / 2)
}

while true {
    var sig: Int32 = 0
    sigwait(&signals, &sig)
    if sig == SIGHUP {
        logger.notice("SIGHUP: configuration reload is not supported yet; keeping the running configuration")
        continue
    }
    logger.info("stopping", metadata: ["signal": "\(sig)"])
    SystemdNotify.send("STOPPING=1")
    daemon.stop()
    exit(0)
}

func startWatchdog(every period: Duration) -> pthread_t {
    startThread(name: "watchdog") {
        while true {
            SystemdNotify.send("WATCHDOG=1")
            let us = UInt32(max(1000, period.nanosecondsInt / 1000))
            usleep(us)
        }
    }
}
