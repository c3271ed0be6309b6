import MediaDevices
import MediaDevicesLinux
import NetworkCore
import VideoPhone
#if canImport(Glibc)
import Glibc
#endif

/// `videophone-bench --echo-room CAPTURE PLAYBACK NEAR_WAV LOG`: the emulated board's
/// acoustics (board/qemu/scenarios/board-call.sh). What the board's speaker plays (read
/// from snd-aloop at CAPTURE) goes through a room (``EchoPath``: attenuated, smeared, low
/// passed; the loop itself adds the sound cards' buffering to its delay), is mixed with a
/// near-end talker (``EchoRoomSchedule``) and written to the board's microphone (PLAYBACK).
/// Every 100 ms LOG gets a line: the time (CLOCK_REALTIME, as `date +%s.%N`), the far-end
/// burst, whether the far end talks, and the energies of the near-end speech and of the
/// echo written in it (W3C totalAudioEnergy units), for board_check.py to set beside the
/// daemon's own figures. Runs for `seconds`.
func runEchoRoom(capture: String, playback: String, nearPath: String, logPath: String,
                 delayMs: Double, attenuationDB: Double, seconds: Double) -> Int32 {
    guard let near = loadSpeechWAV(path: nearPath), !near.isEmpty else {
        printError("echo-room: \(nearPath): not a 16-bit PCM WAV\n"); return 2
    }
    guard let log = fopen(logPath, "w") else { printError("echo-room: cannot write \(logPath)\n"); return 2 }
    defer { fclose(log) }
    let mic: ALSAPlayback, speaker: ALSACapture
    do {
        mic = try ALSAPlayback(device: playback)
        speaker = try ALSACapture(device: capture)
    } catch {
        printError("echo-room: \(error)\n"); return 1
    }
    let room = EchoRoomLoop(near: near, room: RoomResponse(delayMs: delayMs, attenuationDB: attenuationDB, seed: 7),
                            changedRoom: RoomResponse(delayMs: delayMs + 40, attenuationDB: attenuationDB + 2, seed: 8), log: log)
    // Ordinary priority: on the emulated board's one vCPU, SCHED_FIFO threads here would
    // starve the daemon being measured (its transport thread stopped answering).
    mic.realtime = false
    speaker.realtime = false
    do {
        try mic.start { out in room.render(out) }
        try speaker.start { chunk, _ in room.heard(chunk) }
    } catch {
        printError("echo-room: \(error)\n"); return 1
    }
    signal(SIGTERM) { _ in echoRoomStop = 1 }
    signal(SIGINT) { _ in echoRoomStop = 1 }
    let end = Instant.now() + .milliseconds(Int64(seconds * 1000))
    while Instant.now() < end && echoRoomStop == 0 { usleep(100_000) }
    speaker.stop()
    mic.stop()
    let (underflows, trimmed) = room.counts
    fputs("end underflows=\(underflows) trimmed=\(trimmed) overruns=\(speaker.overruns) underruns=\(mic.underruns)\n", log)
    return 0
}

/// Set by SIGTERM or SIGINT: the room stops and writes its last line.
nonisolated(unsafe) private var echoRoomStop: sig_atomic_t = 0

/// The room between the speaker's capture thread and the microphone's playback thread: a
/// short FIFO (kept under 100 ms so the echo's delay stays put), the schedule and the log.
private final class EchoRoomLoop: @unchecked Sendable {
    private let lock = Lock()
    private var fifo = [Int16](repeating: 0, count: 48_000)
    private var head = 0, fill = 0
    private var underflows = 0, trimmed = 0
    // Capture thread only:
    private var path: EchoPath
    private let changedRoom: RoomResponse
    private let near: [Int16]
    private var nearAt = 0
    private var schedule = EchoRoomSchedule()
    private var echo = [Int16](repeating: 0, count: 960)
    private var mixed = [Int16](repeating: 0, count: 960)
    private var nearEnergy = 0.0, echoEnergy = 0.0, chunks = 0
    private let log: UnsafeMutablePointer<FILE>

    init(near: [Int16], room: RoomResponse, changedRoom: RoomResponse, log: UnsafeMutablePointer<FILE>) {
        self.near = near
        path = EchoPath(room: room)
        self.changedRoom = changedRoom
        self.log = log
    }

    var counts: (Int, Int) { lock.withLock { (underflows, trimmed) } }

    /// Capture thread: 20 ms the speaker played.
    func heard(_ chunk: [Int16]) {
        var far = 0.0
        for s in chunk { far += Double(s) * Double(s) }
        far /= Double(chunk.count) * 32768 * 32768
        if schedule.step(farLevel: far) {
            path.room = changedRoom
            fputs("change t=\(realtime())\n", log)
        }
        chunk.withUnsafeBufferPointer { path.played($0) }
        for i in 0..<echo.count { echo[i] = 0 }
        echo.withUnsafeMutableBufferPointer { path.addEcho(into: $0) }
        var n = 0.0, e = 0.0
        for i in 0..<mixed.count {
            var v = Int32(echo[i])
            if schedule.nearOn {
                let s = near[nearAt]
                nearAt = (nearAt + 1) % near.count
                n += Double(s) * Double(s)
                v += Int32(s)
            }
            e += Double(echo[i]) * Double(echo[i])
            mixed[i] = Int16(clamping: v)
        }
        let scale = 0.02 / Double(mixed.count) / (32768 * 32768)
        nearEnergy += n * scale
        echoEnergy += e * scale
        chunks += 1
        if chunks % 5 == 0 {
            fputs("t=\(realtime()) burst=\(schedule.burst) far=\(schedule.farActive ? 1 : 0) near=\(nearEnergy) echo=\(echoEnergy)\(schedule.done ? " done" : "")\n", log)
            fflush(log)
            nearEnergy = 0; echoEnergy = 0
        }
        lock.withLock {
            let capacity = fifo.count
            for s in mixed {
                fifo[(head + fill) % capacity] = s
                fill += 1
            }
            // Keep the loop's latency bounded: at most 100 ms queued.
            if fill > 4_800 {
                let drop = fill - 1_920
                head = (head + drop) % capacity
                fill -= drop
                trimmed += 1
            }
        }
    }

    /// Playback thread: the next 20 ms for the microphone.
    func render(_ out: UnsafeMutableBufferPointer<Int16>) -> Bool {
        lock.withLock {
            guard fill >= out.count else { underflows += 1; return false }
            let capacity = fifo.count
            for i in 0..<out.count { out[i] = fifo[(head + i) % capacity] }
            head = (head + out.count) % capacity
            fill -= out.count
            return true
        }
    }

    private func realtime() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return "\(ts.tv_sec).\(String(ts.tv_nsec / 1_000_000 + 1000).dropFirst())"
    }
}
