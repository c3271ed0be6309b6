#!/usr/bin/env python3
"""Host side of the board test (standard library only).

  board_check.py tone PATH     writes the tone the board's microphone hears (1 kHz, 60 s)
  board_check.py speech PATH VOICE PAD TEXT   espeak-ng speech, then PAD seconds of silence
  board_check.py echo SHARE    the speakerphone's figures from the echo call (scenarios/board-call.sh):
                               the room's log (videophone-bench --echo-room) beside the stage's
                               energies in and out, polled from the board's status
  board_check.py check SHARE [WIDTH]   checks what crossed the network and the sound card
                                       (WIDTH: the board's camera width, 640 unless given):
    - the peer outside the VM received video frames and decoded audio with a real level
      (the 1 kHz tone through snd-aloop → ALSA capture → Opus → SRTP), not silence;
    - the board played the peer's 440 Hz tone (SRTP → jitter buffer → Opus → ALSA
      playback → snd-aloop), recorded back in the VM;
    - the board sent vivid's frames at the configured width; prints the daemon's CPU time and peak memory.
"""
import array
import json
import math
import sys
import wave

RATE = 48000


def write_tone(path, freq=1000.0, seconds=60, amplitude=8000):
    samples = array.array("h", (int(amplitude * math.sin(2 * math.pi * freq * i / RATE)) for i in range(RATE * seconds)))
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(samples.tobytes())


def write_speech(path, voice, pad_seconds, text):
    """espeak-ng's speech (its own rate), followed by silence: a talker who pauses."""
    import subprocess
    import tempfile
    with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
        subprocess.run(["espeak-ng", "-v", voice, "-s", "165", "-w", tmp.name, text], check=True)
        with wave.open(tmp.name, "rb") as r:
            params, frames = r.getparams(), r.readframes(r.getnframes())
    with wave.open(path, "wb") as w:
        w.setparams(params)
        w.writeframes(frames + bytes(int(params.framerate * pad_seconds) * params.sampwidth * params.nchannels))


def echo_figures(share):
    """Sets the room's 100 ms blocks (what it wrote into the microphone: near-end speech and
    echo, and whether the far end talked) beside the stage's cumulative energies in and out
    (polled about twice a second). A poll interval counts for a condition when every block
    around it (0.4 s before: the audio's way through the sound cards) is of that condition."""
    blocks, change = [], None
    with open(f"{share}/echo-room.log") as f:
        for line in f:
            kv = dict(p.split("=", 1) for p in line.split() if "=" in p)
            if line.startswith("change"):
                change = float(kv["t"])
            elif line.startswith("t="):
                blocks.append((float(kv["t"]), int(kv["burst"]), kv["far"] == "1", float(kv["near"]), float(kv["echo"])))
    polls = []
    with open(f"{share}/echo-status.log") as f:
        for line in f:
            m = dict(p.split("=", 1) for p in line.split()[:2] if "=" in p)
            rest = line.split(" ", 2)[2] if line.count(" ") >= 2 else ""
            if '"microphoneEnergy"' not in rest:
                continue
            fields = json.loads("{" + rest.strip() + "}")
            polls.append(((float(m["t"]) + float(m["u"])) / 2, fields["microphoneEnergy"], fields["processedEnergy"],
                          fields.get("totalSamplesDuration", 0.0)))
    starts = {}
    for t, burst, *_ in blocks:
        starts.setdefault(burst, t)
    sums = {}
    # How much of the call's time the stage processed: under software emulation it can fall
    # behind real time, and then every figure here is of a microphone with holes in it.
    if len(polls) >= 2 and polls[-1][0] > polls[0][0]:
        print(f"INFO echo call: the stage processed {polls[-1][3] - polls[0][3]:.1f} s of audio in "
              f"{polls[-1][0] - polls[0][0]:.1f} s; status polls every {(polls[-1][0] - polls[0][0]) / (len(polls) - 1):.1f} s")
    for (t0, mic0, out0, _), (t1, mic1, out1, _) in zip(polls, polls[1:]):
        around = [b for b in blocks if t0 - 0.4 < b[0] <= t1]
        if not around or t1 - t0 > 2:
            continue
        far = {b[2] for b in around}
        near = {b[3] > 0 for b in around}
        bursts = {b[1] for b in around}
        if len(far) != 1 or len(near) != 1 or len(bursts) != 1:
            continue
        far, near, burst = far.pop(), near.pop(), bursts.pop()
        if far and not near:
            if burst == 1 and t0 >= starts[1] + 2:
                kind = "far-alone"
            elif burst >= 3 and change and change + 1 <= t0 and t1 <= change + 3:
                kind = "after-change"
            elif burst >= 3 and change and t1 <= change:
                kind = "before-change"
            else:
                continue
        elif far and near:
            kind = "double-talk"
        elif near:
            kind = "near-alone"
        elif burst >= 1:
            kind = "silence"
        else:
            continue
        near_energy = sum(b[3] for b in blocks if t0 - 0.15 < b[0] <= t1 - 0.15)
        s = sums.setdefault(kind, [0, 0.0, 0.0, 0.0, 0.0])
        s[0] += 1
        s[1] += mic1 - mic0
        s[2] += out1 - out0
        s[3] += near_energy
        s[4] += t1 - t0
    return sums, change is not None


def db(x):
    return 10 * math.log10(max(x, 1e-15))


def check_echo(share):
    failed = []

    def expect(name, ok, detail):
        print(f"CHECK {name} {'ok' if ok else 'FAIL'} {detail}")
        if not ok:
            failed.append(name)

    try:
        sums, changed = echo_figures(share)
    except (OSError, ValueError, KeyError) as e:
        expect("echo-room", False, f"no figures from the echo call: {e}")
        return 1
    counts = {k: v[0] for k, v in sums.items()}
    print(f"INFO echo call: poll intervals per condition {counts}; the room changed: {changed}")

    def erle(kind):
        n, mic, out, _, _ = sums.get(kind, [0, 0, 0, 0, 0])
        return (db(mic) - db(out)) if n >= 2 and mic > 0 else None

    far, after, before = erle("far-alone"), erle("after-change"), erle("before-change")
    expect("echo-erle", far is not None and far >= 25,
           f"far-end single talk after 2 s: ERLE {far if far is None else round(far, 1)} dB on what the board sends (target >= 25)")
    expect("echo-path-change", after is not None and after >= 20,
           f"echo path changed (room 40 ms longer, 2 dB down): ERLE {after if after is None else round(after, 1)} dB 1-3 s after "
           f"(before the change {before if before is None else round(before, 1)} dB; target >= 20 within 1 s)")
    dt, na = sums.get("double-talk"), sums.get("near-alone")
    if dt and na and dt[0] >= 2 and na[0] >= 2 and dt[3] > 0 and na[3] > 0:
        change_db = db(dt[2] / dt[3]) - db(na[2] / na[3])
        expect("echo-double-talk", change_db >= -6,
               f"near-end talker's level in what is sent, double talk against alone: {change_db:+.1f} dB (target >= -6)")
    else:
        expect("echo-double-talk", False, f"not enough double-talk / near-alone intervals: {counts}")
    if sums.get("silence", [0])[0] >= 1:
        s = sums["silence"]
        print(f"INFO silence: sent {db(s[2] / max(s[4], 1e-3)):.1f} dBFS")
    try:
        with open(f"{share}/echo-board-status.json") as f:
            ap = json.load(f).get("audioProcessing", {})
        print(f"INFO stage on the board (software emulation): {ap.get('library')}, processing per 10 ms frame median "
              f"{ap.get('processingMsMedian')} ms, p99 {ap.get('processingMsP99')} ms; delay reported {ap.get('systemDelayMs')} ms, "
              f"estimated {ap.get('estimatedDelayMs')} ms; library ERLE {ap.get('echoReturnLossEnhancementDb')} dB; "
              f"missing reference frames {ap.get('referenceMissingFrames')}, realignments {ap.get('realignments')}")
    except (OSError, ValueError) as e:
        print(f"INFO no board status from the echo call: {e}")
    return 1 if failed else 0


def read_wav(path):
    with wave.open(path, "rb") as w:
        assert w.getframerate() == RATE and w.getnchannels() == 1 and w.getsampwidth() == 2, "expected 48 kHz mono S16"
        data = array.array("h")
        data.frombytes(w.readframes(w.getnframes()))
        return data


def goertzel(block, freq):
    """Power of one frequency in a block of samples."""
    k = 2 * math.cos(2 * math.pi * freq / RATE)
    s1 = s2 = 0.0
    for x in block:
        s1, s2 = x + k * s1 - s2, s1
    return s1 * s1 + s2 * s2 - k * s1 * s2


def loudest_second(samples):
    best, best_rms = None, 0.0
    for start in range(0, len(samples) - RATE, RATE // 2):
        block = samples[start:start + RATE]
        rms = math.sqrt(sum(x * x for x in block[::4]) / (len(block) / 4))
        if rms > best_rms:
            best, best_rms = block, rms
    return best, best_rms / 32768


def peer_figures(path):
    frames = decoded = 0
    level = 0.0
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                status = json.loads(line)
            except json.JSONDecodeError:
                continue
            for s in status.get("call", {}).get("stats", []):
                if s.get("type") != "inbound-rtp":
                    continue
                if s.get("kind") == "video":
                    frames = max(frames, s.get("framesReceived", 0))
                else:
                    decoded = max(decoded, s.get("packetsDecoded", 0))
                    level = max(level, s.get("audioLevel", 0.0))
    return frames, decoded, level


def check(share, camera_width=640):
    failed = []

    def expect(name, ok, detail):
        print(f"CHECK {name} {'ok' if ok else 'FAIL'} {detail}")
        if not ok:
            failed.append(name)

    frames, decoded, level = peer_figures(f"{share}/peer-status.jsonl")
    expect("peer-video", frames >= 30, f"frames from the board's vivid camera at the peer: {frames}")
    expect("peer-audio", decoded >= 200 and level >= 0.05,
           f"packets from the board's snd-aloop microphone decoded at the peer: {decoded}, level {level:.3f} (silence < 0.01)")

    try:
        samples = read_wav(f"{share}/speaker.wav")
        block, rms = loudest_second(samples)
        if block is None:
            expect("board-speaker", False, "recording shorter than a second")
        else:
            p440, p1000 = goertzel(block, 440), goertzel(block, 1000)
            expect("board-speaker", rms >= 0.05 and p440 > 10 * p1000,
                   f"peer's 440 Hz tone played by the board and recorded back: level {rms:.3f}, 440 Hz/1 kHz power {p440 / max(p1000, 1):.0f}x")
    except (OSError, EOFError, wave.Error, AssertionError) as e:
        expect("board-speaker", False, f"no recording of the board's speaker: {e}")

    try:
        with open(f"{share}/board-status.json") as f:
            status = json.load(f)
        width = next((s.get("frameWidth") for s in status.get("call", {}).get("stats", []) if s.get("type") == "outbound-rtp" and s.get("kind") == "video"), None)
        expect("board-camera", width == camera_width, f"the board sends {width} pixels wide (vivid at {camera_width} wide)")
    except (OSError, json.JSONDecodeError) as e:
        expect("board-camera", False, f"no status from the board: {e}")

    try:
        with open(f"{share}/board-resources.txt") as f:
            fields = dict(kv.split("=", 1) for kv in f.read().split())
        cpu = int(fields["cpu_usec"]) / 1e6
        peak = fields.get("memory_peak", "?")
        peak_mb = f"{int(peak) / 2**20:.1f} MiB" if peak.isdigit() else peak
        print(f"INFO board daemon, under software emulation (not a target): CPU {cpu:.1f} s over the whole run "
              f"(call {fields.get('call_seconds')} s), peak memory {peak_mb} (cgroup), VmHWM {int(fields['vmhwm_kb']) / 1024:.1f} MiB")
        if "idle_vmrss_kb" in fields:
            print(f"INFO board daemon resident memory: idle VmRSS {int(fields['idle_vmrss_kb']) / 1024:.1f} MiB "
                  f"(VmHWM {int(fields['idle_vmhwm_kb']) / 1024:.1f} MiB), in call VmRSS {int(fields['call_vmrss_kb']) / 1024:.1f} MiB "
                  f"(VmHWM {int(fields['vmhwm_kb']) / 1024:.1f} MiB)")
    except (OSError, KeyError, ValueError) as e:
        print(f"INFO no resource figures: {e}")
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "tone":
        write_tone(sys.argv[2])
    elif len(sys.argv) == 6 and sys.argv[1] == "speech":
        write_speech(sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5])
    elif len(sys.argv) == 3 and sys.argv[1] == "echo":
        sys.exit(check_echo(sys.argv[2]))
    elif len(sys.argv) in (3, 4) and sys.argv[1] == "check":
        sys.exit(check(sys.argv[2], *(int(a) for a in sys.argv[3:])))
    else:
        sys.exit(__doc__)
