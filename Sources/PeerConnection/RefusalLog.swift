import Logging
import NetworkCore

/// Logs what the stack refused from the network (a datagram, a candidate, a name), at
/// most once per ``interval`` for each kind of refusal, with the count of the ones left
/// unsaid since: a flood costs one line a minute, never the disk.
///
/// `kind` is one of a few fixed strings per call site, so the table stays small; it is
/// capped all the same.
final class RefusalLog: @unchecked Sendable {
    let logger: Logger
    let interval: Duration
    private struct Entry { var last: Instant; var suppressed: UInt64 }
    private let entries = Locked<[String: Entry]>([:])
    static let maxKinds = 64

    init(logger: Logger, interval: Duration = .seconds(60)) {
        self.logger = logger
        self.interval = interval
    }

    /// Notes one refusal; logs it unless one of its kind was logged within ``interval``.
    /// Returns whether it logged.
    @discardableResult
    func refused(_ kind: String, source: String, reason: String, now: Instant = Instant.now()) -> Bool {
        let suppressed: UInt64? = entries.withLock { e in
            if var entry = e[kind] {
                guard now - entry.last >= interval else {
                    entry.suppressed += 1
                    e[kind] = entry
                    return nil
                }
                e[kind] = Entry(last: now, suppressed: 0)
                return entry.suppressed
            }
            if e.count >= RefusalLog.maxKinds { e.removeAll() }
            e[kind] = Entry(last: now, suppressed: 0)
            return 0
        }
        guard let suppressed else { return false }
        var metadata: Logger.Metadata = ["source": "\(source)", "reason": "\(reason)"]
        if suppressed > 0 { metadata["unlogged_since_last"] = "\(suppressed)" }
        logger.notice("refused \(kind)", metadata: metadata)
        return true
    }
}
