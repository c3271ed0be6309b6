import Testing
@testable import TOML

@Suite struct TOMLParserTests {
    func parse(_ s: String) throws -> TOMLTable { try TOMLParser.parse(s) }

    /// What issue #15 listed as refused by the old reader, each read as any TOML tool reads it.
    @Test func whatTheOldReaderRefused() throws {
        let t = try parse("""
        stun = [
          "192.0.2.10:3478",   # the first
          "192.0.2.11:3478",
        ]
        name = "caf\\u00e9"
        "quoted key" = 1
        inline = { a = 1, b.c = "x" }
        dotted.key = true
        text = \"\"\"
        one
        two\\
           three\"\"\"
        hex = 0xFF
        when = 1979-05-27T07:32:00-08:00
        """)
        #expect(t["stun"] == .array([.string("192.0.2.10:3478"), .string("192.0.2.11:3478")]))
        #expect(t["name"] == .string("café"))
        #expect(t["quoted key"] == .integer(1))
        guard case .table(let inline) = t["inline"], case .table(let b) = inline["b"] else { Issue.record("inline"); return }
        #expect(inline["a"] == .integer(1) && b["c"] == .string("x"))
        guard case .table(let dotted) = t["dotted"] else { Issue.record("dotted"); return }
        #expect(dotted["key"] == .boolean(true))
        #expect(t["text"] == .string("one\ntwothree"))
        #expect(t["hex"] == .integer(255))
        guard case .dateTime(let d) = t["when"] else { Issue.record("date"); return }
        #expect(d.description == "1979-05-27T07:32:00-08:00")
        #expect(t.line(of: "name") == 5 && t.line(of: "hex") == 13)
    }

    @Test func numbers() throws {
        let t = try parse("a = +1_000\nb = -0\nc = 0o17\nd = 0b101\ne = 6.02e+23\nf = -inf\ng = nan\nh = 1E2\ni = -9223372036854775808\nj = 3.14_15")
        #expect(t["a"] == .integer(1000) && t["b"] == .integer(0) && t["c"] == .integer(15) && t["d"] == .integer(5))
        #expect(t["e"] == .float(6.02e23) && t["f"] == .float(-.infinity) && t["g"] == .float(.nan) && t["h"] == .float(100))
        #expect(t["i"] == .integer(Int.min) && t["j"] == .float(3.1415))
    }

    @Test func tablesAndArraysOfTables() throws {
        let t = try parse("[a.b]\nx = 1\n[a]\ny = 2\n[[p]]\nn = 1\n[p.q]\nz = 3\n[[p]]\nn = 2\n")
        guard case .table(let a) = t["a"], case .array(let p) = t["p"] else { Issue.record("shape"); return }
        #expect(a["y"] == .integer(2) && p.count == 2)
        guard case .table(let p0) = p[0] else { return }
        #expect(p0.definedAt == 5)
    }

    @Test func crlfAndStrings() throws {
        let t = try parse("a = 'C:\\\\x'\r\nb = '''\r\nraw ''\r\n'''\r\nc = \"tab\\there\"\r\nd = \"\"\"q\"\"\"\"\"\n")
        #expect(t["a"] == .string("C:\\\\x") && t["b"] == .string("raw ''\n") && t["c"] == .string("tab\there") && t["d"] == .string("q\"\""))
    }

    /// Each mistake names its line (and its key when there is one).
    @Test(arguments: [
        ("a = 1\na = 2\n", "2: a: key defined twice"),
        ("[t]\n[t]\n", "2: t: table [t] defined twice"),
        ("a = 1\n[a]\n", "2: a: [a] is already a value"),
        ("x = { a = 1 }\n[x]\n", "2: x: table [x] defined twice"),
        ("[f]\napple.color = 1\n[f.apple]\n", "3: f.apple: table [f.apple] defined twice"),
        ("a = 01\n", "1: a: cannot read value '01'"),
        ("a = 0x\n", "1: a: cannot read value"),
        ("a = 9223372036854775808\n", "1: a: integer 9223372036854775808 does not fit in 64 bits"),
        ("a = \"\\x41\"\n", "1: a: unknown escape '\\x'"),
        ("a = \"\\uD800\"\n", "is not a Unicode scalar value"),
        ("a = 2021-02-29\n", "1: a: 2021-02-29 is not a day of the calendar"),
        ("a = { b = 1, }\n", "1: a: expected a key"),
        ("a = [1 2]\n", "1: a: expected ',' or ']'"),
        ("a = 1 b = 2\n", "1: a: expected the end of the line"),
        ("a = \"x\ny\"\n", "1: a: unterminated string"),
        ("a = 1\r\n\rb = 2\n", "2: expected 'key = value'"),
        ("[[a]]\n[a]\n", "2: a: table [a] defined twice"),
        ("a = []\n[[a]]\n", "2: a: cannot add to a"),
        ("# bad \u{7F}\n", "1: control character U+7F in a comment"),
    ])
    func mistakes(text: String, expected: String) {
        #expect { try TOMLParser.parse(text) } throws: { e in
            let d = "\(e)"
            if !d.contains(expected) { Issue.record("got '\(d)', expected '\(expected)'") }
            return true
        }
    }

    @Test func deepNestingIsRefusedNotACrash() {
        #expect(throws: TOMLError.self) { try TOMLParser.parse("a = " + String(repeating: "[", count: 10_000)) }
    }
}
