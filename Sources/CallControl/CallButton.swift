import NetworkCore

/// Turns a push button's raw edges into presses: debounced (a level counts once it has
/// held for `debounce`), a short press on release, a long press the moment the button
/// has been held for `longPress` (so the user feels it without letting go).
///
/// I/O-free: the GPIO thread feeds edges with the kernel's timestamps and calls
/// ``poll(now:)`` at ``deadline``.
public struct CallButton: Sendable {
    public let debounce: Duration
    public let longPress: Duration
    /// The debounced level: true while pressed.
    public private(set) var pressed = false
    private var rawPressed = false
    private var rawSince: Instant
    private var pressedAt: Instant?
    private var longSent = false

    public init(debounce: Duration = .milliseconds(30), longPress: Duration = .milliseconds(1500), now: Instant) {
        self.debounce = debounce
        self.longPress = longPress
        rawSince = now
    }

    /// A raw level change (bounces included).
    public mutating func edge(pressed level: Bool, at time: Instant) {
        guard level != rawPressed else { return }
        rawPressed = level
        rawSince = time
    }

    /// When ``poll(now:)`` next has something to decide, if ever.
    public var deadline: Instant? {
        if rawPressed != pressed { return rawSince + debounce }
        if pressed, !longSent, let at = pressedAt { return at + longPress }
        return nil
    }

    /// The presses decided by `now`.
    public mutating func poll(now: Instant) -> CallEvent? {
        if rawPressed != pressed, now - rawSince >= debounce {
            pressed = rawPressed
            if pressed {
                pressedAt = rawSince
                longSent = false
            } else {
                defer { pressedAt = nil }
                if !longSent, pressedAt != nil { return .shortPress }
                return nil
            }
        }
        if pressed, !longSent, let at = pressedAt, now - at >= longPress {
            longSent = true
            return .longPress
        }
        return nil
    }
}
