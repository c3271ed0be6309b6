import CLinux
import Foundation
import Testing
import VideoPhone

/// The daemon gives back start-up pages (`clinux_trim_file_mappings`, issue 14): here in
/// this test process, whose read-only file mappings (the test binary, libraries) start-up
/// filled the same way.
@Suite struct MemoryTrimTests {
    /// RssFile from /proc/self/status, in kB.
    func residentFileKB() throws -> Int {
        let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("RssFile:") })
        return try #require(Int(line.split(whereSeparator: { $0 == " " || $0 == "\t" })[1]))
    }

    @Test func startUpPagesAreGivenBackAndTheCodeStillRuns() throws {
        let before = try residentFileKB()
        let given = clinux_trim_file_mappings()
        let after = try residentFileKB()
        #expect(given > 1024, "only \(given) kB given back")
        #expect(after < before - 1024, "RssFile \(before) → \(after) kB")
        // Code and tables that were given back run again, from the page cache.
        let c = try DeviceConfig.parse("[device]\nname = \"x\"\n", file: "trim.toml")
        #expect(c.name == "x")
    }
}
