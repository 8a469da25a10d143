#!/usr/bin/env python3
"""Fails if libtern exports a strong symbol outside namespace tern (Mongoose's
mg_prefix check, done with nm). Weak symbols (inline and template instantiations of
the standard library) are not the library's own names and are not counted.

  check_symbols.py NM LIBRARY [ALLOWED_PREFIX ...]
"""
import subprocess
import sys


def main(argv):
    nm, lib, allowed = argv[1], argv[2], ["tern::"] + argv[3:]
    out = subprocess.run([nm, "-C", "--defined-only", lib], check=True,
                         capture_output=True, text=True).stdout
    bad = []
    checked = 0
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) != 3 or parts[1] not in ("T", "D", "B", "R"):
            continue
        checked += 1
        name = parts[2]
        if not any(name.startswith(p) for p in allowed):
            bad.append(name)
    for name in bad:
        print("exported outside tern::", name)
    print(f"{checked} strong symbols checked, {len(bad)} outside tern::")
    return 1 if bad or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
