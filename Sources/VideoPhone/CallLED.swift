import CallControl
import NetworkCore

/// The call LED. Boards drive a GPIO line; the simulated board remembers the pattern so
/// `status` and tests can see it.
public protocol CallLED: AnyObject, Sendable {
    func show(_ pattern: LEDPattern)
    var pattern: LEDPattern { get }
}

/// The simulated board's LED.
public final class SimulatedCallLED: CallLED, @unchecked Sendable {
    private let current = Locked(LEDPattern.off)
    public init() {}
    public func show(_ pattern: LEDPattern) { current.withLock { $0 = pattern } }
    public var pattern: LEDPattern { current.current }
}
