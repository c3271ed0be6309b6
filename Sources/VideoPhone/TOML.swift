/// A TOML value, as far as the config file needs: strings, integers, floats, booleans
/// and single-line arrays of those.
public enum TOMLValue: Equatable, Sendable {
    case string(String)
    case integer(Int)
    case float(Double)
    case boolean(Bool)
    case array([TOMLValue])

    var typeName: String {
        switch self {
        case .string: "string"
        case .integer: "integer"
        case .float: "float"
        case .boolean: "boolean"
        case .array: "array"
        }
    }
}

/// One `key = value` line, with where it came from so errors can name it.
public struct TOMLEntry: Sendable {
    /// The table the key is in (`video`, `peer`), empty at the top.
    public var table: String
    /// For `[[table]]` arrays, which element (0-based).
    public var tableIndex: Int
    public var key: String
    public var value: TOMLValue
    public var line: Int
}

/// A config error: the file, the line, the key and what is wrong.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public var file: String
    public var line: Int?
    public var key: String?
    public var problem: String

    public init(file: String, line: Int?, key: String?, problem: String) {
        self.file = file; self.line = line; self.key = key; self.problem = problem
    }

    public var description: String {
        var s = file
        if let line { s += ":\(line)" }
        s += ": "
        if let key { s += "\(key): " }
        return s + problem
    }
}

/// A small TOML reader (the subset a provisioning file uses: tables, arrays of tables,
/// basic and literal strings, integers, floats, booleans, single-line arrays, comments).
/// It keeps line numbers so every error can name its line.
public enum TOMLReader {
    public static func parse(_ text: String, file: String) throws(ConfigError) -> [TOMLEntry] {
        var entries: [TOMLEntry] = []
        var table = ""
        var arrayCounts: [String: Int] = [:]
        var index = 0
        var seen = Set<String>()
        var lineNo = 0
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNo += 1
            let line = stripComment(Substring(rawLine)).trimmed
            if line.isEmpty { continue }
            if line.hasPrefix("[[") {
                guard line.hasSuffix("]]") else { throw ConfigError(file: file, line: lineNo, key: nil, problem: "unterminated table header '\(line)'") }
                table = line.dropFirst(2).dropLast(2).trimmingCharacters
                guard isBareKey(table) else { throw ConfigError(file: file, line: lineNo, key: nil, problem: "bad table name '\(table)'") }
                index = arrayCounts[table, default: 0]
                arrayCounts[table] = index + 1
                continue
            }
            if line.hasPrefix("[") {
                guard line.hasSuffix("]") else { throw ConfigError(file: file, line: lineNo, key: nil, problem: "unterminated table header '\(line)'") }
                table = line.dropFirst().dropLast().trimmingCharacters
                guard isBareKey(table) else { throw ConfigError(file: file, line: lineNo, key: nil, problem: "bad table name '\(table)'") }
                guard arrayCounts[table] == nil, !seen.contains("[\(table)]") else {
                    throw ConfigError(file: file, line: lineNo, key: nil, problem: "table [\(table)] defined twice")
                }
                seen.insert("[\(table)]")
                index = 0
                continue
            }
            guard let eq = line.firstIndex(of: "=") else {
                throw ConfigError(file: file, line: lineNo, key: nil, problem: "expected 'key = value', got '\(line.prefix(40))'")
            }
            let key = line[..<eq].trimmingCharacters
            guard isBareKey(key) else { throw ConfigError(file: file, line: lineNo, key: nil, problem: "bad key '\(key)'") }
            let qualified = "\(table)#\(index).\(key)"
            guard !seen.contains(qualified) else {
                throw ConfigError(file: file, line: lineNo, key: displayKey(table, key), problem: "key defined twice")
            }
            seen.insert(qualified)
            var rest = Substring(line[line.index(after: eq)...]).trimmed
            let value: TOMLValue
            do {
                value = try parseValue(&rest)
            } catch {
                throw ConfigError(file: file, line: lineNo, key: displayKey(table, key), problem: error.problem)
            }
            guard rest.trimmed.isEmpty else {
                throw ConfigError(file: file, line: lineNo, key: displayKey(table, key), problem: "unexpected text after value: '\(rest.prefix(20))'")
            }
            entries.append(TOMLEntry(table: table, tableIndex: index, key: key, value: value, line: lineNo))
        }
        return entries
    }

    static func displayKey(_ table: String, _ key: String) -> String { table.isEmpty ? key : "\(table).\(key)" }

    struct ValueError: Error { var problem: String }

    static func parseValue(_ s: inout Substring) throws(ValueError) -> TOMLValue {
        guard let c = s.first else { throw ValueError(problem: "missing value") }
        if c == "\"" {
            s = s.dropFirst()
            var out = ""
            while let ch = s.first {
                s = s.dropFirst()
                if ch == "\"" { return .string(out) }
                if ch == "\\" {
                    guard let e = s.first else { break }
                    s = s.dropFirst()
                    switch e {
                    case "n": out.append("\n")
                    case "t": out.append("\t")
                    case "\"": out.append("\"")
                    case "\\": out.append("\\")
                    default: throw ValueError(problem: "unknown escape '\\\(e)' in string")
                    }
                } else {
                    out.append(ch)
                }
            }
            throw ValueError(problem: "unterminated string")
        }
        if c == "'" {
            s = s.dropFirst()
            guard let end = s.firstIndex(of: "'") else { throw ValueError(problem: "unterminated string") }
            let v = String(s[..<end])
            s = s[s.index(after: end)...]
            return .string(v)
        }
        if c == "[" {
            s = s.dropFirst()
            var items: [TOMLValue] = []
            while true {
                s = s.trimmed
                if s.first == "]" { s = s.dropFirst(); return .array(items) }
                items.append(try parseValue(&s))
                s = s.trimmed
                if s.first == "," { s = s.dropFirst(); continue }
                if s.first == "]" { s = s.dropFirst(); return .array(items) }
                throw ValueError(problem: "expected ',' or ']' in array")
            }
        }
        let token = s.prefix { $0 != "," && $0 != "]" && $0 != " " && $0 != "\t" }
        s = s.dropFirst(token.count)
        if token == "true" { return .boolean(true) }
        if token == "false" { return .boolean(false) }
        let digits = token.replacingUnderscores
        if let i = Int(digits) { return .integer(i) }
        if let d = Double(digits) { return .float(d) }
        throw ValueError(problem: "cannot read value '\(token)' (strings need quotes)")
    }

    static func stripComment(_ line: Substring) -> Substring {
        var inBasic = false, inLiteral = false, escaped = false
        for i in line.indices {
            let ch = line[i]
            if escaped { escaped = false; continue }
            if inBasic && ch == "\\" { escaped = true; continue }
            if ch == "\"" && !inLiteral { inBasic.toggle() }
            if ch == "'" && !inBasic { inLiteral.toggle() }
            if ch == "#" && !inBasic && !inLiteral { return line[..<i] }
        }
        return line
    }

    static func isBareKey(_ k: String) -> Bool {
        !k.isEmpty && k.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" }
    }
}

extension Substring {
    var trimmed: Substring {
        var s = self
        while let f = s.first, f == " " || f == "\t" || f == "\r" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\r" { s = s.dropLast() }
        return s
    }
    var trimmingCharacters: String { String(trimmed) }
    var replacingUnderscores: String { String(filter { $0 != "_" }) }
}
