import NetworkCore
import Testing
@testable import CallControl

/// Feeds raw edges at millisecond offsets and polls at every deadline, like the GPIO thread.
func presses(_ edges: [(ms: Int, pressed: Bool)], until end: Int = 5000) -> [(Int, CallEvent)] {
    var b = CallButton(now: t0)
    var out: [(Int, CallEvent)] = []
    var pending = edges[...]
    var now = 0
    while now <= end {
        while let e = pending.first, e.ms <= now {
            b.edge(pressed: e.pressed, at: t0 + .milliseconds(e.ms))
            pending = pending.dropFirst()
        }
        if let ev = b.poll(now: t0 + .milliseconds(now)) { out.append((now, ev)) }
        now += 1
    }
    return out
}

@Suite struct CallButtonTests {
    @Test func cleanShortPress() {
        let p = presses([(100, true), (300, false)])
        #expect(p.map(\.1) == [.shortPress])
        #expect(p[0].0 == 330)              // decided once the release held for 30 ms
    }

    @Test func bouncesAreOneShortPress() {
        let p = presses([(100, true), (102, false), (104, true), (107, false), (109, true),
                         (400, false), (403, true), (405, false)])
        #expect(p.map(\.1) == [.shortPress])
    }

    @Test func glitchShorterThanDebounceIsNothing() {
        #expect(presses([(100, true), (110, false)]).isEmpty)
    }

    @Test func longPressFiresWhileHeldAndReleaseAddsNothing() {
        let p = presses([(100, true), (2500, false)])
        #expect(p.map(\.1) == [.longPress])
        #expect(p[0].0 == 1600)
    }

    @Test func deadlineSaysWhenToLookAgain() {
        var b = CallButton(now: t0)
        #expect(b.deadline == nil)
        b.edge(pressed: true, at: t0 + .milliseconds(10))
        #expect(b.deadline == t0 + .milliseconds(40))
        #expect(b.poll(now: t0 + .milliseconds(40)) == nil)
        #expect(b.pressed)
        #expect(b.deadline == t0 + .milliseconds(1510))
    }
}
