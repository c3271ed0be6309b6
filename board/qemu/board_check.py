#!/usr/bin/env python3
"""Host side of the board test (standard library only).

  board_check.py tone PATH     writes the tone the board's microphone hears (1 kHz, 60 s)
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
    elif len(sys.argv) in (3, 4) and sys.argv[1] == "check":
        sys.exit(check(sys.argv[2], *(int(a) for a in sys.argv[3:])))
    else:
        sys.exit(__doc__)
