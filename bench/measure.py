#!/usr/bin/env python3
"""Run a command and print one JSON line: wall seconds, CPU seconds (user+sys), peak RSS (MiB).

Usage: measure.py LABEL -- CMD [ARGS...]   (the command's own output goes to stderr)
"""
import json, os, resource, subprocess, sys, time

label = sys.argv[1]
cmd = sys.argv[sys.argv.index("--") + 1:]
start = time.monotonic()
proc = subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr)
wall = time.monotonic() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({
    "label": label,
    "wall": round(wall, 3),
    "cpu": round(usage.ru_utime + usage.ru_stime, 3),
    "rss_mib": round(usage.ru_maxrss / 1024, 1),
    "exit": proc.returncode,
}))
sys.exit(0 if proc.returncode in (0, 3) else proc.returncode)
