import CallControl
import Logging
import MediaDevicesLinux
import NetworkCore
#if canImport(Glibc)
import Glibc
#endif

extension GPIOConfig {
    func address(_ line: GPIOLineName) -> GPIOLineAddress {
        switch line {
        case .named(let n): GPIOLineAddress(chip: chip, name: n)
        case .offset(let o): GPIOLineAddress(chip: chip, offset: o)
        }
    }
}

/// Loads libgpiod (dlopen) before `request`: when it will not load, the error names the
/// config key that needs it and the library.
func gpioLibrary<Line>(for key: String, _ request: () throws(GPIOError) -> Line) throws -> Line {
    do { try BoardLibrary.gpiod.load() } catch { throw BoardLibraryMissing(description: "\(key) needs \(error)") }
    return try request()
}

/// The call LED on a GPIO line: a thread plays the pattern's on/off timing. A line that
/// cannot be requested (missing, or held by another program) is logged once and retried
/// every few seconds; the pattern is remembered meanwhile, for status.
public final class GPIOCallLED: CallLED, @unchecked Sendable {
    private let address: GPIOLineAddress
    private let activeLow: Bool
    private let logger: Logger
    private let lock = Lock()
    private let waker = Waker()
    private var current = LEDPattern.off
    private var changed = false
    private let loop = DeviceThread()

    public init(address: GPIOLineAddress, activeLow: Bool, logger: Logger) {
        self.address = address
        self.activeLow = activeLow
        self.logger = logger
        loop.start(name: "gpio-led") { [self] in run() }
    }

    public func show(_ pattern: LEDPattern) {
        lock.withLock { current = pattern; changed = true }
        waker.wake()
    }

    public var pattern: LEDPattern { lock.withLock { current } }

    public func stop() { loop.stop(wake: waker.wake) }

    private func run() {
        var line: GPIOOutput?
        var lastFailure: String?
        var step = 0
        var playing = LEDPattern.off
        while loop.isRunning {
            if line == nil {
                do {
                    line = try gpioLibrary(for: "gpio.call_led") { () throws(GPIOError) in
                        try GPIOOutput(address, consumer: "videophoned call LED", initial: activeLow)
                    }
                    logger.info("call LED ready", metadata: ["line": "\(line!.resolved)", "api": "\(gpioAPI)"])
                    lastFailure = nil
                } catch {
                    if lastFailure != "\(error)" {
                        logger.error("call LED unavailable; retrying", metadata: ["device": "\(address)", "REASON": "\(error)"])
                        lastFailure = "\(error)"
                    }
                    waker.wait(.seconds(5))
                    continue
                }
            }
            let pattern = lock.withLock { () -> LEDPattern in
                if changed { changed = false; step = 0 }
                return current
            }
            if pattern != playing { playing = pattern; step = 0 }
            let timing = pattern.timing
            let on = timing.count == 1 ? timing[0] != 0 : step % 2 == 0
            line?.set(on != activeLow)
            if timing.count == 1 {
                waker.wait(.seconds(3600))
            } else {
                let ms = timing[step % timing.count]
                step += 1
                waker.wait(.milliseconds(Int64(ms)))
            }
        }
        line?.set(activeLow)
    }
}

/// Watches the call button's GPIO line: kernel edge events into a debounced
/// ``CallButton``, presses to the device. A line that cannot be requested is logged, shown
/// as a device fault on the LED, and retried every few seconds.
public final class CallButtonWatcher: @unchecked Sendable {
    private let config: GPIOConfig
    private let address: GPIOLineAddress
    private let logger: Logger
    private let onPress: @Sendable (_ long: Bool) -> Void
    private let onAvailability: @Sendable (_ available: Bool) -> Void
    private let loop = DeviceThread()
    private let waker = Waker()

    public init(config: GPIOConfig, button: GPIOLineName, logger: Logger,
                onAvailability: @escaping @Sendable (Bool) -> Void, onPress: @escaping @Sendable (Bool) -> Void) {
        self.config = config
        self.address = config.address(button)
        self.logger = logger
        self.onPress = onPress
        self.onAvailability = onAvailability
        loop.start(name: "gpio-button") { [self] in run() }
    }

    deinit { stop() }

    public func stop() { loop.stop(wake: waker.wake) }

    private func run() {
        let bias = GPIOBias(rawValue: config.buttonBias) ?? .asIs
        var lastFailure: String?
        while loop.isRunning {
            let line: GPIOInput
            do {
                line = try gpioLibrary(for: "gpio.button") { () throws(GPIOError) in
                    try GPIOInput(address, consumer: "videophoned call button", bias: bias)
                }
            } catch {
                if lastFailure != "\(error)" {
                    logger.error("call button unavailable; retrying", metadata: ["device": "\(address)", "REASON": "\(error)"])
                    lastFailure = "\(error)"
                    onAvailability(false)
                }
                waker.wait(.seconds(5))
                continue
            }
            logger.info("call button ready", metadata: ["line": "\(line.resolved)", "api": "\(gpioAPI)"])
            if lastFailure != nil { onAvailability(true) }
            lastFailure = nil
            watch(line)
        }
    }

    private func watch(_ line: GPIOInput) {
        var button = CallButton(debounce: .milliseconds(Int64(config.debounceMs)), now: Instant.now())
        // Start from the line's level, not from "released", in case it is held at start.
        if let high = line.isHigh { button.edge(pressed: high != config.buttonActiveLow, at: Instant.now()) }
        while loop.isRunning {
            var timeout = Duration.seconds(1)
            if let d = button.deadline { timeout = min(timeout, d - Instant.now()) }
            let readable = waker.wait(timeout, readable: line.fileDescriptor)
            if !loop.isRunning { return }
            if readable {
                guard let edge = line.readEdge() else {
                    logger.error("call button line stopped delivering events; requesting it again", metadata: ["device": "\(address)"])
                    return
                }
                // The kernel stamps edges on CLOCK_MONOTONIC, the clock Instant uses.
                button.edge(pressed: edge.high != config.buttonActiveLow, at: Instant(nanoseconds: edge.nanoseconds))
            }
            switch button.poll(now: Instant.now()) {
            case .shortPress?: onPress(false)
            case .longPress?: onPress(true)
            default: break
            }
        }
    }
}
