import Logging
import NetworkCore
#if canImport(Glibc)
import Glibc
#endif

/// A swift-log handler that writes structured entries to the systemd journal's native
/// socket (`/run/systemd/journal/socket`): MESSAGE, PRIORITY, SYSLOG_IDENTIFIER and every
/// metadata key as a field of its own (CALL_ID, PEER, STATE, REASON, ...), so
/// `journalctl -u videophoned CALL_ID=...` finds a call. When the journal cannot be
/// reached it writes `<N>message key=value` lines to standard error, which systemd also
/// understands.
public struct JournalLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    let label: String
    let sink: JournalSink

    public init(label: String, sink: JournalSink) {
        self.label = label
        self.sink = sink
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        write(level: event.level, message: event.message, metadata: event.metadata, source: event.source)
    }

    func write(level: Logger.Level, message: Logger.Message, metadata explicit: Logger.Metadata?, source: String) {
        var fields: [(String, String)] = [("MESSAGE", message.description), ("PRIORITY", String(JournalLogHandler.priority(level))),
                                          ("SYSLOG_IDENTIFIER", sink.identifier), ("LOGGER", label), ("SOURCE_MODULE", source)]
        for (k, v) in metadata.merging(explicit ?? [:], uniquingKeysWith: { $1 }) {
            fields.append((JournalLogHandler.fieldName(k), "\(v)"))
        }
        sink.write(fields)
    }

    /// syslog priorities (sd-daemon(3)).
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    /// Journal field names: upper case letters, digits and underscores, not starting with
    /// an underscore or digit.
    static func fieldName(_ key: String) -> String {
        var out = String(key.uppercased().map { ($0.isLetter && $0.isASCII) || $0.isNumber ? $0 : "_" })
        while out.first == "_" || out.first?.isNumber == true { out.removeFirst() }
        return out.isEmpty ? "FIELD" : String(out.prefix(64))
    }
}

/// Where journal entries go: the native socket when it answers, else standard error.
public final class JournalSink: @unchecked Sendable {
    let fd: Int32
    let socketPath: String?
    let identifier: String
    private let fallbackOnly: Bool

    /// - Parameter socketPath: the journal's socket; nil means the default path when it
    ///   exists (tests pass a socket of their own).
    public init(identifier: String = "videophoned", socketPath: String? = nil) {
        self.identifier = identifier
        let path = socketPath ?? "/run/systemd/journal/socket"
        self.socketPath = path
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        fallbackOnly = access(path, W_OK) != 0
    }

    deinit { close(fd) }

    /// True when entries go to the journal's socket.
    public var usesJournal: Bool { !fallbackOnly }

    func write(_ fields: [(String, String)]) {
        if !fallbackOnly, let path = socketPath {
            var datagram: [UInt8] = []
            for (k, v) in fields {
                datagram += Array(k.utf8)
                if v.contains("\n") {
                    // Binary-safe form: name, newline, 64-bit little-endian length, value.
                    datagram.append(10)
                    var n = UInt64(v.utf8.count).littleEndian
                    withUnsafeBytes(of: &n) { datagram += $0 }
                    datagram += Array(v.utf8)
                } else {
                    datagram.append(UInt8(ascii: "="))
                    datagram += Array(v.utf8)
                }
                datagram.append(10)
            }
            let sent = withUnixAddress(path) { sa, len in datagram.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), sa, len) } }
            if sent == datagram.count { return }
        }
        let message = fields.first { $0.0 == "MESSAGE" }?.1 ?? ""
        let priority = fields.first { $0.0 == "PRIORITY" }?.1 ?? "6"
        let extra = fields.filter { !["MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER", "LOGGER", "SOURCE_MODULE"].contains($0.0) }
            .map { "\($0.0)=\($0.1)" }.joined(separator: " ")
        printError("<\(priority)>\(message)\(extra.isEmpty ? "" : " " + extra)\n")
    }
}
