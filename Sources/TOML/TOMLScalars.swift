/// The bare scalar forms of TOML 1.0: integers (decimal, `0x`, `0o`, `0b`, with `_`
/// between digits), floats (fraction and/or exponent, `inf`, `nan`), and the four date
/// and time forms (RFC 3339, `T`, `t` or a space between date and time).
enum TOMLScalars {
    private static func digit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }

    /// Digits of `radix` with single underscores only between digits; nil if not that form.
    private static func digits(_ w: ArraySlice<UInt8>, radix: Int) -> [UInt8]? {
        guard let first = w.first, let last = w.last, first != 0x5F, last != 0x5F else { return nil }
        var out: [UInt8] = []
        var previousUnderscore = false
        for c in w {
            if c == 0x5F {
                if previousUnderscore { return nil }
                previousUnderscore = true
                continue
            }
            previousUnderscore = false
            guard let v = hexValue(c), Int(v) < radix else { return nil }
            out.append(v)
        }
        return out
    }

    /// `.some(value)` for an integer, `.some(nil)` for an integer outside 64 bits, nil
    /// when the word is not an integer.
    static func integer(_ w: [UInt8]) -> Int?? {
        let s = w[...]
        if s.count > 2, s[s.startIndex] == 0x30 {
            let radix: Int
            switch s[s.startIndex + 1] {
            case 0x78: radix = 16
            case 0x6F: radix = 8
            case 0x62: radix = 2
            default: radix = 0
            }
            if radix != 0 {
                guard let ds = digits(s.dropFirst(2), radix: radix) else { return nil }
                var v: UInt64 = 0
                for d in ds {
                    let (m, o1) = v.multipliedReportingOverflow(by: UInt64(radix))
                    let (a, o2) = m.addingReportingOverflow(UInt64(d))
                    if o1 || o2 { return .some(nil) }
                    v = a
                }
                return v > UInt64(Int.max) ? .some(nil) : .some(Int(v))
            }
        }
        var body = s
        var negative = false
        if let f = body.first, f == 0x2B || f == 0x2D { negative = f == 0x2D; body = body.dropFirst() }
        guard let ds = digits(body, radix: 10), let first = ds.first, body.allSatisfy({ digit($0) || $0 == 0x5F }) else { return nil }
        if first == 0 && ds.count > 1 { return nil }  // no leading zeros
        var v: UInt64 = 0
        for d in ds {
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(UInt64(d))
            if o1 || o2 { return .some(nil) }
            v = a
        }
        if negative {
            if v == UInt64(Int.max) + 1 { return .some(Int.min) }
            return v > UInt64(Int.max) ? .some(nil) : .some(-Int(v))
        }
        return v > UInt64(Int.max) ? .some(nil) : .some(Int(v))
    }

    /// A float, or nil when the word is not one.
    static func float(_ w: [UInt8]) -> Double? {
        var s = w[...]
        var sign = ""
        if let f = s.first, f == 0x2B || f == 0x2D { sign = f == 0x2D ? "-" : ""; s = s.dropFirst() }
        let text = String(decoding: s, as: UTF8.self)
        if text == "inf" { return sign == "-" ? -.infinity : .infinity }
        if text == "nan" { return sign == "-" ? -Double.nan : .nan }
        // int part: 0 or no leading zero
        let dot = s.firstIndex(of: 0x2E)
        let exp = s.firstIndex { $0 == 0x65 || $0 == 0x45 }
        guard dot != nil || exp != nil else { return nil }
        if let d = dot, let e = exp, e < d { return nil }
        let intEnd = dot ?? exp!
        let intPart = s[s.startIndex..<intEnd]
        guard let id = digits(intPart, radix: 10), intPart.allSatisfy({ digit($0) || $0 == 0x5F }) else { return nil }
        if id.first == 0 && id.count > 1 { return nil }
        var clean = sign + String(decoding: intPart.filter { $0 != 0x5F }, as: UTF8.self)
        if let d = dot {
            let fracEnd = exp ?? s.endIndex
            let frac = s[(d + 1)..<fracEnd]
            guard digits(frac, radix: 10) != nil, frac.allSatisfy({ digit($0) || $0 == 0x5F }) else { return nil }
            clean += "." + String(decoding: frac.filter { $0 != 0x5F }, as: UTF8.self)
        }
        if let e = exp {
            var ex = s[(e + 1)...]
            var esign = ""
            if let f = ex.first, f == 0x2B || f == 0x2D { esign = f == 0x2D ? "-" : "+"; ex = ex.dropFirst() }
            guard digits(ex, radix: 10) != nil, ex.allSatisfy({ digit($0) || $0 == 0x5F }) else { return nil }
            clean += "e" + esign + String(decoding: ex.filter { $0 != 0x5F }, as: UTF8.self)
        }
        return Double(clean)
    }

    // MARK: Dates and times

    private static func number(_ w: [UInt8], _ at: Int, _ n: Int) -> Int? {
        guard at + n <= w.count else { return nil }
        var v = 0
        for i in at..<(at + n) {
            guard digit(w[i]) else { return nil }
            v = v * 10 + Int(w[i] - 0x30)
        }
        return v
    }

    /// The shape `YYYY-MM-DD` at the start (the numbers unchecked).
    private static func dateShape(_ w: [UInt8]) -> (Int, Int, Int)? {
        guard w.count >= 10, w[4] == 0x2D, w[7] == 0x2D,
              let y = number(w, 0, 4), let m = number(w, 5, 2), let d = number(w, 8, 2) else { return nil }
        return (y, m, d)
    }

    static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: (year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)) ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    /// When the word has a date's shape but names a day that does not exist, what is wrong.
    static func dateProblem(_ w: [UInt8]) -> String? {
        guard let (y, m, d) = dateShape(w) else { return nil }
        if !(1...12).contains(m) { return "month \(m) does not exist" }
        if d < 1 || d > daysIn(month: m, year: y) { return "\(String(decoding: w.prefix(10), as: UTF8.self)) is not a day of the calendar" }
        return nil
    }

    /// `HH:MM:SS[.fraction]` at `at`; returns the time and where it ends.
    private static func time(_ w: [UInt8], at: Int, into d: inout TOMLDateTime) -> Int? {
        guard let h = number(w, at, 2), at + 2 < w.count, w[at + 2] == 0x3A,
              let mi = number(w, at + 3, 2), at + 5 < w.count, w[at + 5] == 0x3A,
              let s = number(w, at + 6, 2), h <= 23, mi <= 59, s <= 59 else { return nil }
        d.hour = h; d.minute = mi; d.second = s; d.hasTime = true
        var i = at + 8
        if i < w.count, w[i] == 0x2E {
            i += 1
            let start = i
            var nanos = 0, count = 0
            while i < w.count, digit(w[i]) {
                if count < 9 { nanos = nanos * 10 + Int(w[i] - 0x30); count += 1 }
                i += 1
            }
            guard i > start else { return nil }
            while count < 9 { nanos *= 10; count += 1 }
            d.nanosecond = nanos
        }
        return i
    }

    /// One of the four date/time forms, exactly; nil otherwise.
    static func dateTime(_ w: [UInt8]) -> TOMLDateTime? {
        var d = TOMLDateTime()
        if w.count >= 8, w[2] == 0x3A {
            guard let end = time(w, at: 0, into: &d), end == w.count else { return nil }
            return d
        }
        guard let (y, m, day) = dateShape(w), (1...12).contains(m), day >= 1, day <= daysIn(month: m, year: y) else { return nil }
        d.year = y; d.month = m; d.day = day; d.hasDate = true
        if w.count == 10 { return d }
        guard w[10] == 0x54 || w[10] == 0x74 || w[10] == 0x20, var i = time(w, at: 11, into: &d) else { return nil }
        if i == w.count { return d }
        if w[i] == 0x5A || w[i] == 0x7A {
            d.offsetMinutes = 0
            i += 1
        } else if w[i] == 0x2B || w[i] == 0x2D {
            guard let oh = number(w, i + 1, 2), i + 3 < w.count, w[i + 3] == 0x3A, let om = number(w, i + 4, 2),
                  oh <= 23, om <= 59 else { return nil }
            d.offsetMinutes = (w[i] == 0x2D ? -1 : 1) * (oh * 60 + om)
            i += 6
        } else {
            return nil
        }
        return i == w.count ? d : nil
    }
}
