"""Abuse figures at full size (make bench): 50 000 GETs from 4 clients (3 runs), call set-up
under 40 slow-header connections (10 calls), an mDNS flood of 200 000 datagrams, and 1 000
calls in a row; each against its target, printed as median and spread.
    VIDEOPHONE_BIN=.build/release python3 Tests/Abuse/bench_abuse.py [gets|slow|mdns|calls ...]"""
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import abusebed as ab  # noqa: E402

RSS_TARGET_KB = 1024


def spread(xs, unit="", scale=1.0):
    xs = sorted(x * scale for x in xs)
    if not xs:
        return "-"
    q = statistics.quantiles(xs, n=10, method="inclusive") if len(xs) > 1 else [xs[0]] * 9
    return f"median {statistics.median(xs):.1f}{unit} (p10 {q[0]:.1f}, p90 {q[8]:.1f}, min {xs[0]:.1f}, max {xs[-1]:.1f}, n={len(xs)})"


def verdict(ok):
    return "met" if ok else "NOT MET"


def with_bed(fn):
    bed = ab.AbuseBed(tempfile.mkdtemp(prefix="videophone-abusebench-"))
    try:
        return fn(bed)
    finally:
        bed.close()


def gets(bed, total=50_000, runs=3):
    b = bed.device("b")
    ab.http_load(bed.b_ip, 8080, 2000, bed.sources)
    start = ab.settled_footprint(b)
    rates, growth, threads, maps = [], [], [], []
    for i in range(runs):
        before = ab.settled_footprint(b)
        load = ab.http_load(bed.b_ip, 8080, total, bed.sources)
        if not b.alive():
            print(f"  run {i + 1}: videophoned died (exit {b.proc.returncode}) after {load['statuses']} {load['errors']}")
            return
        after = ab.settled_footprint(b)
        rates.append(load["sent"] / load["seconds"])
        growth.append(after["rss_kb"] - before["rss_kb"])
        threads.append(after["threads"] - before["threads"])
        maps.append(after["maps"] - before["maps"])
        lat = load["latencies_ms"]
        print(f"  run {i + 1}: {load['sent']} GETs in {load['seconds']:.1f} s, statuses {load['statuses']}, errors {load['errors']}, "
              f"p50 {lat[len(lat) // 2]:.1f} ms, p99 {lat[int(len(lat) * 0.99)]:.1f} ms; {ab.describe(after)}")
    end = ab.settled_footprint(b)
    print(f"50 000 GETs, 4 clients: {spread(rates, ' req/s')}")
    print(f"  VmRSS growth per run: {spread(growth, ' kB')} (target ≤ {RSS_TARGET_KB} kB: {verdict(max(growth) <= RSS_TARGET_KB)}); "
          f"threads Δ {threads} ({verdict(all(t == 0 for t in threads))}); maps Δ {maps}")
    print(f"  over all {runs} runs: {ab.describe(start)} → {ab.describe(end)}")


def slow(bed, calls=10):
    a, b = bed.pair()
    ab.call_once(a, b)
    ab.hang_up(a, b)
    clean = []
    for _ in range(calls):
        t, _ = ab.call_once(a, b)
        ab.hang_up(a, b)
        if t:
            clean.append(t)
    loris = ab.SlowHeaders(bed.b_ip, 8080, 40, interval=0.5, sources=bed.sources).start()
    loaded, failed = [], 0
    try:
        time.sleep(6)
        for _ in range(calls):
            t, err = ab.call_once(a, b)
            ab.hang_up(a, b)
            if t:
                loaded.append(t)
            else:
                failed += 1
                print(f"  call failed: {err}")
            time.sleep(0.5)
    finally:
        loris.stop()
    print(f"call set-up (both ways decoding), no load: {spread(clean, ' ms', 1000)}")
    print(f"  with 40 slow-header connections: {spread(loaded, ' ms', 1000)}; {failed} failed; "
          f"target ≤ 1000 ms: {verdict(not failed and loaded and max(loaded) <= 1.0)}; "
          f"{loris.opened} connections opened, {loris.closed_by_server} closed by the server")


def mdns(bed, total=200_000):
    a, b = bed.pair(network="mdns = true")
    for _ in range(2):
        ab.call_once(a, b)
        ab.hang_up(a, b)
    ab.MDNSFlood(bed.client_ip, [bed.a_ip, bed.b_ip], 2000, seed=2).start().join(30)
    flood = ab.MDNSFlood(bed.client_ip, [bed.a_ip, bed.b_ip], total).start()
    t0 = time.monotonic()
    setups = []
    for _ in range(5):  # calls while it floods (each call costs memory of its own: not judged here)
        t, _ = ab.call_once(a, b)
        ab.hang_up(a, b)
        setups.append(t)
    before = {d.name: ab.settled_footprint(d) for d in (a, b)}
    sent_before = flood.sent
    flood.join(300)
    seconds = time.monotonic() - t0
    if not (a.alive() and b.alive()):
        print("mDNS flood: a daemon died")
        return
    after = {d.name: ab.settled_footprint(d) for d in (a, b)}
    ok = [t for t in setups if t]
    print(f"mDNS flood: {flood.sent} datagrams in {seconds:.1f} s ({flood.names} names never asked for); calls meanwhile "
          f"{len(ok)} of {len(setups)} up, set-up {spread(ok, ' ms', 1000)}")
    for n in before:
        g = after[n]["rss_kb"] - before[n]["rss_kb"]
        print(f"  {n}: after {sent_before} datagrams and the calls {ab.describe(before[n])} → after the other {flood.sent - sent_before} "
              f"{ab.describe(after[n])}; growth {g} kB (target ≤ {RSS_TARGET_KB}: {verdict(g <= RSS_TARGET_KB)})")


def calls(bed, total=1000, warmup=20, hold=1.0):
    """`total` calls of `hold` seconds each (the issue's figure: 1 000 calls of 1 s)."""
    a, b = bed.pair()
    setups, failures = [], 0
    before, marks = None, []
    t0 = time.monotonic()
    for i in range(warmup + total):
        if i == warmup:
            before = {d.name: ab.settled_footprint(d) for d in (a, b)}
        if i > warmup and (i - warmup) % 100 == 0:
            marks.append((i - warmup, a.footprint()["rss_kb"], b.footprint()["rss_kb"]))
        t, _ = ab.call_once(a, b)
        if t:
            setups.append(t)
            time.sleep(max(0.0, hold - t))
        else:
            failures += 1
        if not ab.hang_up(a, b):
            ab.wait(lambda: a.state() == "idle" and b.state() == "idle", 10)
        if not (a.alive() and b.alive()):
            print(f"  a daemon died after {i + 1} calls")
            return
    after = {d.name: ab.settled_footprint(d) for d in (a, b)}
    print(f"{total} calls of {hold:g} s in a row ({time.monotonic() - t0:.0f} s): set-up {spread(setups, ' ms', 1000)}; {failures} failed")
    print("  VmRSS kB every 100 calls (a, b): " + ", ".join(f"{n}: {x}/{y}" for n, x, y in marks))
    for n in before:
        g = after[n]["rss_kb"] - before[n]["rss_kb"]
        print(f"  {n}: after {warmup} warm-up calls {ab.describe(before[n])} → after {total} more {ab.describe(after[n])}; "
              f"growth {g} kB, {g / total:.2f} kB a call (target ≤ {RSS_TARGET_KB} kB: {verdict(g <= RSS_TARGET_KB)})")


def main():
    which = sys.argv[1:] or ["gets", "slow", "mdns", "calls"]
    ab.enter_client_namespace()
    try:
        for name in which:
            t0 = time.monotonic()
            print(f"== {name}", flush=True)
            with_bed(globals()[name])
            print(f"   ({time.monotonic() - t0:.0f} s)", flush=True)
    finally:
        ab.leave_client_namespace()


if __name__ == "__main__":
    main()
