import CGPIOD
#if canImport(Glibc)
import Glibc
#endif

/// Which GPIO line: by chip (`gpiochip0`, `/dev/gpiochip0` or the chip's label) and
/// offset, or by the line's name (on any chip, or on the one given).
public struct GPIOLineAddress: Sendable, Equatable, CustomStringConvertible {
    public var chip: String?
    public var offset: Int?
    public var name: String?

    public init(chip: String? = nil, offset: Int? = nil, name: String? = nil) {
        self.chip = chip; self.offset = offset; self.name = name
    }

    public var description: String {
        if let name { return chip.map { "line '\(name)' on \($0)" } ?? "line '\(name)'" }
        return "\(chip ?? "?") line \(offset ?? -1)"
    }
}

/// Why a GPIO line could not be used: which line, and the kernel's reason.
public struct GPIOError: Error, CustomStringConvertible {
    public let description: String
    init(_ line: GPIOLineAddress, _ what: String, errno e: Int32) {
        let reason = e == EBUSY ? "in use by another program" : e == ENOENT ? "no such chip or line" : String(cString: strerror(e))
        description = "GPIO \(line): \(what): \(reason)"
    }
    init(_ line: GPIOLineAddress, library: LibraryError) { description = "GPIO \(line): \(library)" }
}

/// Pull resistor on an input line.
public enum GPIOBias: String, Sendable, CaseIterable {
    case asIs = "as-is", none, pullUp = "pull-up", pullDown = "pull-down"
    var raw: Int32 {
        switch self {
        case .asIs: Int32(VP_GPIO_BIAS_AS_IS)
        case .none: Int32(VP_GPIO_BIAS_NONE)
        case .pullUp: Int32(VP_GPIO_BIAS_PULL_UP)
        case .pullDown: Int32(VP_GPIO_BIAS_PULL_DOWN)
        }
    }
}

/// The libgpiod API this build uses ("libgpiod 1.x" or "libgpiod 2.x").
public var gpioAPI: String { String(cString: vp_gpio_api()) }

/// A requested input line with edge events: its descriptor goes into a `poll` loop.
public final class GPIOInput: @unchecked Sendable {
    private let line: OpaquePointer
    public let address: GPIOLineAddress

    public init(_ address: GPIOLineAddress, consumer: String, bias: GPIOBias = .asIs) throws(GPIOError) {
        self.address = address
        do { try BoardLibrary.gpiod.load() } catch { throw GPIOError(address, library: error) }
        errno = 0
        guard let l = vp_gpio_request_input(address.chip, Int32(address.offset ?? 0), address.name, consumer, bias.raw) else {
            throw GPIOError(address, "cannot watch", errno: errno)
        }
        line = l
    }

    deinit { vp_gpio_release(line) }

    /// Readable when an edge is pending.
    public var fileDescriptor: Int32 { vp_gpio_event_fd(line) }

    /// One pending edge (blocks if none): the new level and the kernel's CLOCK_MONOTONIC time.
    public func readEdge() -> (high: Bool, nanoseconds: UInt64)? {
        var rising: Int32 = 0
        var ns: UInt64 = 0
        guard vp_gpio_read_edge(line, &rising, &ns) == 0 else { return nil }
        return (rising != 0, ns)
    }

    /// The line's present level.
    public var isHigh: Bool? {
        let v = vp_gpio_get(line)
        return v < 0 ? nil : v != 0
    }

    /// Where the line was found (chip and offset), for logs.
    public var resolved: String { "\(String(cString: vp_gpio_chip_name(line))) line \(vp_gpio_offset(line))" }
}

/// A requested output line (an LED).
public final class GPIOOutput: @unchecked Sendable {
    private let line: OpaquePointer
    public let address: GPIOLineAddress

    public init(_ address: GPIOLineAddress, consumer: String, initial: Bool = false) throws(GPIOError) {
        self.address = address
        do { try BoardLibrary.gpiod.load() } catch { throw GPIOError(address, library: error) }
        errno = 0
        guard let l = vp_gpio_request_output(address.chip, Int32(address.offset ?? 0), address.name, consumer, initial ? 1 : 0) else {
            throw GPIOError(address, "cannot drive", errno: errno)
        }
        line = l
    }

    deinit { vp_gpio_release(line) }

    @discardableResult
    public func set(_ high: Bool) -> Bool { vp_gpio_set(line, high ? 1 : 0) == 0 }

    public var resolved: String { "\(String(cString: vp_gpio_chip_name(line))) line \(vp_gpio_offset(line))" }
}
