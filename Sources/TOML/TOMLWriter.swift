/// Writes TOML text: what `videophoned --print-config` and the pairing drop-ins print.
public enum TOMLWriter {
    /// `s` as a TOML basic string, escaped so any TOML reader gets `s` back.
    public static func quoted(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default:
                if u.value < 0x20 || u.value == 0x7F {
                    let h = String(u.value, radix: 16, uppercase: true)
                    out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }

    /// A key, bare when it can be.
    public static func key(_ k: String) -> String {
        !k.isEmpty && k.utf8.allSatisfy({ ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F || $0 == 0x2D })
            ? k : quoted(k)
    }

    /// A value on one line (arrays and tables inline).
    public static func value(_ v: TOMLValue) -> String {
        switch v {
        case .string(let s): quoted(s)
        case .integer(let i): String(i)
        case .float(let f): f.isNaN ? "nan" : f.isInfinite ? (f < 0 ? "-inf" : "inf") : (f == f.rounded() && abs(f) < 1e15 ? String(format1: f) : "\(f)")
        case .boolean(let b): b ? "true" : "false"
        case .dateTime(let d): d.description
        case .array(let items): "[" + items.map(value).joined(separator: ", ") + "]"
        case .table(let t): "{" + t.entries.map { " \(key($0.key)) = \(value($0.value))" }.joined(separator: ",") + (t.isEmpty ? "}" : " }")
        }
    }
}

extension String {
    /// A whole float with its `.0`, so it reads back as a float.
    init(format1 f: Double) { self = String(Int(f)) + ".0" }
}
