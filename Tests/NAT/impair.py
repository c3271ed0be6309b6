"""A user-space impairment relay for the test bed (this kernel has no netem).

It owns a TUN interface in the WAN namespace; policy routes send the traffic between two
sites through it (testbed.TestBed.impair). Every IP packet read from the TUN is dropped,
delayed or passed, then written back, and the kernel routes it on to its destination.

Commands arrive one per line on stdin, as `key=value` words:
    loss=0.05            random loss, per packet
    burst=5              with loss: Gilbert-Elliott bursts of this mean length at that mean loss
    delay=75 jitter=30   one-way delay in ms, plus a uniform ±jitter per packet
    reorder=1            let jitter reorder packets (otherwise each keeps its order)
    outage=3             drop everything for 3 s from now
    seed=7               reseed the generator (the bed is deterministic per seed)
    stats                print a JSON line of counters on stdout
`clear` goes back to a clean link. Every command is answered with one line on stdout.
"""
import fcntl
import heapq
import json
import os
import random
import select
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000
MAX_QUEUE = 10_000  # a bound: packets held for delay beyond this are dropped (counted)


class Link:
    """The impairment state; `decide(now)` says when a packet leaves, or None to drop it."""

    def __init__(self, seed=1):
        self.rng = random.Random(seed)
        self.clear()
        self.counts = {"in": 0, "out": 0, "lost": 0, "outage": 0, "overflow": 0, "reordered": 0}

    def clear(self):
        self.loss, self.burst, self.delay, self.jitter = 0.0, 0.0, 0.0, 0.0
        self.reorder, self.outage_until, self.bad, self.last_due = False, 0.0, False, 0.0

    def set(self, key, value, now):
        if key == "loss":
            self.loss = float(value)
        elif key == "burst":
            self.burst = float(value)
        elif key == "delay":
            self.delay = float(value) / 1000
        elif key == "jitter":
            self.jitter = float(value) / 1000
        elif key == "reorder":
            self.reorder = value not in ("0", "false", "no")
        elif key == "outage":
            self.outage_until = now + float(value)
        elif key == "seed":
            self.rng.seed(int(value))
        else:
            raise ValueError(f"unknown setting {key!r}")

    def lost(self):
        if self.loss <= 0:
            return False
        if self.burst <= 1:
            return self.rng.random() < self.loss
        # Gilbert-Elliott: every packet in the bad state is lost; the bad state lasts
        # `burst` packets on average, and is entered often enough for `loss` overall.
        leave = 1 / self.burst
        enter = self.loss * leave / (1 - self.loss)
        self.bad = (self.rng.random() >= leave) if self.bad else (self.rng.random() < enter)
        return self.bad

    def decide(self, now):
        self.counts["in"] += 1
        if now < self.outage_until:
            self.counts["outage"] += 1
            return None
        if self.lost():
            self.counts["lost"] += 1
            return None
        due = now + self.delay + (self.rng.uniform(-self.jitter, self.jitter) if self.jitter else 0)
        if due < self.last_due:
            if self.reorder:
                self.counts["reordered"] += 1
            else:
                due = self.last_due
        self.last_due = max(self.last_due, due)
        return max(due, now)


def open_tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    os.set_blocking(fd, False)
    return fd


def main():
    name = sys.argv[1]
    link = Link(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
    tun = open_tun(name)
    held, serial = [], 0
    print("ready", flush=True)
    stdin = sys.stdin.fileno()
    while True:
        now = time.monotonic()
        while held and held[0][0] <= now:
            _, _, packet = heapq.heappop(held)
            os.write(tun, packet)
            link.counts["out"] += 1
        timeout = max(0.0, held[0][0] - now) if held else 1.0
        readable, _, _ = select.select([tun, stdin], [], [], timeout)
        now = time.monotonic()
        if tun in readable:
            for _ in range(64):  # a bounded batch, then the due packets get their turn
                try:
                    packet = os.read(tun, 65536)
                except BlockingIOError:
                    break
                due = link.decide(now)
                if due is None:
                    continue
                if len(held) >= MAX_QUEUE:
                    link.counts["overflow"] += 1
                    continue
                if due <= now and not held:
                    os.write(tun, packet)
                    link.counts["out"] += 1
                else:
                    serial += 1
                    heapq.heappush(held, (due, serial, packet))
        if stdin in readable:
            line = sys.stdin.readline()
            if not line:
                return
            words = line.split()
            try:
                if words == ["stats"]:
                    print(json.dumps(link.counts), flush=True)
                    continue
                for w in words:
                    if w == "clear":
                        link.clear()
                    else:
                        key, _, value = w.partition("=")
                        link.set(key, value, now)
                print("ok", flush=True)
            except ValueError as e:
                print(f"error: {e}", flush=True)


if __name__ == "__main__":
    main()
