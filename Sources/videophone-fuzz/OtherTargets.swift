import MDNS
import VideoPhone

/// mDNS (RFC 6762) messages: the round trip gives back the same questions and records.
/// Names compare when they survive text form unchanged (ASCII labels without dots at the
/// ends); others must at least reach a fixed point after one trip.
func fuzzMDNS(_ data: [UInt8]) {
    guard let m = MDNSMessage(parsing: data) else { return }
    for a in m.answers { _ = a.address }
    // Counts fit the 16-bit header fields: a parsed message never has more than that.
    let once = MDNSMessage(parsing: m.serialize())
    require(once != nil, "mDNS: our serialization of a parsed message does not parse")
    guard let once else { return }
    require(once.id == m.id && once.isResponse == m.isResponse, "mDNS header changed")
    require(once.questions.map(\.type) == m.questions.map(\.type)
            && once.questions.map(\.unicastResponse) == m.questions.map(\.unicastResponse), "mDNS questions changed")
    require(once.answers.map(\.type) == m.answers.map(\.type) && once.answers.map(\.ttl) == m.answers.map(\.ttl)
            && once.answers.map(\.data) == m.answers.map(\.data), "mDNS records changed")
    func plain(_ name: String) -> Bool {
        name.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F } && !name.hasPrefix(".") && !name.hasSuffix(".") && !name.contains("..")
    }
    for (a, b) in zip(m.questions.map(\.name) + m.answers.map(\.name), once.questions.map(\.name) + once.answers.map(\.name)) where plain(a) {
        require(a == b, "mDNS name '\(a)' came back as '\(b)'")
    }
    let twice = MDNSMessage(parsing: once.serialize())
    require(twice == once, "mDNS serialization is not stable")
}

/// The TOML reader and the config validation on top (what `--check-config` runs).
/// Board profiles are looked up in a directory that does not exist; a `device.board`
/// naming a path is skipped so the fuzzer never opens files.
func fuzzTOML(_ data: [UInt8]) {
    guard let text = String(validating: data, as: UTF8.self) else { return }
    // The TOML 1.0 reader: a document it reads, written back by TOMLWriter, reads the same.
    // (Its agreement with Python's tomllib is the differential test, Tests/TOML/difftest.py.)
    if let document = try? TOMLParser.parse(text) {
        let written = document.entries.map { "\(TOMLWriter.key($0.key)) = \(TOMLWriter.value($0.value))\n" }.joined()
        let again = try? TOMLParser.parse(written)
        require(again == document, "TOML: the document written back reads differently:\n\(written)")
    }
    guard let entries = try? TOMLReader.parse(text, file: "fuzz.toml") else { return }
    let lines = text.utf8.count + 1
    for e in entries { require(e.line >= 1 && e.line <= lines, "TOML entry on line \(e.line)") }
    if entries.contains(where: { $0.key == "board" && $0.table == "device" && text.contains("/") }) { return }
    _ = try? DeviceConfig.parse(text, file: "fuzz.toml", boardsDirectory: "/nonexistent/videophone-fuzz")
}
