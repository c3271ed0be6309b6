/// A TOML 1.0 value: every type the specification has.
public indirect enum TOMLValue: Equatable, Sendable {
    case string(String)
    /// A 64-bit signed integer (TOML requires the range and refuses what lies outside it).
    case integer(Int)
    case float(Double)
    case boolean(Bool)
    /// An offset date-time, local date-time, local date or local time.
    case dateTime(TOMLDateTime)
    case array([TOMLValue])
    case table(TOMLTable)

    /// The type's name as error messages say it: `string`, `integer`, `table`, ...
    public var typeName: String {
        switch self {
        case .string: "string"
        case .integer: "integer"
        case .float: "float"
        case .boolean: "boolean"
        case .dateTime(let d): d.kindName
        case .array: "array"
        case .table: "table"
        }
    }

    public static func == (a: TOMLValue, b: TOMLValue) -> Bool {
        switch (a, b) {
        case let (.string(x), .string(y)): x == y
        case let (.integer(x), .integer(y)): x == y
        // Bit equality: NaN equals NaN, 0.0 and -0.0 differ (what a round trip must keep).
        case let (.float(x), .float(y)): x.bitPattern == y.bitPattern || (x.isNaN && y.isNaN)
        case let (.boolean(x), .boolean(y)): x == y
        case let (.dateTime(x), .dateTime(y)): x == y
        case let (.array(x), .array(y)): x == y
        case let (.table(x), .table(y)): x == y
        default: false
        }
    }
}

/// A TOML table: keys in the order the document defined them, each with the line that
/// defined it (so a caller's own checks can name the line too).
public struct TOMLTable: Equatable, Sendable {
    /// The keys, in document order.
    public private(set) var keys: [String] = []
    private var values: [String: TOMLValue] = [:]
    private var lines: [String: Int] = [:]
    /// The line of the table's header (`[name]`, `[[name]]`, or where it was first opened).
    public var definedAt: Int?

    public init() {}

    /// The value under `key`, if any.
    public subscript(key: String) -> TOMLValue? { values[key] }

    /// The 1-based line on which `key` was defined (its `key =` line or its table header).
    public func line(of key: String) -> Int? { lines[key] }

    /// The entries in document order.
    public var entries: [(key: String, value: TOMLValue, line: Int)] {
        keys.map { ($0, values[$0]!, lines[$0] ?? 0) }
    }

    public var isEmpty: Bool { keys.isEmpty }

    /// Sets `key` (appended if new, replaced in place otherwise).
    public mutating func set(_ key: String, _ value: TOMLValue, line: Int) {
        if values[key] == nil { keys.append(key) }
        values[key] = value
        lines[key] = line
    }

    /// Equal keys and values; order and lines do not matter.
    public static func == (a: TOMLTable, b: TOMLTable) -> Bool { a.values == b.values }
}

/// A TOML date and/or time, kept as written (to the nanosecond) with its kind.
public struct TOMLDateTime: Equatable, Sendable, CustomStringConvertible {
    public var year = 0, month = 0, day = 0
    public var hour = 0, minute = 0, second = 0
    /// Fraction of the second, in nanoseconds (digits past the ninth are dropped).
    public var nanosecond = 0
    public var hasDate = false
    public var hasTime = false
    /// Minutes east of UTC; nil for local date-times, dates and times.
    public var offsetMinutes: Int?

    public init() {}

    /// `offset date-time`, `local date-time`, `local date` or `local time`.
    public var kindName: String {
        switch (hasDate, hasTime, offsetMinutes != nil) {
        case (true, true, true): "offset date-time"
        case (true, true, false): "local date-time"
        case (true, false, _): "local date"
        default: "local time"
        }
    }

    /// RFC 3339 form: `1979-05-27T07:32:00.5-07:00` (fraction only when not zero).
    public var description: String {
        func pad(_ v: Int, _ n: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, n - s.count)) + s
        }
        var s = ""
        if hasDate { s += "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))" }
        if hasDate && hasTime { s += "T" }
        if hasTime {
            s += "\(pad(hour, 2)):\(pad(minute, 2)):\(pad(second, 2))"
            if nanosecond != 0 {
                var f = pad(nanosecond, 9)
                while f.hasSuffix("0") { f.removeLast() }
                s += "." + f
            }
        }
        if let o = offsetMinutes {
            if o == 0 { s += "Z" } else { s += (o < 0 ? "-" : "+") + "\(pad(abs(o) / 60, 2)):\(pad(abs(o) % 60, 2))" }
        }
        return s
    }
}

/// A TOML syntax error: the line, the key being defined when there is one, and what is
/// wrong.
public struct TOMLError: Error, Equatable, Sendable, CustomStringConvertible {
    /// 1-based.
    public var line: Int
    /// The dotted key (or table name) the error is about, when known.
    public var key: String?
    public var problem: String

    public init(line: Int, key: String?, problem: String) {
        self.line = line; self.key = key; self.problem = problem
    }

    public var description: String { "\(line): " + (key.map { "\($0): " } ?? "") + problem }
}
