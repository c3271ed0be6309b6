import TOML
#if canImport(Glibc)
import Glibc
#endif

/// videophone-toml: reads TOML with the firmware's parser and prints it as toml-test JSON
/// (the differential test's other half; also handy to see how the device reads a file).
///
///     videophone-toml FILE      the document as JSON, or `FILE:LINE: key: problem` and exit 1
///     videophone-toml --batch   documents on standard input, each as `LENGTH\n` then that many
///                               bytes; one line out per document: `ok JSON` or `error LINE: ...`

func put(_ fd: Int32, _ s: String) {
    var bytes = Array(s.utf8)[...]
    while !bytes.isEmpty {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if n <= 0 { return }
        bytes = bytes.dropFirst(n)
    }
}

/// Standard input, buffered.
struct Input {
    var buffer: [UInt8] = []
    var offset = 0
    var atEnd = false

    mutating func fill() -> Bool {
        if atEnd { return false }
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        let n = read(0, &chunk, chunk.count)
        if n <= 0 { atEnd = true; return false }
        buffer.removeFirst(offset)
        offset = 0
        buffer += chunk[0..<n]
        return true
    }

    mutating func line() -> [UInt8]? {
        while true {
            if let nl = buffer[offset...].firstIndex(of: 0x0A) {
                defer { offset = nl + 1 }
                return Array(buffer[offset..<nl])
            }
            if !fill() { return nil }
        }
    }

    mutating func bytes(_ n: Int) -> [UInt8]? {
        while buffer.count - offset < n { if !fill() { return nil } }
        defer { offset += n }
        return Array(buffer[offset..<offset + n])
    }
}

let args = Array(CommandLine.arguments.dropFirst())
if args == ["--batch"] {
    var input = Input()
    while let header = input.line() {
        guard let n = Int(String(decoding: header, as: UTF8.self)), n >= 0, let doc = input.bytes(n) else {
            put(2, "videophone-toml: bad length line or short document\n")
            exit(2)
        }
        do {
            put(1, "ok " + TOMLJSON.encode(try TOMLParser.parse(bytes: doc)) + "\n")
        } catch {
            put(1, "error " + error.description.split(separator: "\n", omittingEmptySubsequences: false).joined(separator: " ") + "\n")
        }
    }
    exit(0)
}
guard args.count == 1, !args[0].hasPrefix("-") else {
    put(2, "usage: videophone-toml FILE | videophone-toml --batch\n")
    exit(64)
}
let fd = open(args[0], O_RDONLY)
guard fd >= 0 else {
    put(2, "\(args[0]): cannot open: \(String(cString: strerror(errno)))\n")
    exit(1)
}
var bytes: [UInt8] = []
var chunk = [UInt8](repeating: 0, count: 1 << 16)
while true {
    let n = read(fd, &chunk, chunk.count)
    if n <= 0 { break }
    bytes += chunk[0..<n]
}
close(fd)
do {
    put(1, TOMLJSON.encode(try TOMLParser.parse(bytes: bytes)) + "\n")
} catch {
    put(2, "\(args[0]):\(error)\n")
    exit(1)
}
