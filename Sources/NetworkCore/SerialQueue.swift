#if canImport(Glibc)
import Glibc
#endif

/// One named thread that runs submitted work in order, and timers: the executor for work
/// that must not run concurrently with itself (call control) or must not block its caller
/// (outgoing signalling). Its queue is bounded, so a flood of events cannot grow memory:
/// ``async(_:)`` refuses work when full and the caller says so.
///
/// Concurrency contract: work items and timers run one at a time on the queue's thread,
/// never on the caller's. ``stop()`` runs what was already queued, then joins the thread.
public final class SerialQueue: @unchecked Sendable {
    public typealias Work = @Sendable () -> Void

    private struct Timer { var deadline: Instant; var id: UInt64; var work: Work }

    public let name: String
    /// The most work items waiting at once.
    public let capacity: Int
    // Heap-allocated: pthread objects must not move, and a class property may.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var items: [Work?] = []
    private var head = 0
    private var timers: [Timer] = []
    private var nextTimerID: UInt64 = 1
    private var stopping = false
    private var thread: pthread_t?
    private var threadID: pthread_t?
    /// Work refused because the queue was full (a count for status; the caller logs).
    public private(set) var refused = 0

    public init(name: String, capacity: Int = 256) {
        self.name = name
        self.capacity = capacity
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attr)
        pthread_condattr_destroy(&attr)
        pthread_mutex_init(mutex, nil)
        thread = startThread(name: name) { [unowned self] in self.run() }
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    /// Whether the caller runs on this queue's thread.
    public var isCurrent: Bool {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        guard let threadID else { return false }
        return pthread_equal(threadID, pthread_self()) != 0
    }

    /// Queues `work`; false (and nothing queued) when the queue is full or stopped.
    @discardableResult
    public func async(_ work: @escaping Work) -> Bool {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        guard !stopping, items.count - head < capacity else { refused += 1; return false }
        items.append(work)
        pthread_cond_signal(condition)
        return true
    }

    /// Runs `work` on the queue once `delay` has passed; returns an id for ``cancel(_:)``.
    /// Timers count against the same bound as work items.
    @discardableResult
    public func after(_ delay: Duration, _ work: @escaping Work) -> UInt64? {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        guard !stopping, timers.count < capacity else { refused += 1; return nil }
        let id = nextTimerID
        nextTimerID += 1
        timers.append(Timer(deadline: Instant.now() + delay, id: id, work: work))
        pthread_cond_signal(condition)
        return id
    }

    /// Forgets a timer that has not fired yet.
    public func cancel(_ id: UInt64?) {
        guard let id else { return }
        pthread_mutex_lock(mutex)
        timers.removeAll { $0.id == id }
        pthread_mutex_unlock(mutex)
    }

    /// Runs `work` on the queue and waits for its result. Never call it from the queue
    /// itself (it would wait for itself): there it runs `work` directly.
    public func sync<R: Sendable>(_ work: @escaping @Sendable () -> R) -> R {
        if isCurrent { return work() }
        let box = Locked<R?>(nil)
        let done = Semaphore()
        let queued = async {
            let r = work()
            box.withLock { $0 = r }
            done.signal()
        }
        if !queued { return work() }
        done.wait()
        return box.withLock { $0! }
    }

    /// Runs what is queued (timers are dropped), then ends and joins the thread.
    public func stop() {
        pthread_mutex_lock(mutex)
        stopping = true
        timers.removeAll()
        pthread_cond_signal(condition)
        pthread_mutex_unlock(mutex)
        if !isCurrent { join(thread) } else { pthread_detach(pthread_self()) }
        thread = nil
    }

    private func run() {
        pthread_mutex_lock(mutex)
        threadID = pthread_self()
        while true {
            if head < items.count {
                let work = items[head]
                items[head] = nil  // what the work captured goes when it has run, not later
                head += 1
                // Compact now and then, so the array does not grow with the total ever queued.
                if head >= 64 && head * 2 >= items.count { items.removeFirst(head); head = 0 }
                pthread_mutex_unlock(mutex)
                work?()
                pthread_mutex_lock(mutex)
                continue
            }
            if head > 0 { items.removeAll(keepingCapacity: true); head = 0 }
            if stopping { break }
            let now = Instant.now()
            if let i = timers.indices.min(by: { timers[$0].deadline < timers[$1].deadline }) {
                if timers[i].deadline <= now {
                    let t = timers.remove(at: i)
                    pthread_mutex_unlock(mutex)
                    t.work()
                    pthread_mutex_lock(mutex)
                    continue
                }
                var ts = timespec(tv_sec: Int(timers[i].deadline.nanoseconds / 1_000_000_000), tv_nsec: Int(timers[i].deadline.nanoseconds % 1_000_000_000))
                pthread_cond_timedwait(condition, mutex, &ts)
            } else {
                pthread_cond_wait(condition, mutex)
            }
        }
        items.removeAll()
        head = 0
        pthread_mutex_unlock(mutex)
    }
}

/// A counting semaphore over a mutex and a condition (for ``SerialQueue/sync(_:)``).
public final class Semaphore: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var count = 0

    public init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    public func signal() {
        pthread_mutex_lock(mutex)
        count += 1
        pthread_cond_signal(condition)
        pthread_mutex_unlock(mutex)
    }

    public func wait() {
        pthread_mutex_lock(mutex)
        while count == 0 { pthread_cond_wait(condition, mutex) }
        count -= 1
        pthread_mutex_unlock(mutex)
    }

    /// Waits for a signal up to `timeout`; false if none came.
    public func wait(timeout: Duration) -> Bool {
        let deadline = wallClockNanoseconds() + timeout.nanosecondsInt
        var ts = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while count == 0 {
            if pthread_cond_timedwait(condition, mutex, &ts) == ETIMEDOUT && count == 0 { return false }
        }
        count -= 1
        return true
    }
}
