#!/usr/bin/env python3
"""Host side of the board's screen checks (standard library only).

  board_screens.py serve SHARE PEER_SOCKET CTL
      Runs beside QEMU: when the board's scenario writes SHARE/screen-request-NAME, takes
      QEMU's own screendump through QMP (SHARE/qmp.sock) into SHARE/NAME.ppm and writes
      SHARE/screen-done-NAME. A request named "ring" instead has the peer outside the VM
      call the board (CTL --socket PEER_SOCKET call board), so the board rings.
  board_screens.py check SHARE
      Checks the dumps: the idle and ringing screens show their text regions (white text on
      their backgrounds, centred), the call screens are the peer's test pattern filling the
      screen (its grey bars in several levels across, no bars, no idle background) and they
      change between two dumps.
"""
import json
import os
import socket
import subprocess
import sys
import time

IDLE_BG = (0x10, 0x20, 0x2C)
RING_BG = (0x1E, 0x5A, 0xA8)


def qmp_connect(path, timeout=600):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            f = s.makefile("rw")
            json.loads(f.readline())  # greeting
            f.write(json.dumps({"execute": "qmp_capabilities"}) + "\n")
            f.flush()
            json.loads(f.readline())
            return s, f
        except OSError:
            time.sleep(0.5)
    return None, None


def qmp(f, command, **arguments):
    f.write(json.dumps({"execute": command, "arguments": arguments}) + "\n")
    f.flush()
    while True:
        reply = json.loads(f.readline())
        if "return" in reply or "error" in reply:
            return reply


def serve(share, peer_socket, ctl):
    sock, f = qmp_connect(os.path.join(share, "qmp.sock"))
    if f is None:
        return 1
    while os.path.exists(os.path.join(share, "qmp.sock")):
        for name in sorted(os.listdir(share)):
            if not name.startswith("screen-request-"):
                continue
            what = name[len("screen-request-"):]
            os.unlink(os.path.join(share, name))
            if what == "ring":
                r = subprocess.run([ctl, "--socket", peer_socket, "call", "board"], capture_output=True, text=True)
                result = (r.stdout + r.stderr).strip()
            else:
                try:
                    result = json.dumps(qmp(f, "screendump", filename=os.path.join(share, what + ".ppm")))
                except (OSError, ValueError) as e:
                    result = f"screendump failed: {e}"
            with open(os.path.join(share, "screen-done-" + what), "w") as out:
                out.write(result + "\n")
        try:
            time.sleep(0.1)
        except KeyboardInterrupt:
            break
    return 0


def read_ppm(path):
    data = open(path, "rb").read()
    parts, i = [], 0
    while len(parts) < 4:
        while data[i:i + 1].isspace():
            i += 1
        if data[i:i + 1] == b"#":
            while data[i:i + 1] != b"\n":
                i += 1
            continue
        j = i
        while not data[j:j + 1].isspace():
            j += 1
        parts.append(data[i:j])
        i = j
    i += 1
    assert parts[0] == b"P6" and parts[3] == b"255", "expected a binary 8-bit PPM"
    w, h = int(parts[1]), int(parts[2])
    px = data[i:i + w * h * 3]
    return w, h, [[tuple(px[(y * w + x) * 3:(y * w + x) * 3 + 3]) for x in range(w)] for y in range(h)]


def luma(p):
    return (299 * p[0] + 587 * p[1] + 114 * p[2]) // 1000


def check(share):
    failed = []

    def expect(name, ok, detail):
        print(f"CHECK {name} {'ok' if ok else 'FAIL'} {detail}")
        if not ok:
            failed.append(name)

    def text_screen(name, background):
        path = os.path.join(share, name + ".ppm")
        if not os.path.exists(path):
            expect(f"screen-{name}", False, f"no screendump ({path})")
            return
        w, h, rows = read_ppm(path)
        white = [(x, y) for y in range(0, h, 2) for x in range(0, w, 2) if rows[y][x] == (255, 255, 255)]
        bg = sum(rows[y][x] == background for y in range(0, h, 8) for x in range(0, w, 8))
        total = len(range(0, h, 8)) * len(range(0, w, 8))
        if not white:
            expect(f"screen-{name}", False, f"{w}x{h}: no white text at all")
            return
        xs, ys = [p[0] for p in white], [p[1] for p in white]
        left, right, top, bottom = min(xs), max(xs), min(ys), max(ys)
        centred = abs((left + right) / 2 - w / 2) < w * 0.08
        expect(f"screen-{name}", centred and bg > total * 0.7 and bottom - top >= h // 10 and len(white) > 200,
               f"{w}x{h}: text region {right - left + 1}x{bottom - top + 1} at {left},{top} (centred: {centred}), "
               f"{len(white)} text samples, background {bg * 100 // total} %")

    text_screen("idle", IDLE_BG)
    text_screen("ringing", RING_BG)
    shots = []
    for name in ("call-1", "call-2"):
        path = os.path.join(share, name + ".ppm")
        if not os.path.exists(path):
            expect(f"screen-{name}", False, f"no screendump ({path})")
            continue
        w, h, rows = read_ppm(path)
        shots.append(rows)
        samples = [rows[y][x] for y in range(0, h * 3 // 4, 6) for x in range(0, w, 6)]
        idle_like = sum(p == IDLE_BG for p in samples)
        # No letterbox or pillarbox: the outer columns and rows are picture, not exact black.
        border = [rows[y][x] for y in range(0, h, 4) for x in (0, 1, w - 2, w - 1)] + [rows[y][x] for y in (0, 1, h - 2, h - 1) for x in range(0, w, 4)]
        black = sum(p == (0, 0, 0) for p in border)
        row = [luma(rows[h // 8][x]) for x in range(0, w, 4)]
        levels = len({v // 24 for v in row})
        expect(f"screen-{name}", idle_like == 0 and max(row) - min(row) > 150 and levels >= 5 and black < len(border) // 4,
               f"{w}x{h}: the peer's test pattern across the screen: {levels} grey levels in a row "
               f"(luma {min(row)}–{max(row)}), idle-background samples {idle_like}, black border samples {black}/{len(border)}")
    if len(shots) == 2:
        changed = sum(a != b for ra, rb in zip(shots[0], shots[1]) for a, b in zip(ra[::4], rb[::4]))
        expect("screen-moves", changed > len(shots[0]) * len(shots[0][0]) // 4 // 20, f"{changed} samples differ between the two call dumps")
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "serve":
        sys.exit(serve(sys.argv[2], sys.argv[3], sys.argv[4]))
    elif len(sys.argv) == 3 and sys.argv[1] == "check":
        sys.exit(check(sys.argv[2]))
    else:
        sys.exit(__doc__)
