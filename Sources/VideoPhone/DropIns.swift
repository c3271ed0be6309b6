#if canImport(Glibc)
import Glibc
#endif

/// `peers.d/*.toml` beside the main config file: one `[[peer]]` (or a `[[pending]]`
/// pairing) per file, written by `videophonectl pair-code` and `add-peer`, read by the
/// daemon at start and on every reload after the main file, and checked the same way
/// (errors name the drop-in's file and line). The main file stays the user's.
public enum DropIns {
    /// The tables a drop-in may set.
    static let tables: Set<String> = ["peer", "pending"]

    /// `DIR/peers.d` for the config file `DIR/NAME.toml`.
    public static func directory(beside configPath: String) -> String {
        guard let slash = configPath.lastIndex(of: "/") else { return "peers.d" }
        return String(configPath[..<slash]) + "/peers.d"
    }

    /// The drop-ins, in name order: regular `*.toml` files not starting with a dot.
    public static func files(beside configPath: String) -> [String] {
        let dir = directory(beside: configPath)
        guard let d = opendir(dir) else { return [] }
        defer { closedir(d) }
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard name.hasSuffix(".toml"), !name.hasPrefix(".") else { continue }
            var st = stat()
            guard stat(dir + "/" + name, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { continue }
            names.append(name)
        }
        return names.sorted().map { dir + "/" + $0 }
    }

    /// Writes `text` to `path` atomically (a temporary file renamed over it), mode 0640,
    /// making the directory (0750) if needed.
    public static func write(_ text: String, to path: String) throws(ConfigError) {
        let dir = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
        if mkdir(dir, 0o750) != 0 && errno != EEXIST {
            throw ConfigError(file: dir, line: nil, key: nil, problem: "cannot create: \(String(cString: strerror(errno)))")
        }
        let tmp = dir + "/.\(getpid()).tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw ConfigError(file: tmp, line: nil, key: nil, problem: "cannot write: \(String(cString: strerror(errno)))") }
        let bytes = Array(text.utf8)
        let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd) == 0
        close(fd)
        guard n == bytes.count, synced, rename(tmp, path) == 0 else {
            let why = String(cString: strerror(errno))
            unlink(tmp)
            throw ConfigError(file: path, line: nil, key: nil, problem: "cannot write: \(why)")
        }
    }

    public static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    public static func remove(_ path: String) { unlink(path) }
}
