import CLinux
import Logging
import NetworkCore
import VideoPhone
#if canImport(Glibc)
import Glibc
#endif

/// Runs the daemon on `configPath` (and its peers.d) until SIGINT or SIGTERM; SIGHUP
/// reloads. Never returns.
func runDaemon(configPath: String) -> Never {
    // Two malloc arenas, however many threads: each extra glibc arena keeps megabytes
    // resident, and the board's memory is the product's (systemd's unit says the same).
    _ = clinux_limit_malloc_arenas(2)
    // Blocks of 1 MiB and more (a call's encoder buffers) are mapped and unmapped on their own.
    // glibc would otherwise raise this threshold after the first call freed them, serve the
    // next call's from the heap, and keep the heap's high-water mark: measured at 720p, 20 MB
    // more resident after 24 calls, against flat with the threshold fixed.
    _ = clinux_set_mmap_threshold(1 << 20)
    // x264's frame buffers would otherwise take whole 2 MiB huge pages: measured at 720p,
    // 12 MiB of a call's resident set were huge pages (BENCHMARKS.md, "Memory").
    _ = clinux_disable_transparent_huge_pages()

    let config: DeviceConfig
    do {
        config = try DeviceConfig.load(path: configPath)
    } catch {
        printError("videophoned: config error: \(error)\n")
        exit(1)
    }

    // Logging: the journal's native socket under systemd (or a test's socket), readable lines
    // on a terminal, `<N>` priority prefixes otherwise.
    let env = { (name: String) -> String? in getenv(name).map { String(cString: $0) } }
    let level = env("VIDEOPHONE_LOG_LEVEL").flatMap(Logger.Level.init(rawValue:)) ?? .info
    let journalSocket = env("VIDEOPHONE_JOURNAL_SOCKET")
    let sink = JournalSink(socketPath: journalSocket)
    let underJournal = journalSocket != nil || env("JOURNAL_STREAM") != nil
    LoggingSystem.bootstrap { label in
        if underJournal || isatty(2) == 0 {
            var h = JournalLogHandler(label: label, sink: sink)
            h.logLevel = level
            return h
        }
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
        daemon = try Daemon(config: config, configPath: configPath, logger: logger)
    } catch {
        logger.critical("cannot start", metadata: ["REASON": "\(error)"])
        exit(1)
    }
    // Start-up (config, identity, sockets, Swift runtime and library initialisers) faulted in
    // code and tables it will not use again, 16 pages per fault; give back what is still the
    // file's (read-only mappings only) so the resident set is what the device uses.
    let trimmed = clinux_trim_file_mappings()
    logger.debug("gave back start-up pages", metadata: ["kB": "\(trimmed)"])
    daemon.device.onPhaseChange = { phase in SystemdNotify.send("STATUS=\(phase)") }
    SystemdNotify.send("READY=1\nSTATUS=\(daemon.device.phase.name)")

    if let interval = SystemdNotify.watchdogInterval {
        // Fed only while the call's media and transport loops are alive: a stalled pipeline
        // stops the pets and systemd restarts the daemon.
        let device = daemon.device
        startProcessThread(name: "watchdog") {
            var complained = false
            while true {
                let health = device.health()
                if health.ok {
                    SystemdNotify.send("WATCHDOG=1")
                    complained = false
                } else if !complained {
                    logger.critical("not feeding the watchdog", metadata: ["REASON": "\(health.reason ?? "unhealthy")"])
                    complained = true
                }
                usleep(UInt32(max(10_000, interval.nanosecondsInt / 2_000)))
            }
        }
    }

    while true {
        var sig: Int32 = 0
        sigwait(&signals, &sig)
        if sig == SIGHUP {
            SystemdNotify.send("RELOADING=1")
            _ = daemon.reloadConfiguration()
            SystemdNotify.send("READY=1\nSTATUS=\(daemon.device.phase.name)")
            continue
        }
        logger.info("stopping", metadata: ["signal": "\(sig)"])
        SystemdNotify.send("STOPPING=1")
        daemon.stop()
        exit(0)
    }
}
