import NetworkCore
import Testing
@testable import CallControl

let t0 = Instant(nanoseconds: 1_000_000_000)

/// Runs events (with the seconds at which they happen) and returns the actions of each.
func run(_ m: inout CallStateMachine, _ steps: [(Double, CallEvent)]) -> [[CallAction]] {
    steps.map { (s, e) in m.handle(e, now: t0 + .nanoseconds(Int64(s * 1e9))) }
}

@Suite struct CallStateMachineTests {
    @Test func shortPressCallsTheFirstPeerThenMediaMakesItACall() {
        var m = CallStateMachine(peers: ["grandma", "dad"], autoAnswer: false, now: t0)
        #expect(m.led == .off)
        let a = run(&m, [(0, .shortPress), (1, .mediaFlowing), (60, .shortPress), (60.1, .ended)])
        #expect(a[0] == [.placeCall(peer: "grandma"), .setLED(.slowBlink)])
        #expect(a[1] == [.setLED(.steady)])
        #expect(a[2] == [.hangup(reason: .localHangup), .setLED(.off)])
        #expect(a[3] == [])
        #expect(m.phase == .idle)
    }

    @Test(arguments: [
        // (event while ringing, expected actions, phase after)
        (CallEvent.shortPress, [CallAction.answer, .setLED(.steady)], CallPhase.inCall(peer: "p")),
        (CallEvent.answerRequested, [CallAction.answer, .setLED(.steady)], CallPhase.inCall(peer: "p")),
        (CallEvent.longPress, [CallAction.hangup(reason: .rejected), .setLED(.off)], CallPhase.ending),
        (CallEvent.hangupRequested, [CallAction.hangup(reason: .rejected), .setLED(.off)], CallPhase.ending),
        (CallEvent.remoteEnded(reason: .remoteHangup("caller gave up")), [CallAction.setLED(.off)], CallPhase.ending),
        (CallEvent.incoming(peer: "q", glareWins: false), [CallAction.refuseIncoming(.busy(phase: "ringing"))], CallPhase.ringing(peer: "p")),
    ])
    func ringingTable(event: CallEvent, expected: [CallAction], after: CallPhase) {
        var m = CallStateMachine(peers: ["p"], autoAnswer: false, now: t0)
        #expect(m.handle(.incoming(peer: "p", glareWins: false), now: t0) == [.acceptIncoming(peer: "p"), .setLED(.fastBlink)])
        #expect(m.handle(event, now: t0 + .seconds(2)) == expected)
        #expect(m.phase == after)
    }

    @Test func longPressCancelsAnOutgoingCall() {
        var m = CallStateMachine(peers: ["p"], autoAnswer: false, now: t0)
        let a = run(&m, [(0, .shortPress), (3, .longPress)])
        #expect(a[1] == [.hangup(reason: .cancelled), .setLED(.off)])
    }

    @Test func ringingTimesOutOnTheTestClock() {
        var m = CallStateMachine(peers: ["p"], autoAnswer: false, ringTimeout: .seconds(20), now: t0)
        let a = run(&m, [(0, .incoming(peer: "p", glareWins: false)), (19.9, .tick), (20, .tick)])
        #expect(a[1] == [])
        #expect(a[2] == [.hangup(reason: .missed(afterSeconds: 20)), .setLED(.off)])
    }

    @Test func outgoingCallGivesUpWithoutAnAnswer() {
        var m = CallStateMachine(peers: ["p"], autoAnswer: false, answerTimeout: .seconds(45), now: t0)
        let a = run(&m, [(0, .dial(peer: nil)), (44, .tick), (45, .tick)])
        #expect(a[1] == [])
        #expect(a[2].first == .hangup(reason: .noAnswer(afterSeconds: 45)))
    }

    @Test func autoAnswerGoesStraightIntoTheCall() {
        var m = CallStateMachine(peers: [], autoAnswer: true, now: t0)
        #expect(m.handle(.incoming(peer: "browser", glareWins: false), now: t0) == [.acceptIncoming(peer: "browser"), .answer, .setLED(.steady)])
    }

    @Test func busyDeviceRefusesASecondCallerWith409() {
        var m = CallStateMachine(peers: ["a", "b"], autoAnswer: true, now: t0)
        _ = m.handle(.incoming(peer: "a", glareWins: false), now: t0)
        #expect(m.handle(.incoming(peer: "b", glareWins: true), now: t0) == [.refuseIncoming(.busy(phase: "in-call"))])
    }

    /// Both devices press at once. Each sees the other's offer while calling; the same
    /// rule on both sides keeps exactly one call.
    @Test func glareResolvesTheSameWayOnBothSides() {
        let fa: [UInt8] = [0x10, 0x20], fb: [UInt8] = [0x10, 0x21]
        var a = CallStateMachine(peers: ["b"], autoAnswer: false, now: t0)
        var b = CallStateMachine(peers: ["a"], autoAnswer: false, now: t0)
        _ = a.handle(.shortPress, now: t0)
        _ = b.handle(.shortPress, now: t0)
        let atA = a.handle(.incoming(peer: "b", glareWins: winsGlare(ourFingerprint: fa, theirFingerprint: fb)), now: t0)
        let atB = b.handle(.incoming(peer: "a", glareWins: winsGlare(ourFingerprint: fb, theirFingerprint: fa)), now: t0)
        // b's fingerprint sorts higher: b keeps its call and refuses a's; a drops its own and takes b's.
        #expect(atB == [.refuseIncoming(.glareOursWins)])
        #expect(atA == [.abandonOutgoing, .acceptIncoming(peer: "b"), .answer, .setLED(.steady)])
        #expect(b.phase == .calling(peer: "a"))
        #expect(a.phase == .inCall(peer: "b"))
        // b's call proceeds: media from a makes it a call on b too.
        _ = b.handle(.mediaFlowing, now: t0 + .milliseconds(50))
        #expect(b.phase == .inCall(peer: "a"))
        #expect(winsGlare(ourFingerprint: fa, theirFingerprint: fa) == false)
    }

    @Test(arguments: [
        (CallPhase.idle, LEDPattern.off),
    ])
    func ledPatterns(phase: CallPhase, led: LEDPattern) {
        var m = CallStateMachine(peers: ["p"], autoAnswer: false, now: t0)
        #expect(m.led == led)
        #expect(m.setFault(.errorCameraMissing) == [.setLED(.errorCameraMissing)])
        _ = m.handle(.shortPress, now: t0)
        #expect(m.led == .slowBlink)  // a call in progress shows its own pattern
        #expect(CallStateMachine(peers: [], autoAnswer: false, now: t0).led == .errorNotProvisioned)
    }

    @Test func pressWithNoPeerIsIgnoredWithAReason() {
        var m = CallStateMachine(peers: [], autoAnswer: false, now: t0)
        #expect(m.handle(.shortPress, now: t0) == [.ignored(.noPeerProvisioned)])
        #expect(m.handle(.dial(peer: nil), now: t0) == [.ignored(.noPeerProvisioned)])
        var n = CallStateMachine(peers: ["a"], autoAnswer: false, now: t0)
        #expect(n.handle(.dial(peer: "x"), now: t0) == [.ignored(.unknownPeer("x"))])
    }
}

@Suite struct GlareOrderTests {
    /// The loser's own call is refused before the winner's offer reaches it.
    @Test func refusalFirstThenTheWinnersOfferIsAnsweredAtOnce() {
        var m = CallStateMachine(peers: ["b"], autoAnswer: false, now: t0)
        _ = m.handle(.shortPress, now: t0)
        #expect(m.handle(.glareLost, now: t0 + .milliseconds(5)) == [.setLED(.off)])
        #expect(m.phase == .idle)
        #expect(m.handle(.incoming(peer: "b", glareWins: false), now: t0 + .milliseconds(20)) == [.acceptIncoming(peer: "b"), .answer, .setLED(.steady)])
    }

    /// The winner's offer rang here before our refusal came back.
    @Test func offerFirstThenRefusalAnswersTheRingingCall() {
        var m = CallStateMachine(peers: ["b"], autoAnswer: false, now: t0)
        _ = m.handle(.shortPress, now: t0)
        // Glare detected on arrival: our outgoing is abandoned, theirs answered.
        let a = m.handle(.incoming(peer: "b", glareWins: false), now: t0)
        #expect(a.contains(.abandonOutgoing) && a.contains(.answer))
    }

    @Test func aLateUnrelatedCallStillRings() {
        var m = CallStateMachine(peers: ["b", "c"], autoAnswer: false, now: t0)
        _ = m.handle(.shortPress, now: t0)
        _ = m.handle(.glareLost, now: t0)
        #expect(m.handle(.incoming(peer: "c", glareWins: false), now: t0 + .seconds(1)) == [.acceptIncoming(peer: "c"), .setLED(.fastBlink)])
    }
}
