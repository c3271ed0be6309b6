#if canImport(Glibc)
import Glibc
#endif

// One executable serves every target, two ways:
//
// * Built for fuzzing (what toolchain/fuzz.sh runs):
//     swift build -c release --sanitize=fuzzer --sanitize=address \
//       -Xswiftc -sanitize=fuzzer,address --scratch-path .build-fuzz --product videophone-fuzz
//   clang links libFuzzer's own `main`, which calls `LLVMFuzzerInitialize` once (the
//   target is chosen from `FUZZ_TARGET` there) and `LLVMFuzzerTestOneInput` per input.
//   SwiftPM does not rename `main` when --sanitize=fuzzer is given, so this module must
//   not define one: a `@main` type or top-level code fails to link ("multiple definition
//   of 'main'"). The `-Xswiftc -sanitize=fuzzer,address` matters too: SwiftPM hands the
//   compiler one `-sanitize=` flag per sanitizer and the Swift 6.3 driver keeps only the
//   last, so without it some builds get no coverage instrumentation (libFuzzer: "no
//   interesting inputs ... Is the code instrumented for coverage?") and others no ASan.
//   `-Xswiftc -sanitize=fuzzer` *without* --sanitize=fuzzer does not work either: SwiftPM
//   then links with `--defsym main=videophone_fuzz_main`, replacing libFuzzer's main, and
//   the binary replays instead of fuzzing.
// * Plain `swift build`: SwiftPM links an executable target with
//   `--defsym main=<module>_main`, here `videophone_fuzz_main`; with no `@main` and no
//   main.swift that symbol is the `@_cdecl` function at the bottom: the corpus replay.
//   (Without it the link fails: undefined symbol 'videophone_fuzz_main'.)

nonisolated(unsafe) private var selected: (@Sendable ([UInt8]) -> Void)?

private func target(named name: String) -> (@Sendable ([UInt8]) -> Void)? {
    fuzzTargets.first { $0.name == name }?.run
}

private var targetNames: String { fuzzTargets.map(\.name).joined(separator: " ") }

@_cdecl("LLVMFuzzerInitialize")
public func fuzzerInitialize(_ argc: UnsafeMutablePointer<Int32>?,
                             _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?) -> Int32 {
    guard let env = getenv("FUZZ_TARGET") else {
        complain("videophone-fuzz: set FUZZ_TARGET to one of: \(targetNames)\n")
        exit(2)
    }
    let name = String(cString: env)
    guard let run = target(named: name) else {
        complain("videophone-fuzz: unknown FUZZ_TARGET '\(name)'; targets: \(targetNames)\n")
        exit(2)
    }
    selected = run
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    selected?(bytes)
    return 0
}

/// Without libFuzzer: replays files through the targets (`make test` runs the whole seed
/// corpus this way, so every input that once crashed stays a regression test).
///
///     videophone-fuzz                        every target over Tests/Fuzz/corpus/<target>/
///     videophone-fuzz --corpus DIR           the same over DIR/<target>/
///     videophone-fuzz TARGET FILE|DIR...     one target over the given inputs
///     videophone-fuzz --list                 the target names
///     videophone-fuzz --write-seeds DIR      writes the generated seeds into DIR/<target>/
@_cdecl("videophone_fuzz_main")
public func replayMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    var args = Array(CommandLine.arguments.dropFirst())
    if args.first == "--list" {
        for t in fuzzTargets { print(t.name) }
        return 0
    }
    if args.first == "--write-seeds", args.count == 2 {
        return writeSeeds(into: args[1]) ? 0 : 1
    }
    var root = "Tests/Fuzz/corpus"
    if args.first == "--corpus", args.count == 2 { root = args[1]; args = [] }
    if let name = args.first {
        guard let run = target(named: name) else {
            complain("videophone-fuzz: unknown target '\(name)'; targets: \(targetNames)\n")
            return 2
        }
        var count = 0
        for path in args.dropFirst() { count += replay(path, through: run) }
        print("\(name): \(count) inputs replayed")
        return 0
    }
    // Every target, and the corpus has a directory for each (and nothing else).
    var failed = false
    let dirs = Set(listDirectory(root) ?? [])
    for t in fuzzTargets {
        guard dirs.contains(t.name) else {
            complain("videophone-fuzz: no seed corpus \(root)/\(t.name)\n")
            failed = true
            continue
        }
        let count = replay("\(root)/\(t.name)", through: t.run)
        print("\(t.name): \(count) inputs replayed")
        if count == 0 { complain("videophone-fuzz: \(root)/\(t.name) is empty\n"); failed = true }
    }
    for d in dirs.sorted() where target(named: d) == nil {
        complain("videophone-fuzz: \(root)/\(d) belongs to no target\n")
        failed = true
    }
    return failed ? 1 : 0
}

/// Runs a file, or every file of a directory (not recursively); returns how many.
private func replay(_ path: String, through run: ([UInt8]) -> Void) -> Int {
    if let entries = listDirectory(path) {
        var n = 0
        for e in entries.sorted() where !e.hasPrefix(".") { n += replay("\(path)/\(e)", through: run) }
        return n
    }
    guard let bytes = readFile(path) else {
        complain("videophone-fuzz: cannot read \(path)\n")
        return 0
    }
    run(bytes)
    return 1
}

func listDirectory(_ path: String) -> [String]? {
    guard let d = opendir(path) else { return nil }
    defer { closedir(d) }
    var out: [String] = []
    while let e = readdir(d) {
        let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        if name != "." && name != ".." { out.append(name) }
    }
    return out
}

func readFile(_ path: String) -> [UInt8]? {
    guard let f = fopen(path, "rb") else { return nil }
    defer { fclose(f) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = fread(&buf, 1, buf.count, f)
        if n <= 0 { break }
        out += buf[0..<n]
    }
    return out
}

func writeFile(_ path: String, _ bytes: [UInt8]) -> Bool {
    guard let f = fopen(path, "wb") else { return false }
    defer { fclose(f) }
    return fwrite(bytes, 1, bytes.count, f) == bytes.count
}

/// Writes a line to standard error.
func complain(_ message: String) {
    let line = Array(message.utf8)
    _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}
