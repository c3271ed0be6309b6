import DTLS
import Logging
import NetworkCore
#if canImport(Glibc)
import Glibc
#endif

/// The running daemon: identity, device, signalling server, control socket.
public final class Daemon: @unchecked Sendable {
    public let device: Device
    /// The signalling port, `/metrics` (when `metrics.listen` is set) and the control
    /// socket, all on one loop thread.
    let server: SocketServer
    let signallingServer: SignallingServer
    /// The signalling port actually bound (the config may say 0).
    public let signallingPort: UInt16
    /// The board's button and LED, when `[gpio]` names them.
    let button: CallButtonWatcher?
    let gpioLED: GPIOCallLED?
    /// The file the configuration came from (with its `peers.d`), for reloads.
    public let configPath: String?
    let logger: Logger
    private let reloading = Lock()

    /// Loads (or creates) the identity and starts the servers.
    public init(config: DeviceConfig, configPath: String? = nil, logger: Logger) throws {
        self.configPath = configPath
        self.logger = logger
        try Daemon.makeDirectory(config.stateDirectory, mode: 0o700)
        let (identity, created) = try DTLSCertificate.loadOrCreate(path: config.stateDirectory + "/identity.pem")
        logger.info(created ? "created device identity" : "loaded device identity", metadata: ["fingerprint": "sha-256 \(identity.fingerprint)"])
        gpioLED = config.gpio.flatMap { g in
            g.callLED.map { GPIOCallLED(address: g.address($0), activeLow: g.ledActiveLow, logger: logger) }
        }
        let device = try Device(config: config, identity: identity, logger: logger, leds: gpioLED ?? SimulatedCallLED())
        self.device = device
        device.detectEncoder()
        device.checkParts()
        button = config.gpio.flatMap { g in
            g.button.map { line in
                CallButtonWatcher(config: g, button: line, logger: logger,
                                  onAvailability: { device.report(.button, failing: !$0) },
                                  onPress: { long in
                                      device.press(long: long) { result in
                                          logger.info("call button pressed", metadata: ["press": "\(long ? "long" : "short")", "result": "\(result)"])
                                      }
                                  })
            }
        }
        signallingServer = SignallingServer(device: device)
        if let b = config.broker {
            // Signalling through the broker: its messages reach the same handlers as the
            // HTTP routes. A broker that cannot be reached is logged and retried; the
            // daemon and LAN calls over HTTP go on meanwhile.
            let broker = BrokerSignalling(config: config, broker: b, identity: identity, logger: logger, metrics: device.metrics)
            broker.server = signallingServer
            broker.onConnectivity = { [weak device] up in device?.report(.broker, failing: !up) }
            device.signalling.broker = broker
            try broker.start()
            logger.info("signalling through the broker", metadata: ["brokers": "\(b.urls.map(\.description).joined(separator: ", "))",
                                                                     "inbox": "\(broker.inbox)"])
        }
        server = SocketServer(name: "http")
        let rateLimiter = device.rateLimiter
        server.onRefusal = { source, what in
            if rateLimiter.shouldLog(source: source) {
                logger.notice("signalling connection refused", metadata: ["from": "\(source)", "REASON": "\(what)"])
            }
        }
        let routes = signallingServer
        signallingPort = try server.listenHTTP(host: config.signallingHost, port: config.signallingPort) { req, responder in
            routes.handle(req, responder)
        }
        if let listen = config.metricsListen, let (host, port) = splitHostPort(listen) {
            let metrics = device.metrics
            try server.listenHTTP(host: host, port: port) { req, responder in
                guard req.method == "GET", req.path.hasPrefix("/metrics") else {
                    responder.respond(HTTPResponse(status: 404, contentType: "text/plain", text: "only /metrics here\n"))
                    return
                }
                responder.respond(HTTPResponse(status: 200, contentType: "text/plain; version=0.0.4", text: metrics.render()))
            }
        }
        let dir = config.controlSocket.split(separator: "/").dropLast().joined(separator: "/")
        try Daemon.makeDirectory((config.controlSocket.hasPrefix("/") ? "/" : "") + dir, mode: 0o750)
        var reload: (@Sendable () -> String)? = nil
        if configPath != nil { reload = { @Sendable [unowned self] () -> String in
            switch self.reloadConfiguration() {
            case .success(let restart):
                return "ok reloaded" + (restart.isEmpty ? "" : "; restart needed for \(restart.joined(separator: ", "))") + "\n"
            case .failure(let e):
                return "error reload failed, keeping the running configuration: \(e)\n"
            }
        } }
        let reloadCommand = reload
        try server.listenCommands(path: config.controlSocket) { line, responder in
            ControlCommands.execute(line, device: device, reload: reloadCommand, responder)
        }
        server.start()
        logger.info("videophoned ready", metadata: ["signalling": "\(config.signallingHost):\(signallingPort)", "control": "\(config.controlSocket)"])
    }

    /// Re-reads the config file and its drop-ins (SIGHUP, `videophonectl reload`). A file
    /// with an error leaves the running configuration in place; the journal says why.
    /// Returns what needs a restart to change.
    public func reloadConfiguration() -> Result<[String], ConfigError> {
        guard let configPath else { return .failure(ConfigError(file: "-", line: nil, key: nil, problem: "no config file")) }
        return reloading.withLock { () -> Result<[String], ConfigError> in
            do throws(ConfigError) {
                let fresh = try DeviceConfig.load(path: configPath)
                let restart = device.reload(fresh)
                logger.notice("configuration reloaded", metadata: [
                    "peers": "\(fresh.peers.count)", "drop_ins": "\(fresh.dropIns.count)",
                ].merging(restart.isEmpty ? [:] : ["restart_needed_for": "\(restart.joined(separator: ", "))"]) { a, _ in a })
                return .success(restart)
            } catch {
                logger.error("configuration reload failed; keeping the running configuration", metadata: ["REASON": "\(error)"])
                return .failure(error)
            }
        }
    }

    public func stop() {
        button?.stop()
        server.stop()
        device.stop()
        gpioLED?.stop()
    }

    static func makeDirectory(_ path: String, mode: mode_t) throws {
        guard !path.isEmpty else { return }
        var current = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            current += "/" + part
            if mkdir(current, mode) != 0 && errno != EEXIST {
                throw HTTPError("cannot create directory \(current): \(String(cString: strerror(errno)))")
            }
        }
    }
}
