import CLoader
import Dispatch
import Glibc
import Testing

/// The dlopen loader behind the board libraries (Sources/CLoader), driven from many threads
/// at once as the button and LED watchers drive it: each retries a library that will not load.
/// Under `make test-tsan` a plain write to the state that `vp_library_loaded` reads without
/// the lock is reported as a race (CI found one: a failed load stored -1 unsynchronised).
@Suite struct LibraryLoaderTests {
    /// A descriptor like the ones VP_LIBRARY declares, with C strings that outlive it.
    final class Descriptor: @unchecked Sendable {
        let lib: UnsafeMutablePointer<vp_library>
        private var owned: [UnsafeMutablePointer<CChar>] = []
        private let names: UnsafeMutablePointer<UnsafePointer<CChar>?>
        private let slots: UnsafeMutablePointer<UnsafeMutableRawPointer?>

        init(tag: String, soname: String, symbols: [String]) {
            lib = .allocate(capacity: 1)
            lib.initialize(to: vp_library())
            names = .allocate(capacity: max(symbols.count, 1))
            slots = .allocate(capacity: max(symbols.count, 1))
            slots.initialize(repeating: nil, count: max(symbols.count, 1))
            func keep(_ s: String) -> UnsafeMutablePointer<CChar> {
                let p = strdup(s)!
                owned.append(p)
                return p
            }
            for (i, s) in symbols.enumerated() { names[i] = UnsafePointer(keep(s)) }
            lib.pointee.tag = UnsafePointer(keep(tag))
            lib.pointee.soname = UnsafePointer(keep(soname))
            lib.pointee.package = UnsafePointer(keep("test-package"))
            lib.pointee.names = UnsafePointer(names)
            lib.pointee.slots = slots
            lib.pointee.count = symbols.count
        }

        deinit {
            for p in owned { free(p) }
            names.deallocate()
            slots.deallocate()
            lib.deallocate()
        }

        var slot0: UnsafeMutableRawPointer? { slots[0] }

        /// Calls the loader `rounds` times on each of `threads` threads; the messages seen.
        func hammer(threads: Int, rounds: Int) -> [(Int32, String)] {
            // Each thread writes only its own slot; the loader is what is under test.
            nonisolated(unsafe) let results = UnsafeMutableBufferPointer<(Int32, String)>.allocate(capacity: threads)
            results.initialize(repeating: (0, ""))
            defer { results.deallocate() }
            nonisolated(unsafe) let lib = self.lib
            DispatchQueue.concurrentPerform(iterations: threads) { t in
                var err = [CChar](repeating: 0, count: 400)
                var last: Int32 = 0
                for _ in 0..<rounds {
                    last = vp_library_load(lib, &err, err.count)
                    _ = vp_library_loaded(lib)
                }
                results[t] = (last, err.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })
            }
            return Array(results)
        }
    }

    @Test func aLibraryThatWillNotLoadIsRetriedFromManyThreadsAndNamedEachTime() {
        let d = Descriptor(tag: "LOADERTEST_MISSING", soname: "libvideophone-no-such-library.so.9", symbols: ["nothing"])
        for (r, message) in d.hammer(threads: 4, rounds: 200) {
            #expect(r == -1)
            #expect(message.contains("libvideophone-no-such-library.so.9"), "\(message)")
            #expect(message.contains("test-package"), "\(message)")
        }
        #expect(vp_library_loaded(d.lib) == 0)
    }

    @Test func aLibraryThatLoadsIsResolvedOnceForEveryThread() {
        let d = Descriptor(tag: "LOADERTEST_LIBC", soname: "libc.so.6", symbols: ["getpid"])
        for (r, _) in d.hammer(threads: 4, rounds: 50) { #expect(r == 0) }
        #expect(vp_library_loaded(d.lib) == 1)
        #expect(d.slot0 != nil)
    }
}
