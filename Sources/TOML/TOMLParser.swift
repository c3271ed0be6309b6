/// A TOML 1.0 reader (https://toml.io/en/v1.0.0): every value type, every string form,
/// dotted and quoted keys, inline tables, arrays of tables, comments, CRLF. Each key keeps
/// the line that defined it, and each error names its line and, when there is one, its key.
///
/// The table rules (which tables a header or a dotted key may open again) follow the
/// specification as the reference implementations read it; the differential test
/// (`Tests/TOML/difftest.py`) holds this parser to Python's `tomllib` on generated documents.
public enum TOMLParser {
    /// Parses a whole document. Nesting deeper than 200 arrays or inline tables is refused.
    public static func parse(_ text: String) throws(TOMLError) -> TOMLTable {
        var p = Parser(Array(text.utf8))
        return try p.document()
    }

    /// Parses UTF-8 bytes (refused when not valid UTF-8).
    public static func parse(bytes: [UInt8]) throws(TOMLError) -> TOMLTable {
        guard String(validating: bytes, as: UTF8.self) != nil else {
            throw TOMLError(line: 1, key: nil, problem: "not valid UTF-8")
        }
        var p = Parser(bytes)
        return try p.document()
    }
}

// MARK: - The tree under construction

/// A table being built: children in order, with the line that defined each.
final class BuildTable {
    var keys: [String] = []
    var children: [String: BuildChild] = [:]
    var lines: [String: Int] = [:]
    var definedAt: Int

    init(line: Int) { definedAt = line }

    func add(_ key: String, _ child: BuildChild, line: Int) {
        if children[key] == nil { keys.append(key) }
        children[key] = child
        lines[key] = line
    }

    func freeze() -> TOMLTable {
        var t = TOMLTable()
        t.definedAt = definedAt
        for k in keys {
            let v: TOMLValue
            switch children[k]! {
            case .value(let x): v = x
            case .table(let n): v = .table(n.freeze())
            case .tableArray(let list): v = .array(list.map { .table($0.freeze()) })
            }
            t.set(k, v, line: lines[k] ?? definedAt)
        }
        return t
    }
}

enum BuildChild {
    /// A value written in place (scalars, arrays, inline tables): never extended later.
    case value(TOMLValue)
    /// A table made by a header or a dotted key.
    case table(BuildTable)
    /// `[[name]]` elements.
    case tableArray([BuildTable])
}

/// What the document has said about each table path: declared by a header
/// (`explicit`), or written in place and so closed (`frozen`, for everything under it).
struct TableFlags {
    final class Node {
        var explicit = false
        var frozenBelow = false
        var nested: [String: Node] = [:]
    }
    var root = Node()
    /// Tables opened by dotted keys in the current section: closed when the next header comes.
    var pending: [[String]] = []

    private func node(_ path: [String], create: Bool) -> Node? {
        var n = root
        for k in path {
            if let next = n.nested[k] { n = next; continue }
            guard create else { return nil }
            let next = Node()
            n.nested[k] = next
            n = next
        }
        return n
    }

    mutating func setExplicit(_ path: [String]) { node(path, create: true)!.explicit = true }
    mutating func setFrozen(_ path: [String]) { node(path, create: true)!.frozenBelow = true }
    mutating func finalizePending() {
        for p in pending { setExplicit(p) }
        pending.removeAll()
    }
    /// A new `[[path]]` element: what was said about the previous element's insides no
    /// longer holds.
    mutating func reset(_ path: [String]) {
        guard let last = path.last, let parent = node(Array(path.dropLast()), create: false) else { return }
        parent.nested[last] = nil
    }

    /// Declared by a header (or, in an earlier section, opened by a dotted key).
    func isExplicit(_ path: [String]) -> Bool {
        guard !path.isEmpty, let n = node(path, create: false) else { return false }
        return n.explicit
    }

    /// Written in place, or inside something written in place.
    func isFrozen(_ path: [String]) -> Bool {
        guard !path.isEmpty else { return false }
        var n = root
        for k in path {
            guard let next = n.nested[k] else { return false }
            if next.frozenBelow { return true }
            n = next
        }
        return false
    }
}

// MARK: - The parser

private let LF: UInt8 = 0x0A, TAB: UInt8 = 0x09, SPACE: UInt8 = 0x20
private let QUOTE: UInt8 = 0x22, APOS: UInt8 = 0x27, HASH: UInt8 = 0x23, BACKSLASH: UInt8 = 0x5C
private let LBRACKET: UInt8 = 0x5B, RBRACKET: UInt8 = 0x5D, LBRACE: UInt8 = 0x7B, RBRACE: UInt8 = 0x7D
private let EQUALS: UInt8 = 0x3D, COMMA: UInt8 = 0x2C, DOT: UInt8 = 0x2E

@inline(__always) private func isBareKeyByte(_ c: UInt8) -> Bool {
    (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || c == 0x5F || c == 0x2D
}
@inline(__always) private func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
/// Control characters TOML allows nowhere but where it says (tab is fine everywhere).
@inline(__always) private func isControl(_ c: UInt8) -> Bool { (c < 0x20 && c != TAB) || c == 0x7F }

struct Parser {
    var src: [UInt8]
    var pos = 0
    /// Offsets of every line feed, for line numbers.
    var newlines: [Int] = []
    var root: BuildTable
    var flags = TableFlags()
    var header: [String] = []
    /// The key being defined, for error messages.
    var currentKey: String?
    var depth = 0
    static let maxDepth = 200

    init(_ bytes: [UInt8]) {
        // CRLF is a newline; a lone CR is refused later like any other control character.
        var s: [UInt8] = []
        s.reserveCapacity(bytes.count)
        var i = 0
        while i < bytes.count {
            if bytes[i] == 0x0D && i + 1 < bytes.count && bytes[i + 1] == LF { i += 1; continue }
            if bytes[i] == LF { newlines.append(s.count) }
            s.append(bytes[i])
            i += 1
        }
        src = s
        root = BuildTable(line: 1)
    }

    func line(at p: Int) -> Int {
        var lo = 0, hi = newlines.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if newlines[mid] < p { lo = mid + 1 } else { hi = mid }
        }
        return lo + 1
    }

    func fail(_ problem: String, at p: Int? = nil) -> TOMLError {
        TOMLError(line: line(at: min(p ?? pos, src.count)), key: currentKey, problem: problem)
    }

    func peek(_ offset: Int = 0) -> UInt8? {
        let i = pos + offset
        return i < src.count ? src[i] : nil
    }

    func describe(_ c: UInt8?) -> String {
        guard let c else { return "the end of the file" }
        if c == LF { return "the end of the line" }
        if isControl(c) { return "control character U+\(String(c, radix: 16, uppercase: true))" }
        if c >= 0x80 { return "'\(String(decoding: src[pos..<min(src.count, pos + 4)], as: UTF8.self).prefix(1))'" }
        return "'\(Character(Unicode.Scalar(c)))'"
    }

    mutating func skipWhitespace() {
        while pos < src.count, src[pos] == SPACE || src[pos] == TAB { pos += 1 }
    }

    mutating func skipComment() throws(TOMLError) {
        guard peek() == HASH else { return }
        pos += 1
        while pos < src.count, src[pos] != LF {
            if isControl(src[pos]) { throw fail("\(describe(src[pos])) in a comment") }
            pos += 1
        }
    }

    /// Whitespace, newlines and comments, as arrays allow between their values.
    mutating func skipArraySpace() throws(TOMLError) {
        while true {
            let before = pos
            while pos < src.count, src[pos] == SPACE || src[pos] == TAB || src[pos] == LF { pos += 1 }
            try skipComment()
            if pos == before { return }
        }
    }

    // MARK: Document

    mutating func document() throws(TOMLError) -> TOMLTable {
        while true {
            skipWhitespace()
            guard let c = peek() else { break }
            if c == LF { pos += 1; continue }
            currentKey = nil
            if isBareKeyByte(c) || c == QUOTE || c == APOS {
                try keyValueRule()
                skipWhitespace()
            } else if c == LBRACKET {
                flags.finalizePending()
                if peek(1) == LBRACKET { try arrayTableRule() } else { try tableRule() }
                skipWhitespace()
            } else if c != HASH {
                throw fail("expected 'key = value', a [table] or a comment, got \(describe(c))")
            }
            try skipComment()
            guard let end = peek() else { break }
            guard end == LF else { throw fail("expected the end of the line after the \(currentKey == nil ? "statement" : "value"), got \(describe(end))") }
            pos += 1
        }
        return root.freeze()
    }

    static func display(_ path: [String]) -> String {
        path.map { part in
            !part.isEmpty && part.utf8.allSatisfy(isBareKeyByte) ? part : "\"" + part.replacingQuotes + "\""
        }.joined(separator: ".")
    }

    mutating func keyValueRule() throws(TOMLError) {
        let startLine = line(at: pos)
        let key = try parseKey()
        currentKey = Parser.display(header + key)
        guard peek() == EQUALS else { throw fail("expected '=' after the key, got \(describe(peek()))") }
        pos += 1
        skipWhitespace()
        let value = try parseValue()
        let parent = header + key.dropLast()
        for i in 1..<key.count {
            let path = header + key[..<i]
            if flags.isExplicit(path) { throw fail("cannot add to table [\(Parser.display(path))] with a dotted key: it is defined elsewhere", at: pos - 1) }
            flags.pending.append(path)
        }
        if flags.isFrozen(parent) { throw fail("cannot add to \(Parser.display(parent)): it was written in place (inline table or array)", at: pos - 1) }
        guard let table = nest(parent, accessLists: true, line: startLine) else {
            throw fail("cannot define a key under \(Parser.display(parent)): it is not a table", at: pos - 1)
        }
        let stem = key[key.count - 1]
        if table.children[stem] != nil { throw fail("key defined twice", at: pos - 1) }
        if case .array = value { flags.setFrozen(header + key) }
        if case .table = value { flags.setFrozen(header + key) }
        table.add(stem, .value(value), line: startLine)
    }

    mutating func tableRule() throws(TOMLError) {
        let startLine = line(at: pos)
        pos += 1
        skipWhitespace()
        let key = try parseKey()
        currentKey = Parser.display(key)
        if flags.isExplicit(key) || flags.isFrozen(key) { throw fail("table [\(currentKey!)] defined twice") }
        flags.setExplicit(key)
        guard let t = nest(key, accessLists: true, line: startLine) else {
            throw fail("[\(currentKey!)] is already a value, not a table")
        }
        t.definedAt = startLine
        guard peek() == RBRACKET else { throw fail("expected ']' to end the table header, got \(describe(peek()))") }
        pos += 1
        header = key
    }

    mutating func arrayTableRule() throws(TOMLError) {
        let startLine = line(at: pos)
        pos += 2
        skipWhitespace()
        let key = try parseKey()
        currentKey = Parser.display(key)
        if flags.isFrozen(key) { throw fail("cannot add to \(currentKey!): it was written in place (inline table or array)") }
        flags.reset(key)
        flags.setExplicit(key)
        guard let parent = nest(Array(key.dropLast()), accessLists: true, line: startLine) else {
            throw fail("cannot define [[\(currentKey!)]]: a parent is not a table")
        }
        let stem = key[key.count - 1]
        let element = BuildTable(line: startLine)
        switch parent.children[stem] {
        case nil: parent.add(stem, .tableArray([element]), line: startLine)
        case .tableArray(let list): parent.children[stem] = .tableArray(list + [element])
        default: throw fail("[[\(currentKey!)]] is already a table or value, not an array of tables")
        }
        guard peek() == RBRACKET, peek(1) == RBRACKET else { throw fail("expected ']]' to end the array-of-tables header, got \(describe(peek()))") }
        pos += 2
        header = key
    }

    /// The table at `path` under the root, made if missing; the last element of an array
    /// of tables when `accessLists`. Nil when something on the way is not a table.
    func nest(_ path: [String], accessLists: Bool, line: Int, in start: BuildTable? = nil) -> BuildTable? {
        var t = start ?? root
        for k in path {
            switch t.children[k] {
            case nil:
                let n = BuildTable(line: line)
                t.add(k, .table(n), line: line)
                t = n
            case .table(let n): t = n
            case .tableArray(let list):
                guard accessLists, let last = list.last else { return nil }
                t = last
            case .value: return nil
            }
        }
        return t
    }

    // MARK: Keys

    mutating func parseKey() throws(TOMLError) -> [String] {
        var parts = [try keyPart()]
        skipWhitespace()
        while peek() == DOT {
            pos += 1
            skipWhitespace()
            parts.append(try keyPart())
            skipWhitespace()
        }
        return parts
    }

    mutating func keyPart() throws(TOMLError) -> String {
        guard let c = peek() else { throw fail("expected a key, got the end of the file") }
        if isBareKeyByte(c) {
            let start = pos
            while pos < src.count, isBareKeyByte(src[pos]) { pos += 1 }
            return String(decoding: src[start..<pos], as: UTF8.self)
        }
        if c == QUOTE { return try basicString(multiline: false) }
        if c == APOS { return try literalString() }
        throw fail("expected a key (letters, digits, '_', '-', or a quoted key), got \(describe(c))")
    }

    // MARK: Values

    mutating func parseValue() throws(TOMLError) -> TOMLValue {
        guard let c = peek() else { throw fail("missing value") }
        switch c {
        case QUOTE:
            if peek(1) == QUOTE && peek(2) == QUOTE { return .string(try multilineString(literal: false)) }
            return .string(try basicString(multiline: false))
        case APOS:
            if peek(1) == APOS && peek(2) == APOS { return .string(try multilineString(literal: true)) }
            return .string(try literalString())
        case LBRACKET:
            return try array()
        case LBRACE:
            return try inlineTable()
        case LF:
            throw fail("missing value")
        default:
            return try scalar()
        }
    }

    mutating func enter() throws(TOMLError) {
        depth += 1
        if depth > Parser.maxDepth { throw fail("arrays and inline tables nested deeper than \(Parser.maxDepth)") }
    }

    mutating func array() throws(TOMLError) -> TOMLValue {
        try enter()
        defer { depth -= 1 }
        pos += 1
        var items: [TOMLValue] = []
        try skipArraySpace()
        if peek() == RBRACKET { pos += 1; return .array(items) }
        while true {
            items.append(try parseValue())
            try skipArraySpace()
            let c = peek()
            if c == RBRACKET { pos += 1; return .array(items) }
            guard c == COMMA else { throw fail("expected ',' or ']' in the array, got \(describe(c))") }
            pos += 1
            try skipArraySpace()
            if peek() == RBRACKET { pos += 1; return .array(items) }
        }
    }

    mutating func inlineTable() throws(TOMLError) -> TOMLValue {
        try enter()
        defer { depth -= 1 }
        let startLine = line(at: pos)
        pos += 1
        let table = BuildTable(line: startLine)
        var local = TableFlags()
        skipWhitespace()
        if peek() == RBRACE { pos += 1; return .table(table.freeze()) }
        while true {
            let keyLine = line(at: pos)
            let key = try parseKey()
            guard peek() == EQUALS else { throw fail("expected '=' after the key in the inline table, got \(describe(peek()))") }
            pos += 1
            skipWhitespace()
            let value = try parseValue()
            if local.isFrozen(key) { throw fail("cannot add to \(Parser.display(Array(key.dropLast()))): it was written in place") }
            guard let nest = nest(Array(key.dropLast()), accessLists: false, line: keyLine, in: table) else {
                throw fail("cannot define \(Parser.display(key)): \(Parser.display(Array(key.dropLast()))) is not a table")
            }
            let stem = key[key.count - 1]
            if nest.children[stem] != nil { throw fail("key \(Parser.display(key)) defined twice in the inline table") }
            nest.add(stem, .value(value), line: keyLine)
            skipWhitespace()
            let c = peek()
            if c == RBRACE { pos += 1; return .table(table.freeze()) }
            guard c == COMMA else { throw fail("expected ',' or '}' in the inline table (which stays on one line), got \(describe(c))") }
            switch value {
            case .array, .table: local.setFrozen(key)
            default: break
            }
            pos += 1
            skipWhitespace()
        }
    }

    // MARK: Strings

    mutating func literalString() throws(TOMLError) -> String {
        pos += 1
        let start = pos
        while true {
            guard let c = peek() else { throw fail("unterminated string") }
            if c == APOS { break }
            if c == LF { throw fail("unterminated string (a literal string ends on its line)") }
            if isControl(c) { throw fail("\(describe(c)) in a string") }
            pos += 1
        }
        defer { pos += 1 }
        return String(decoding: src[start..<pos], as: UTF8.self)
    }

    mutating func multilineString(literal: Bool) throws(TOMLError) -> String {
        let delim = literal ? APOS : QUOTE
        pos += 3
        if peek() == LF { pos += 1 }
        var result: String
        if literal {
            let start = pos
            while true {
                guard let c = peek() else { throw fail("unterminated multi-line string") }
                if c == APOS && peek(1) == APOS && peek(2) == APOS { break }
                if isControl(c) && c != LF { throw fail("\(describe(c)) in a string") }
                pos += 1
            }
            result = String(decoding: src[start..<pos], as: UTF8.self)
            pos += 3
        } else {
            result = try basicString(multiline: true)
        }
        // Up to two quotes may sit right before the closing three.
        for _ in 0..<2 {
            guard peek() == delim else { break }
            pos += 1
            result.append(Character(Unicode.Scalar(delim)))
        }
        return result
    }

    /// A basic string from its opening quote (single-line), or from the first character
    /// after the opening `"""` and its trimmed newline (multi-line); ends past the closing quotes.
    mutating func basicString(multiline: Bool) throws(TOMLError) -> String {
        if !multiline { pos += 1 }
        var out: [UInt8] = []
        while true {
            guard let c = peek() else { throw fail(multiline ? "unterminated multi-line string" : "unterminated string") }
            if c == QUOTE {
                if !multiline { pos += 1; break }
                if peek(1) == QUOTE && peek(2) == QUOTE { pos += 3; break }
                out.append(c); pos += 1; continue
            }
            if c == BACKSLASH {
                try escape(into: &out, multiline: multiline)
                continue
            }
            if c == LF && !multiline { throw fail("unterminated string (use \"\"\" for a string over several lines)") }
            if isControl(c) && c != LF { throw fail("\(describe(c)) in a string (escape it)") }
            out.append(c)
            pos += 1
        }
        return String(decoding: out, as: UTF8.self)
    }

    mutating func escape(into out: inout [UInt8], multiline: Bool) throws(TOMLError) {
        let e = peek(1)
        if multiline, let e, e == SPACE || e == TAB || e == LF {
            // A line-ending backslash: the newline and the whitespace after it go.
            pos += 1
            if e != LF {
                skipWhitespace()
                guard let c = peek() else { return }
                guard c == LF else { throw fail("a '\\' followed by spaces must end the line") }
            }
            while pos < src.count, src[pos] == SPACE || src[pos] == TAB || src[pos] == LF { pos += 1 }
            return
        }
        pos += 2
        switch e {
        case 0x62: out.append(0x08)            // \b
        case 0x74: out.append(TAB)             // \t
        case 0x6E: out.append(LF)              // \n
        case 0x66: out.append(0x0C)            // \f
        case 0x72: out.append(0x0D)            // \r
        case QUOTE: out.append(QUOTE)
        case BACKSLASH: out.append(BACKSLASH)
        case 0x75, 0x55:                       // \uXXXX, \UXXXXXXXX
            let n = e == 0x75 ? 4 : 8
            guard pos + n <= src.count else { throw fail("\\\(e == 0x75 ? "u" : "U") needs \(n) hex digits") }
            var v: UInt32 = 0
            for i in 0..<n {
                guard let d = hexValue(src[pos + i]) else { throw fail("\\\(e == 0x75 ? "u" : "U") needs \(n) hex digits") }
                v = v << 4 | UInt32(d)
            }
            pos += n
            guard let scalar = Unicode.Scalar(v) else {
                throw fail("escape U+\(String(v, radix: 16, uppercase: true)) is not a Unicode scalar value")
            }
            out += Array(String(Character(scalar)).utf8)
        default:
            pos -= 1
            throw fail("unknown escape '\\\(e.map { $0 < 0x80 && !isControl($0) ? String(Character(Unicode.Scalar($0))) : "…" } ?? "")' in a string")
        }
    }

    // MARK: Numbers, booleans, dates and times

    /// Reads the bare word a scalar is made of (and a date's ` HH:` time after a space),
    /// then decides what it is: it must be exactly one of the forms TOML has.
    mutating func scalar() throws(TOMLError) -> TOMLValue {
        let start = pos
        func isWordByte(_ c: UInt8) -> Bool { isBareKeyByte(c) || c == 0x2B || c == DOT || c == 0x3A }
        while pos < src.count, isWordByte(src[pos]) { pos += 1 }
        if pos - start == 10, src[start + 4] == 0x2D, peek() == SPACE,
           let a = peek(1), let b = peek(2), isDigit(a), isDigit(b), peek(3) == 0x3A {
            pos += 1
            while pos < src.count, isWordByte(src[pos]) { pos += 1 }
        }
        let word = Array(src[start..<pos])
        guard !word.isEmpty else { throw fail("expected a value, got \(describe(peek()))") }
        let text = String(decoding: word, as: UTF8.self)
        if text == "true" { return .boolean(true) }
        if text == "false" { return .boolean(false) }
        if let d = TOMLScalars.dateTime(word) { return .dateTime(d) }
        if let problem = TOMLScalars.dateProblem(word) { throw fail(problem, at: start) }
        if let i = TOMLScalars.integer(word) {
            guard let v = i else { throw fail("integer \(text) does not fit in 64 bits", at: start) }
            return .integer(v)
        }
        if let f = TOMLScalars.float(word) { return .float(f) }
        throw fail("cannot read value '\(text.prefix(40))' (strings need quotes)", at: start)
    }
}

func hexValue(_ c: UInt8) -> UInt8? {
    switch c {
    case 0x30...0x39: c - 0x30
    case 0x41...0x46: c - 0x41 + 10
    case 0x61...0x66: c - 0x61 + 10
    default: nil
    }
}

extension String {
    var replacingQuotes: String {
        var s = ""
        for ch in self { s += ch == "\"" ? "\\\"" : ch == "\\" ? "\\\\" : String(ch) }
        return s
    }
}
