/// A minimal JSON writer (the daemon avoids Foundation to stay small on the board).
public struct JSONWriter {
    private var out = ""
    private var needsComma = [false]

    public init() {}

    public var text: String { out }

    private mutating func separator() {
        if needsComma[needsComma.count - 1] { out += "," }
        needsComma[needsComma.count - 1] = true
    }

    public mutating func beginObject(_ key: String? = nil) {
        separator()
        if let key { out += JSONWriter.quote(key) + ":" }
        out += "{"
        needsComma.append(false)
    }

    public mutating func endObject() { needsComma.removeLast(); out += "}" }

    public mutating func beginArray(_ key: String? = nil) {
        separator()
        if let key { out += JSONWriter.quote(key) + ":" }
        out += "["
        needsComma.append(false)
    }

    public mutating func endArray() { needsComma.removeLast(); out += "]" }

    public mutating func field(_ key: String, _ value: String?) {
        separator()
        out += JSONWriter.quote(key) + ":" + (value.map(JSONWriter.quote) ?? "null")
    }

    public mutating func field(_ key: String, _ value: Double?) {
        separator()
        out += JSONWriter.quote(key) + ":"
        if let v = value, v.isFinite {
            out += v == v.rounded() && abs(v) < 1e15 ? String(Int64(v)) : String((v * 1000).rounded() / 1000)
        } else {
            out += "null"
        }
    }

    /// A figure at full precision (no rounding to thousandths): energies of quiet signals.
    public mutating func field(_ key: String, exactly value: Double) {
        separator()
        out += JSONWriter.quote(key) + ":" + (value.isFinite ? String(value) : "null")
    }

    public mutating func field<I: BinaryInteger>(_ key: String, _ value: I) {
        separator()
        out += JSONWriter.quote(key) + ":" + String(value)
    }

    /// An array element.
    public mutating func value(_ value: String) {
        separator()
        out += JSONWriter.quote(value)
    }

    public mutating func field(_ key: String, _ value: Bool) {
        separator()
        out += JSONWriter.quote(key) + ":" + (value ? "true" : "false")
    }

    public static func quote(_ s: String) -> String {
        var r = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": r += "\\\""
            case "\\": r += "\\\\"
            case "\n": r += "\\n"
            case "\r": r += "\\r"
            case "\t": r += "\\t"
            default:
                if u.value < 0x20 {
                    let h = String(u.value, radix: 16)
                    r += "\\u" + String(repeating: "0", count: 4 - h.count) + h
                } else {
                    r.unicodeScalars.append(u)
                }
            }
        }
        return r + "\""
    }
}
