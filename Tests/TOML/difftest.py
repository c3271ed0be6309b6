#!/usr/bin/env python3
"""Differential test of the firmware's TOML parser against Python's tomllib.

Generates TOML documents (every value type, nesting, every string form, quoted and dotted
keys, inline tables, arrays of tables, comments, CRLF), some of them damaged on purpose,
and has both parsers read each one: they must agree on the value, or both refuse it.

    Tests/TOML/difftest.py --binary .build/debug/videophone-toml --count 5000 --seed 15
    Tests/TOML/difftest.py --count 100000            # make fuzz: a random seed, printed

On a disagreement it prints the document (repr), both results, writes it to
--failures DIR (default /tmp/toml-difftest) and exits 1. Deliberate limits of the
generator, where tomllib departs from TOML 1.0 or the firmware chooses to: integers stay
within 64 bits (tomllib reads any size; TOML requires refusing what does not fit), years
are 1000-9999 (tomllib refuses year 0, which TOML allows).
"""

import argparse
import json
import os
import random
import struct
import subprocess
import sys
import time
import tomllib
import datetime

BARE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
STRING_CHARS = (
    list("abcdefghijklmnopqrstuvwxyz ABC0123456789")
    + ['"', "'", "\\", "\t", "\n", "#", "=", "[", "]", "{", "}", ",", ".", "é", "ß", "日本", "😀", "\u2028", "\x00", "\x01", "\x1f", "\x7f", "\r", "\b", "\f"]
)
KEY_CHARS = list("abcxyz019 _-.\"'\\#=") + ["é", "😀", "\t"]


class Gen:
    def __init__(self, rng):
        self.r = rng
        self.depth = 0

    # ---------- keys ----------
    def key_name(self):
        r = self.r
        k = r.random()
        if k < 0.7:
            return "".join(r.choice(BARE) for _ in range(r.randint(1, 8)))
        if k < 0.75:
            return r.choice(["true", "false", "inf", "nan", "1234", "1979-05-27", "0x1F", "-"])
        return "".join(r.choice(KEY_CHARS) for _ in range(r.randint(0, 6)))

    def render_key_part(self, k):
        r = self.r
        if k and all(c in BARE for c in k) and r.random() < 0.85:
            return k
        if "'" not in k and all(c == "\t" or (ord(c) >= 0x20 and ord(c) != 0x7F) for c in k) and r.random() < 0.4:
            return "'" + k + "'"
        return '"' + self.escape_basic(k, multiline=False) + '"'

    def render_key(self, parts):
        sep = self.r.choice([".", ".", " . ", ".\t"])
        return sep.join(self.render_key_part(p) for p in parts)

    # ---------- strings ----------
    def string_value(self):
        r = self.r
        return "".join(r.choice(STRING_CHARS) for _ in range(r.choice([0, 1, 3, 8, 20])))

    def escape_char(self, c):
        r = self.r
        named = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r", '"': '\\"', "\\": "\\\\"}
        if c in named and r.random() < 0.8:
            return named[c]
        if ord(c) <= 0xFFFF and r.random() < 0.7:
            return "\\u%04x" % ord(c) if r.random() < 0.5 else "\\u%04X" % ord(c)
        return "\\U%08X" % ord(c)

    def escape_basic(self, s, multiline):
        r = self.r
        out = []
        raw_quotes = 0
        for c in s:
            must = c == "\\" or (ord(c) < 0x20 and c != "\t" and not (multiline and c == "\n")) or ord(c) == 0x7F
            if c == '"':
                must = must or not multiline or raw_quotes >= 2
            if must or (ord(c) > 0x7F and r.random() < 0.2) or r.random() < 0.03:
                out.append(self.escape_char(c))
                raw_quotes = 0
            else:
                out.append(c)
                raw_quotes = raw_quotes + 1 if c == '"' else 0
        if multiline and r.random() < 0.3:
            # A line-ending backslash before a non-space character: trimmed, so it adds nothing.
            spots = [i for i, piece in enumerate(out) if piece[0] not in " \t\n"]
            if spots:
                i = r.choice(spots)
                out.insert(i, "\\" + r.choice(["", " ", "\t "]) + "\n" + r.choice(["", "  ", "\n\t"]))
        return "".join(out)

    def render_string(self, s):
        r = self.r
        forms = ["basic", "mlbasic"]
        if all(c == "\t" or (ord(c) >= 0x20 and ord(c) != 0x7F) for c in s) and "'" not in s:
            forms.append("literal")
        if all(c in "\t\n" or (ord(c) >= 0x20 and ord(c) != 0x7F) for c in s) and "'''" not in s and not s.endswith("'''"):
            forms.append("mlliteral")
        form = r.choice(forms)
        if form == "basic":
            return '"' + self.escape_basic(s, False) + '"'
        if form == "literal":
            return "'" + s + "'"
        if form == "mlbasic":
            body = self.escape_basic(s, True)
            lead = "\n" if (s.startswith("\n") or r.random() < 0.5) else ""
            if body.endswith('"""'):
                body = body[:-1] + '\\"'
            return '"""' + lead + body + '"""'
        # multi-line literal: content may end in at most two quotes
        if s.endswith("'") and len(s) - len(s.rstrip("'")) > 2:
            return '"' + self.escape_basic(s, False) + '"'
        lead = "\n" if (s.startswith("\n") or r.random() < 0.5) else ""
        return "'''" + lead + s + "'''"

    # ---------- scalars ----------
    def underscored(self, digits):
        r = self.r
        if len(digits) < 2 or r.random() < 0.7:
            return digits
        out = digits[0]
        for d in digits[1:]:
            if r.random() < 0.3:
                out += "_"
            out += d
        return out

    def integer(self):
        r = self.r
        v = r.choice([0, 1, -1, 7, 42, r.randint(-1000, 1000), r.randint(-(2**62), 2**62)])
        form = r.random()
        if v >= 0 and form < 0.12:
            return "0x" + self.underscored(format(v, r.choice(["x", "X"])))
        if v >= 0 and form < 0.2:
            return "0o" + self.underscored(format(v, "o"))
        if v >= 0 and form < 0.28:
            return "0b" + self.underscored(format(v, "b"))
        sign = "-" if v < 0 else r.choice(["", "", "+"])
        return sign + self.underscored(str(abs(v)))

    def float_text(self):
        r = self.r
        k = r.random()
        if k < 0.08:
            return r.choice(["", "+", "-"]) + r.choice(["inf", "nan"])
        sign = r.choice(["", "", "-", "+"])
        ip = r.choice(["0", str(r.randint(1, 9)), str(r.randint(1, 10**6))])
        frac = "".join(r.choice("0123456789") for _ in range(r.randint(1, 8)))
        exp = r.choice(["e", "E"]) + r.choice(["", "+", "-"]) + str(r.choice([0, 1, 5, 22, 300, r.randint(0, 330)]))
        shape = r.random()
        if shape < 0.5:
            return sign + self.underscored(ip) + "." + self.underscored(frac)
        if shape < 0.75:
            return sign + self.underscored(ip) + exp
        return sign + ip + "." + frac + exp

    def datetime_text(self):
        r = self.r
        y, m = r.randint(1000, 9999), r.randint(1, 12)
        d = r.randint(1, [31, 29 if (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m - 1])
        date = "%04d-%02d-%02d" % (y, m, d)
        tm = "%02d:%02d:%02d" % (r.randint(0, 23), r.randint(0, 59), r.randint(0, 59))
        if r.random() < 0.4:
            tm += "." + "".join(r.choice("0123456789") for _ in range(r.randint(1, 9)))
        kind = r.random()
        if kind < 0.2:
            return date
        if kind < 0.35:
            return tm
        dt = date + r.choice(["T", "t", " "]) + tm
        if kind < 0.55:
            return dt
        off = r.choice(["Z", "z", "+00:00", "-00:00", "+05:30", "-08:00", "+%02d:%02d" % (r.randint(0, 23), r.randint(0, 59))])
        return dt + off

    def scalar(self):
        r = self.r
        k = r.random()
        if k < 0.3:
            return self.render_string(self.string_value())
        if k < 0.5:
            return self.integer()
        if k < 0.65:
            return self.float_text()
        if k < 0.75:
            return r.choice(["true", "false"])
        return self.datetime_text()

    # ---------- compound values ----------
    def value(self, nl):
        r = self.r
        k = r.random()
        if self.depth < 4 and k < 0.12:
            return self.array(nl)
        if self.depth < 4 and k < 0.2:
            return self.inline_table()
        return self.scalar()

    def array(self, nl):
        r = self.r
        self.depth += 1
        items = [self.value(nl) for _ in range(r.choice([0, 1, 2, 3, 5]))]
        self.depth -= 1
        inline = nl == " "  # inside an inline table: one line, no comments
        if not items:
            return r.choice(["[]", "[ ]"] + ([] if inline else ["[" + nl + "]", "[ # c" + nl + "]"]))
        if inline or r.random() < 0.5:
            return "[" + ", ".join(items) + r.choice(["", ",", " , "]) + "]"
        out = "["
        for it in items:
            out += nl + r.choice(["  ", "\t", ""]) + it + r.choice([",", " ,"]) + r.choice(["", " # élément", "#"])
        if r.random() < 0.5:
            out = out.rstrip(",")
        return out + nl + "]"

    def inline_table(self):
        r = self.r
        self.depth += 1
        used = set()
        parts = []
        for _ in range(r.choice([0, 1, 2, 4])):
            k = self.key_name()
            if k in used:
                continue
            used.add(k)
            if r.random() < 0.2:
                sub = self.key_name()
                parts.append(self.render_key([k, sub]) + " = " + self.value(" "))
            else:
                parts.append(self.render_key_part(k) + r.choice([" = ", "=", "\t=  "]) + self.value(" "))
        self.depth -= 1
        if not parts:
            return r.choice(["{}", "{ }"])
        return "{ " + ", ".join(parts) + " }"

    # ---------- documents ----------
    def table_body(self, path, lines, nl, budget):
        """Key/value lines of one table; returns child tables to render under headers."""
        r = self.r
        used = set()
        children = []
        for _ in range(r.randint(0, budget)):
            k = self.key_name()
            if k in used:
                continue
            used.add(k)
            c = r.random()
            if c < 0.12 and len(path) < 3:
                children.append(("table", path + [k]))
            elif c < 0.2 and len(path) < 3:
                children.append(("array", path + [k]))
            elif c < 0.3:
                # dotted keys: k.a = ..., k.b.c = ...
                subs = set()
                for _ in range(r.randint(1, 3)):
                    s = self.key_name()
                    if s in subs:
                        continue
                    subs.add(s)
                    lines.append(self.render_key([k, s]) + r.choice([" = ", "="]) + self.value(nl) + self.trailer())
            else:
                lines.append(self.render_key_part(k) + r.choice([" = ", "=", " =\t"]) + self.value(nl) + self.trailer())
            if r.random() < 0.1:
                lines.append(r.choice(["", "# a comment", "   # indented comment with ünïcode", "\t"]))
        return children

    def trailer(self):
        r = self.r
        return r.choice(["", "", "", " # trailing", "\t#", "  "])

    def render_tables(self, children, lines, nl, budget):
        r = self.r
        for kind, path in children:
            if kind == "table":
                if r.random() < 0.85:
                    lines.append("[" + r.choice(["", " "]) + self.render_key(path) + r.choice(["", " "]) + "]" + self.trailer())
                    sub = self.table_body(path, lines, nl, budget)
                else:
                    # implicit parent: only its sub-tables get headers
                    sub = [("table", path + [self.key_name()])]
                self.render_tables(sub, lines, nl, max(1, budget - 2))
            else:
                for _ in range(r.randint(1, 3)):
                    lines.append("[[" + r.choice(["", " "]) + self.render_key(path) + r.choice(["", " "]) + "]]" + self.trailer())
                    sub = self.table_body(path, lines, nl, budget)
                    self.render_tables(sub, lines, nl, max(1, budget - 2))

    def document(self):
        r = self.r
        crlf = r.random()
        nl = "\r\n" if crlf < 0.3 else "\n"
        lines = []
        if r.random() < 0.3:
            lines.append("# generated document")
        children = self.table_body([], lines, nl, 8)
        self.render_tables(children, lines, nl, 6)
        if crlf > 0.9:  # mixed line endings
            return "".join(l + r.choice(["\n", "\r\n"]) for l in lines)
        return nl.join(lines) + r.choice(["", nl])


MUTATION_CHARS = list("\"'[]{}=,.#\\ \t\n_-+:xobeEzZT") + ["é", "\x00", "\x7f", "\r", "\r\n", '"""', "'''"]


def mutate(rng, doc):
    for _ in range(rng.randint(1, 2)):
        op = rng.random()
        if not doc:
            doc = rng.choice(MUTATION_CHARS)
            continue
        i = rng.randrange(len(doc))
        if op < 0.3:
            doc = doc[:i] + doc[i + 1:]
        elif op < 0.6:
            doc = doc[:i] + rng.choice(MUTATION_CHARS) + doc[i:]
        elif op < 0.75:
            lines = doc.split("\n")
            j = rng.randrange(len(lines))
            lines.insert(j, lines[j])
            doc = "\n".join(lines)
        elif op < 0.9:
            lines = doc.split("\n")
            a, b = rng.randrange(len(lines)), rng.randrange(len(lines))
            lines[a], lines[b] = lines[b], lines[a]
            doc = "\n".join(lines)
        else:
            doc = doc[:i]
    return doc


def has_big_int(v):
    if isinstance(v, dict):
        return any(has_big_int(x) for x in v.values())
    if isinstance(v, list):
        return any(has_big_int(x) for x in v)
    return isinstance(v, int) and not isinstance(v, bool) and not (-(2**63) <= v < 2**63)


def tagged(v):
    """tomllib's result in the toml-test JSON form videophone-toml prints."""
    if isinstance(v, dict):
        return {k: tagged(x) for k, x in v.items()}
    if isinstance(v, list):
        return [tagged(x) for x in v]
    if isinstance(v, bool):
        return {"type": "bool", "value": "true" if v else "false"}
    if isinstance(v, int):
        return {"type": "integer", "value": str(v)}
    if isinstance(v, float):
        return {"type": "float", "value": "nan" if v != v else str(struct.unpack("<Q", struct.pack("<d", v))[0])}
    if isinstance(v, str):
        return {"type": "string", "value": v}
    if isinstance(v, datetime.datetime):
        s = "%04d-%02d-%02dT%02d:%02d:%02d.%06d" % (v.year, v.month, v.day, v.hour, v.minute, v.second, v.microsecond)
        if v.tzinfo is None:
            return {"type": "datetime-local", "value": s}
        off = int(v.utcoffset().total_seconds()) // 60
        s += ("-" if off < 0 else "+") + "%02d:%02d" % (abs(off) // 60, abs(off) % 60)
        return {"type": "datetime", "value": s}
    if isinstance(v, datetime.date):
        return {"type": "date-local", "value": "%04d-%02d-%02d" % (v.year, v.month, v.day)}
    if isinstance(v, datetime.time):
        return {"type": "time-local", "value": "%02d:%02d:%02d.%06d" % (v.hour, v.minute, v.second, v.microsecond)}
    raise TypeError(type(v))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", default=os.environ.get("VIDEOPHONE_TOML", ".build/debug/videophone-toml"))
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--mutate", type=float, default=0.35, help="share of documents damaged on purpose")
    ap.add_argument("--failures", default="/tmp/toml-difftest")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    proc = subprocess.Popen([args.binary, "--batch"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    counts = {"both accept": 0, "both refuse": 0}
    clean_refused = 0
    clean_total = 0
    start = time.monotonic()
    for n in range(args.count):
        gen = Gen(rng)
        doc = gen.document()
        damaged = rng.random() < args.mutate
        if damaged:
            doc = mutate(rng, doc)
        else:
            clean_total += 1
        data = doc.encode("utf-8", "surrogatepass")
        proc.stdin.write(b"%d\n" % len(data) + data)
        proc.stdin.flush()
        line = proc.stdout.readline().decode()
        if not line:
            print(f"difftest: videophone-toml stopped at document {n} (seed {seed})", file=sys.stderr)
            sys.exit(1)
        ours_ok = line.startswith("ok ")
        ours = json.loads(line[3:]) if ours_ok else line[6:].strip()
        try:
            ref = tagged(tomllib.loads(doc))
            ref_ok = True
        except tomllib.TOMLDecodeError as e:
            ref, ref_ok = str(e), False
        if ours_ok and ref_ok and ours == ref:
            counts["both accept"] += 1
            continue
        if not ours_ok and ref_ok and "does not fit in 64 bits" in ours and has_big_int(tomllib.loads(doc)):
            # tomllib reads integers of any size; TOML 1.0 says to refuse them, as we do.
            counts["big int"] = counts.get("big int", 0) + 1
            continue
        if not ours_ok and not ref_ok:
            counts["both refuse"] += 1
            if not damaged:
                clean_refused += 1
            continue
        os.makedirs(args.failures, exist_ok=True)
        path = os.path.join(args.failures, f"seed{seed}-doc{n}.toml")
        with open(path, "wb") as f:
            f.write(data)
        print(f"difftest: DISAGREEMENT on document {n} (seed {seed}, {'damaged' if damaged else 'generated'}), saved to {path}")
        print("document:", repr(doc)[:3000])
        print("ours:    ", json.dumps(ours)[:3000] if ours_ok else ours)
        print("tomllib: ", json.dumps(ref)[:3000] if ref_ok else ref)
        sys.exit(1)
    proc.stdin.close()
    proc.wait()
    secs = time.monotonic() - start
    print(f"difftest: {args.count} documents (seed {seed}) in {secs:.1f} s: "
          f"{counts['both accept']} read alike, {counts['both refuse']} refused by both "
          f"({clean_refused} of {clean_total} undamaged), {counts.get('big int', 0)} integers past 64 bits "
          f"refused by us only (as TOML 1.0 requires); 0 disagreements")
    # The generator must keep producing mostly valid TOML, or the test proves little.
    if clean_total >= 100 and clean_refused > clean_total * 0.05:
        print(f"difftest: the generator made {clean_refused} invalid documents out of {clean_total} undamaged ones", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
