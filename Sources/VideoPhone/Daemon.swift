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

    /// Loads (or creates) the identity and starts the servers.
    public init(config: DeviceConfig, logger: Logger) throws {
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
        try server.listenCommands(path: config.controlSocket) { line, responder in
            ControlCommands.execute(line, device: device, responder)
        }
        server.start()
        logger.info("videophoned ready", metadata: ["signalling": "\(config.signallingHost):\(signallingPort)", "control": "\(config.controlSocket)"])
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
