#!/usr/bin/env python3
"""Folds `perf script -F comm,tid,ip,sym,dso` output (with call graphs) into one line per
stack, `thread;outer;...;inner count` (speedscope and flamegraph.pl read it), and prints a
report: samples per thread, the functions with the most samples of their own (self) and
including their callees (inclusive). Swift names are demangled with swift-demangle.

    perf script ... | fold-stacks.py --folded cpu.folded > cpu-top.txt
"""
import argparse
import collections
import re
import shutil
import subprocess
import sys

ap = argparse.ArgumentParser()
ap.add_argument("--folded", required=True)
ap.add_argument("--top", type=int, default=30)
args = ap.parse_args()

stacks = collections.Counter()
frame_re = re.compile(r"^\s+[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$")


def flush(comm, frames):
    if comm is None:
        return
    if not frames:
        frames = ["[unknown]"]
    stacks[(comm,) + tuple(reversed(frames))] += 1


comm, frames = None, []
for line in sys.stdin:
    if not line.strip():
        flush(comm, frames)
        comm, frames = None, []
        continue
    if not line[0].isspace():
        flush(comm, frames)
        # "thread-name  tid" — thread names may contain spaces.
        comm = re.sub(r"\s+\d+\s*$", "", line.rstrip()).strip() or "?"
        frames = []
        continue
    m = frame_re.match(line)
    if m:
        sym, dso = m.group(1), m.group(2)
        sym = re.sub(r"\+0x[0-9a-f]+$", "", sym)
        if sym == "[unknown]":
            sym = "[" + dso.rsplit("/", 1)[-1] + "]"
        frames.append(sym)
flush(comm, frames)

# Demangle Swift symbols in one batch.
symbols = sorted({f for s in stacks for f in s[1:] if f.startswith(("$s", "_$s", "$S"))})
names = {}
demangler = shutil.which("swift-demangle") or "/opt/swift/usr/bin/swift-demangle"
if symbols and shutil.which(demangler):
    out = subprocess.run([demangler, "--simplified", "--compact"], input="\n".join(symbols) + "\n",
                         capture_output=True, text=True).stdout.splitlines()
    if len(out) == len(symbols):
        names = dict(zip(symbols, out))


def clean(f):
    f = names.get(f, f)
    return f.replace(";", ",")


total = sum(stacks.values())
with open(args.folded, "w") as fh:
    for s, n in sorted(stacks.items(), key=lambda kv: -kv[1]):
        fh.write(";".join(clean(f) for f in s) + f" {n}\n")

threads = collections.Counter()
self_ = collections.Counter()
incl = collections.Counter()
for s, n in stacks.items():
    threads[s[0]] += n
    self_[clean(s[-1])] += n
    for f in {clean(f) for f in s[1:]}:
        incl[f] += n


def pct(n):
    return f"{100.0 * n / total:5.1f} %" if total else "-"


print(f"samples: {total}")
print("\n## by thread")
for t, n in threads.most_common():
    print(f"{pct(n)}  {t}")
print(f"\n## self (top {args.top})")
for f, n in self_.most_common(args.top):
    print(f"{pct(n)}  {f}")
print(f"\n## inclusive (top {args.top})")
for f, n in incl.most_common(args.top):
    print(f"{pct(n)}  {f}")
top3 = ", ".join(f"{f[:60]} {100.0 * n / total:.1f} %" for f, n in self_.most_common(3)) if total else "no samples"
print(f"\nTOP3 {total} samples; self: {top3}")
