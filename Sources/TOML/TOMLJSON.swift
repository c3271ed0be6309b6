/// The toml-test JSON form of a document: tables are objects, arrays are arrays, and each
/// scalar is `{"type": ..., "value": ...}` with its value as a string. The differential
/// test compares this with the same form made from Python's `tomllib`.
///
/// Floats are written as their IEEE 754 bit pattern (decimal), or `nan`, so no printing
/// convention can hide or invent a difference; date-times as RFC 3339 with the fraction
/// cut to microseconds (what `tomllib` keeps).
public enum TOMLJSON {
    public static func encode(_ table: TOMLTable) -> String {
        var out = ""
        write(.table(table), into: &out)
        return out
    }

    static func write(_ v: TOMLValue, into out: inout String) {
        switch v {
        case .table(let t):
            out += "{"
            for (i, e) in t.entries.enumerated() {
                if i > 0 { out += "," }
                string(e.key, into: &out)
                out += ":"
                write(e.value, into: &out)
            }
            out += "}"
        case .array(let items):
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += "," }
                write(item, into: &out)
            }
            out += "]"
        case .string(let s): tagged("string", s, into: &out)
        case .integer(let i): tagged("integer", String(i), into: &out)
        case .float(let f): tagged("float", f.isNaN ? "nan" : String(f.bitPattern), into: &out)
        case .boolean(let b): tagged("bool", b ? "true" : "false", into: &out)
        case .dateTime(let d):
            let kind: String
            switch (d.hasDate, d.hasTime, d.offsetMinutes != nil) {
            case (true, true, true): kind = "datetime"
            case (true, true, false): kind = "datetime-local"
            case (true, false, _): kind = "date-local"
            default: kind = "time-local"
            }
            tagged(kind, microsecondForm(d), into: &out)
        }
    }

    /// `YYYY-MM-DDTHH:MM:SS.ffffff+HH:MM`, each part present as the kind has it.
    static func microsecondForm(_ d: TOMLDateTime) -> String {
        func pad(_ v: Int, _ n: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, n - s.count)) + s
        }
        var s = ""
        if d.hasDate { s += "\(pad(d.year, 4))-\(pad(d.month, 2))-\(pad(d.day, 2))" }
        if d.hasDate && d.hasTime { s += "T" }
        if d.hasTime { s += "\(pad(d.hour, 2)):\(pad(d.minute, 2)):\(pad(d.second, 2)).\(pad(d.nanosecond / 1000, 6))" }
        if let o = d.offsetMinutes { s += (o < 0 ? "-" : "+") + "\(pad(abs(o) / 60, 2)):\(pad(abs(o) % 60, 2))" }
        return s
    }

    static func tagged(_ type: String, _ value: String, into out: inout String) {
        out += "{\"type\":\"\(type)\",\"value\":"
        string(value, into: &out)
        out += "}"
    }

    static func string(_ s: String, into out: inout String) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 || u.value == 0x7F {
                    let h = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        out += "\""
    }
}
