@_exported import TOML

/// One `key = value` of the config, flattened from the TOML document with where it came
/// from, so every error can name its line.
public struct TOMLEntry: Sendable {
    /// The table the key is in (`video`, `peer`), empty at the top.
    public var table: String
    /// For arrays of tables (`[[peer]]`), which element (0-based).
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

/// Reads a config file as TOML 1.0 (``TOMLParser``) and flattens it into the two levels
/// the config has: `[table]` or `[[table]]`, then keys. Anything deeper stays a value
/// (an inline or sub-table), which the config layer then refuses by name.
public enum TOMLReader {
    public static func parse(_ text: String, file: String) throws(ConfigError) -> [TOMLEntry] {
        let document: TOMLTable
        do { document = try TOMLParser.parse(text) } catch {
            throw ConfigError(file: file, line: error.line, key: error.key, problem: error.problem)
        }
        var entries: [TOMLEntry] = []
        for (name, value, line) in document.entries {
            switch value {
            case .table(let t):
                for (key, v, l) in t.entries { entries.append(TOMLEntry(table: name, tableIndex: 0, key: key, value: v, line: l)) }
            case .array(let items) where !items.isEmpty && items.allSatisfy({ if case .table = $0 { true } else { false } }):
                for (i, item) in items.enumerated() {
                    guard case .table(let t) = item else { continue }
                    for (key, v, l) in t.entries { entries.append(TOMLEntry(table: name, tableIndex: i, key: key, value: v, line: l)) }
                }
            default:
                entries.append(TOMLEntry(table: "", tableIndex: 0, key: name, value: value, line: line))
            }
        }
        return entries
    }

    static func displayKey(_ table: String, _ key: String) -> String { table.isEmpty ? key : "\(table).\(key)" }
}
