#!/usr/bin/env python3
"""Sums test cases over meson test logs and fuzz results; prints the closing
line "N passed, N failed".

A doctest program reports "[doctest] test cases: T | P passed | F failed";
a Python test prints "N passed, N failed" as its last such line. A program
that printed neither (it crashed, or it is a single check) counts as one
case, passed or failed by its exit status. A skipped program (exit 77)
counts as neither: its reason is printed, and it never adds a pass."""
import json
import re
import sys

DOCTEST = re.compile(r"\[doctest\] test cases:\s*(\d+)\s*\|\s*(\d+) passed\s*\|\s*(\d+) failed")
PLAIN = re.compile(r"^(?:\w+: )?(\d+) passed, (\d+) failed", re.M)


def count_test(entry):
    out = (entry.get("stdout") or "") + "\n" + (entry.get("stderr") or "")
    if entry.get("result") == "SKIP":
        return 0, 0
    ok = entry.get("result") in ("OK", "EXPECTEDFAIL")
    m = DOCTEST.findall(out)
    if m:
        _, p, f = map(int, m[-1])
    else:
        m = PLAIN.findall(out)
        if m:
            p, f = map(int, m[-1])
        else:
            p, f = (1, 0) if ok else (0, 1)
    if not ok and f == 0:  # crashed or timed out after its summary
        f = 1
    return p, f


def main(paths):
    passed = failed = 0
    for path in paths:
        if path.startswith("buildfail:"):
            print(f"{path[10:]}: build failed")
            failed += 1
            continue
        if path.endswith(".results"):
            for line in open(path):
                if line.strip().endswith(" ok"):
                    passed += 1
                elif line.strip():
                    failed += 1
            continue
        try:
            lines = open(path).read().splitlines()
        except OSError:
            print(f"{path}: no test log")
            failed += 1
            continue
        for line in lines:
            entry = json.loads(line)
            p, f = count_test(entry)
            if entry.get("result") == "SKIP":
                why = (entry.get("stdout") or "").strip().splitlines()
                print(f"SKIPPED: {entry.get('name')}: {why[-1] if why else 'no reason given'}")
            passed += p
            failed += f
            if f:
                print(f"FAILED: {entry.get('name')} ({path})")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
