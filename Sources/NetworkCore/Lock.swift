import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// A mutex over `pthread_mutex_t`. Uncontended, it costs a few tens of nanoseconds, so the
/// per-packet path may take one.
public final class Lock: @unchecked Sendable {
    private let m: UnsafeMutablePointer<pthread_mutex_t>
    public init() {
        m = .allocate(capacity: 1)
        pthread_mutex_init(m, nil)
    }
    deinit {
        pthread_mutex_destroy(m)
        m.deallocate()
    }
    @inline(__always) public func withLock<R>(_ body: () throws -> R) rethrows -> R {
        pthread_mutex_lock(m)
        defer { pthread_mutex_unlock(m) }
        return try body()
    }
}

/// A value guarded by a ``Lock``, for state shared between a device thread and readers.
public final class Locked<Value>: @unchecked Sendable {
    private let lock = Lock()
    private var value: Value
    public init(_ value: Value) { self.value = value }
    public func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        try lock.withLock { try body(&value) }
    }
    public var current: Value { lock.withLock { value } }
}

/// Waits for `thread` to end, unless it is the calling thread (a thread that ends its own
/// owner must not wait for itself).
public func join(_ thread: pthread_t?) {
    guard let thread, pthread_equal(thread, pthread_self()) == 0 else { return }
    pthread_join(thread, nil)
}

/// Starts a joinable OS thread running `body`, named `name` (shown by `top -H` and in
/// crash reports; Linux keeps the first 15 bytes). Whoever starts it owns it and must
/// ``join(_:)`` it; fire-and-forget work goes to a ``SerialQueue`` instead.
public func startThread(name: String, _ body: @escaping () -> Void) -> pthread_t {
    final class Box { let body: () -> Void; let name: String; init(_ b: @escaping () -> Void, _ n: String) { body = b; name = n } }
    let box = Unmanaged.passRetained(Box(body, name)).toOpaque()
    var t = pthread_t()
    let rc = pthread_create(&t, nil, { arg in
        let b = Unmanaged<AnyObject>.fromOpaque(arg!).takeRetainedValue() as! Box
        setCurrentThreadName(b.name)
        b.body()
        return nil
    }, box)
    precondition(rc == 0, "pthread_create failed for thread '\(name)': \(rc)")
    return t
}

/// Starts a thread that lives as long as the process (the watchdog pinger): detached, so
/// nothing is left to join.
public func startProcessThread(name: String, _ body: @escaping () -> Void) {
    let t = startThread(name: name, body)
    pthread_detach(t)
}

/// Names the calling thread (at most 15 bytes survive, as the kernel allows).
public func setCurrentThreadName(_ name: String) {
    let bytes = Array(name.utf8.prefix(15)) + [0]
    bytes.withUnsafeBufferPointer { p in
        p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: p.count) { _ = clinux_set_thread_name($0) }
    }
}

/// A device loop on its own thread: started at most once at a time, and `stop` asks it to
/// finish (the body checks ``isRunning``) and waits for it. One shape for the camera,
/// sound and GPIO threads.
public final class DeviceThread: @unchecked Sendable {
    /// The flag and the thread's handle change together: a `stop` from another thread while
    /// `start` is creating the thread still finds the handle to join.
    private let state = Locked<(running: Bool, thread: pthread_t?)>((false, nil))

    public init() {}

    /// Whether the loop should go on.
    public var isRunning: Bool { state.current.running }

    /// Starts `body` on a new thread; false (and nothing started) if it is running already.
    /// The thread is created under the lock, so its first ``isRunning`` waits for `start`.
    @discardableResult
    public func start(name: String, _ body: @escaping () -> Void) -> Bool {
        state.withLock { s -> Bool in
            guard !s.running else { return false }
            s.running = true
            s.thread = startThread(name: name, body)
            return true
        }
    }

    /// Asks the loop to finish, calls `wake` (to interrupt a wait in the body) and waits.
    public func stop(wake: () -> Void = {}) {
        let thread = state.withLock { s -> pthread_t? in
            s.running = false
            defer { s.thread = nil }
            return s.thread
        }
        wake()
        join(thread)
    }
}
