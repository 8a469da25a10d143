#!/usr/bin/env python3
"""Counts passed/failed tests in Meson testlog.json files.

  testlog_counts.py FILE          -> "PASSED FAILED"
  testlog_counts.py --total FILES -> "N passed, N failed" (the closing line CI reads)
"""
import json
import sys


def count(path):
    passed = failed = 0
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            result = json.loads(line).get("result")
            if result in ("OK", "EXPECTEDFAIL"):
                passed += 1
            elif result != "SKIP":
                failed += 1
    return passed, failed


def main(argv):
    p = f = 0
    if argv and argv[0] == "--extra":  # results of runs that write no testlog (fuzz)
        p, f = int(argv[1]), int(argv[2])
        argv = argv[3:]
    if argv and argv[0] == "--total":
        for path in argv[1:]:
            a, b = count(path)
            p += a
            f += b
        print(f"{p} passed, {f} failed")
    else:
        a, b = count(argv[0])
        print(a, b)


if __name__ == "__main__":
    main(sys.argv[1:])
