#!/usr/bin/env python3
"""make perf-audit: the hot-path micro-benchmarks (Benchmarks/, ordo-one/package-benchmark)
and the end-to-end figures of videophone-bench, compared with the baseline stored in
Benchmarks/baseline.json. Exits 1 on a regression beyond the thresholds below.

    perf-audit.py [--fast] [--no-end-to-end] [--record] [--bench-binary DIR]

Thresholds (a figure regresses when it exceeds baseline × (1 + t)); wall time is the fastest
iteration (each iteration does the operation 1000 times), which the load of other processes
on a shared machine hardly moves; CPU time and malloc counts are medians:
    full run:  wall time and CPU time (when ≥ 50 ms per iteration) +15 %; end-to-end: CPU per call-minute and the CPU ratio
               to x264 +15 %, capture→wire p50 +30 %, set-up +50 %, RSS +10 %
    --fast:    wall and CPU time +250 % (a noisy, shared 2-core machine; part of make test;
               the same CPU name may be a slower host: on 2026-12-03 this machine ran the
               SRTP benchmarks 2.3-4x slower than the baseline at the same commit, while
               the calibration loop ran 1.5x slower);
               benchmarks with iterations of 20 ms CPU or more are judged by CPU time only
               (time slicing under load stretches their wall time, not their CPU time);
               a benchmark beyond it is run once more and keeps its faster figures, and
               passes if its ratio to the calibration benchmark is within the limit (load)
    always:    malloc counts per iteration + 5 % + 4 (they do not depend on the machine; the
               measurement itself makes 16 to 18 per iteration)

A baseline recorded on another machine (CPU model or core count differ) is not a failure:
the audit says so and compares each benchmark's time as a ratio to the `calibration`
benchmark (a fixed integer loop) measured in the same run, not absolute times.
--record writes this run as the new baseline (commit it with the figures in BENCHMARKS.md).
"""
import argparse
import datetime
import json
import os
import pathlib
import platform
import re
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
BASELINE = ROOT / "Benchmarks" / "baseline.json"
SWIFT = os.environ.get("SWIFT", "swift")

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--fast", action="store_true", help="short runs, loose time thresholds (make test)")
ap.add_argument("--no-end-to-end", action="store_true", help="skip videophone-bench")
ap.add_argument("--record", action="store_true", help="store this run as the baseline")
ap.add_argument("--bench-binary", default=str(ROOT / ".build" / "release"), help="folder with videophone-bench and videophoned")
ap.add_argument("--filter", default=None, help="only benchmarks matching this regexp")
ap.add_argument("--baseline", default=None, help="another baseline file (default Benchmarks/baseline.json)")
args = ap.parse_args()
if args.baseline:
    BASELINE = pathlib.Path(args.baseline).resolve()


def machine():
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "arch": platform.machine()}


def run_micro(only=None):
    """Runs the package-benchmark target; returns {name: {wall_us, cpu_us, mallocs}}."""
    out = pathlib.Path(tempfile.mkdtemp(prefix="perf-audit-"))
    env = dict(os.environ)
    if args.fast:
        env["VIDEOPHONE_BENCH_QUICK"] = "1"
    cmd = [SWIFT, "package", "--package-path", str(ROOT / "Benchmarks"), "--allow-writing-to-directory", str(out),
           "benchmark", "--format", "jmh", "--path", str(out), "--no-progress"]
    if only or args.filter:
        cmd += ["--filter", only or args.filter]
    print("perf-audit: " + " ".join(cmd), flush=True)
    r = subprocess.run(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        sys.stdout.write(r.stdout)
        sys.exit(f"perf-audit: the benchmark run failed (exit {r.returncode})")
    files = list(out.glob("*.jmh.json"))
    if not files:
        sys.stdout.write(r.stdout)
        sys.exit(f"perf-audit: the benchmark run wrote no JMH file into {out}")
    results = {}
    for element in json.load(open(files[0])):
        name = element["benchmark"].split("HotPath.", 1)[-1].replace("_", " ")
        fig = {}
        for metric, m in element.get("secondaryMetrics", {}).items():
            p50 = m["scorePercentiles"]["50.0"]
            low = metric.lower()
            if "wall" in low:
                # The fastest iteration: other processes on a shared machine only lengthen
                # iterations, so the minimum moves with the code and hardly with the load.
                fig["wall_us"] = m["scorePercentiles"]["0.0"]
                fig["wall_p50_us"] = p50
            elif "cpu" in low and "total" in low:
                fig["cpu_us"] = p50
            elif "malloc" in low and "total" in low:
                fig["mallocs"] = p50
        results[name] = fig
    return results


def run_end_to_end():
    binary = pathlib.Path(args.bench_binary)
    out = pathlib.Path(tempfile.mkdtemp(prefix="perf-audit-e2e-")) / "figures.json"
    cmd = [str(binary / "videophone-bench"), "--binary", str(binary / "videophoned"), "--calls", "10",
           "--call-seconds", "30", "--latency-seconds", "10", "--json", str(out)]
    print("perf-audit: " + " ".join(cmd), flush=True)
    r = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sys.stdout.write(r.stdout)
    if r.returncode != 0 or not out.exists():
        sys.exit(f"perf-audit: videophone-bench failed (exit {r.returncode})")
    return json.load(open(out))


now = {"machine": machine(), "recorded": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
       "micro": run_micro()}

if args.fast and BASELINE.exists() and not args.record:
    # A short run on a shared machine: a benchmark slower than the loose limit is run once
    # more and keeps its faster figures (a load spike rarely lasts through both).
    base_micro = json.load(open(BASELINE))["micro"]
    slow = [n for n, f in now["micro"].items() if n in base_micro and "wall_us" in f
            and f["wall_us"] > base_micro[n].get("wall_us", float("inf")) * 2.0]
    if slow:
        print("perf-audit: slower than the fast limit, running again: " + ", ".join(slow), flush=True)
        again = run_micro("^(" + "|".join(re.escape(n.replace(" ", "_")) for n in slow) + ")$")
        for n, f in again.items():
            if n in now["micro"]:
                for k, v in f.items():
                    if k != "mallocs":
                        now["micro"][n][k] = min(v, now["micro"][n].get(k, v))
if not args.no_end_to_end and not args.fast:
    now["end_to_end"] = run_end_to_end()

if args.record:
    BASELINE.write_text(json.dumps(now, indent=2, ensure_ascii=False) + "\n")
    print(f"perf-audit: baseline recorded in {BASELINE}")

if not BASELINE.exists():
    sys.exit("perf-audit: no baseline (Benchmarks/baseline.json); run with --record first")
base = json.load(open(BASELINE))
same_machine = base.get("machine") == now["machine"]
time_t = 2.50 if args.fast else 0.15
failures = []

if same_machine:
    print(f"\nperf-audit: baseline of {base['recorded']}, same machine ({now['machine']['cpu']}, {now['machine']['cores']} cores): absolute times")
else:
    print(f"\nperf-audit: the baseline was recorded on another machine ({base['machine']}), this is {now['machine']}: "
          "not a failure; times are compared as ratios to the calibration benchmark of each run")
cal_now = now["micro"].get("calibration", {}).get("wall_us")
cal_base = base["micro"].get("calibration", {}).get("wall_us")
if not same_machine and not (cal_now and cal_base):
    sys.exit("perf-audit: the calibration benchmark is missing; cannot compare across machines")

print(f"{'benchmark':50} {'metric':8} {'baseline':>12} {'now':>12} {'change':>8}  limit")
for name, fig in sorted(now["micro"].items()):
    b = base["micro"].get(name)
    if b is None:
        print(f"{name:50} (new, no baseline)")
        continue
    for metric, unit in (("wall_us", "µs"), ("cpu_us", "µs"), ("mallocs", "")):
        if metric not in fig or metric not in b:
            continue
        v, bv = fig[metric], b[metric]
        if metric == "mallocs":
            limit = bv * 1.05 + 4
            change = f"{v - bv:+.0f}"
            bad = v > limit
            lim = f"≤ {limit:.1f}"
        else:
            if name == "calibration" and not same_machine:
                continue
            long_iteration = b.get("cpu_us", 0) >= 20_000
            if args.fast and metric == "wall_us" and long_iteration:
                # Iterations of tens of milliseconds are time-sliced when other processes
                # load both cores (wall time doubles or triples): the fast run judges
                # them by their CPU time.
                print(f"{name:50} {metric:8} {bv:>10.3f}{unit:>2} {v:>10.3f}{unit:>2}  (fast run: judged by CPU time)")
                continue
            if args.fast and metric == "cpu_us" and long_iteration:
                pass
            elif metric == "cpu_us" and bv < 50_000:
                # package-benchmark reads CPU time from the kernel's 10 ms ticks here.
                print(f"{name:50} {metric:8} {bv:>10.0f}{unit:>2} {v:>10.0f}{unit:>2}  (below the CPU clock's resolution: not compared)")
                continue
            if not same_machine:
                v, bv = v / cal_now, bv / cal_base
                unit = "×cal"
            limit = bv * (1 + time_t)
            change = f"{(v / bv - 1) * 100:+.0f} %" if bv else "-"
            bad = v > limit
            lim = f"+{time_t * 100:.0f} %"
            if bad and args.fast and same_machine and cal_now and cal_base and name != "calibration":
                # Sustained load (another engineer's fuzzer on both cores) slows the
                # calibration loop as much: not a regression unless the ratio moved too.
                ratio = (v / cal_now) / (bv / cal_base)
                if ratio <= 1 + time_t:
                    bad = False
                    lim += f" (ratio to calibration {ratio:.2f}: load, not code)"
        mark = "  REGRESSION" if bad else ""
        print(f"{name:50} {metric:8} {bv:>10.3f}{unit:>2} {v:>10.3f}{unit:>2} {change:>8}  {lim}{mark}")
        if bad:
            failures.append(f"{name} {metric}: {bv:.3f} → {v:.3f} (limit {lim})")

if "end_to_end" in now and "end_to_end" in base:
    limits = {"call_cpu_s_per_minute": 0.15, "cpu_ratio_to_x264": 0.15, "cpu_ratio_to_codecs": 0.15, "capture_to_wire_p50_ms": 0.30,
              "setup_ms": 0.50, "idle_rss_mb": 0.10, "call_rss_peak_mb": 0.10}
    print(f"\n{'end to end':50} {'baseline':>12} {'now':>12} {'change':>8}  limit")
    for key, t in limits.items():
        v, bv = now["end_to_end"].get(key), base["end_to_end"].get(key)
        if v is None or bv is None:
            continue
        machine_bound = key in ("call_cpu_s_per_minute", "capture_to_wire_p50_ms", "setup_ms")
        if machine_bound and not same_machine:
            print(f"{key:50} {bv:>12.2f} {v:>12.2f}  (another machine: not compared; see cpu_ratio_to_x264)")
            continue
        bad = v > bv * (1 + t)
        print(f"{key:50} {bv:>12.2f} {v:>12.2f} {(v / bv - 1) * 100:+7.0f} %  +{t * 100:.0f} %{'  REGRESSION' if bad else ''}")
        if bad:
            failures.append(f"{key}: {bv:.2f} → {v:.2f} (limit +{t * 100:.0f} %)")

if failures:
    print("\nperf-audit: FAILED, regressions beyond the thresholds:\n  " + "\n  ".join(failures))
    sys.exit(1)
print("\nperf-audit: passed (no regression beyond the thresholds)")
