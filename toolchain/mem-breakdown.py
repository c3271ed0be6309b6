#!/usr/bin/env python3
"""Where a process's resident memory goes, from /proc/PID/smaps: per mapped file (the
executable, each shared library) its resident pages split into file-backed (shared with
the page cache, clean or dirty) and anonymous (copy-on-write: relocations, .data, .bss),
then the anonymous mappings (heap, thread stacks, mmap'ed buffers). Sizes in MB.

    mem-breakdown.py PID [--top N]
"""
import argparse
import collections
import re

ap = argparse.ArgumentParser()
ap.add_argument("pid", type=int)
ap.add_argument("--top", type=int, default=25)
args = ap.parse_args()

rss = collections.Counter()
anon = collections.Counter()
swap = collections.Counter()
name = None
header = re.compile(r"^[0-9a-f]+-[0-9a-f]+\s")
for line in open(f"/proc/{args.pid}/smaps"):
    if header.match(line):
        parts = line.split(None, 5)
        path = parts[5].strip() if len(parts) > 5 else ""
        if not path:
            name = "[anonymous mmap]"
        elif path.startswith("["):
            name = "[stack]" if path.startswith("[stack") else path
        else:
            name = path.rsplit("/", 1)[-1]
            name = re.sub(r"\.so[.0-9]*$", ".so", name)
        continue
    key, _, value = line.partition(":")
    if key == "Rss":
        rss[name] += int(value.split()[0])
    elif key == "Anonymous":
        anon[name] += int(value.split()[0])

total = sum(rss.values())
total_anon = sum(anon.values())
mb = lambda kb: kb / 1024
print(f"RSS {mb(total):.1f} MB: anonymous {mb(total_anon):.1f} MB, file-backed {mb(total - total_anon):.1f} MB")
print(f"{'mapping':34} {'RSS':>7} {'file':>7} {'anon':>7}")
for n, kb in rss.most_common(args.top):
    print(f"{n[:34]:34} {mb(kb):7.2f} {mb(kb - anon[n]):7.2f} {mb(anon[n]):7.2f}")
rest = total - sum(kb for _, kb in rss.most_common(args.top))
if rest > 0:
    print(f"{'(the rest)':34} {mb(rest):7.2f}")
