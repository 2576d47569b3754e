#!/usr/bin/env python3
"""Run a command and print one JSON line: wall seconds, CPU seconds (user+sys), peak RSS (MiB),
and, when the command prints a JSON summary (custodian --json), its request counts and the
bytes a backup added.

Usage: measure.py LABEL -- CMD [ARGS...]   (the command's output is echoed to stderr)
"""
import json, os, resource, subprocess, sys, time

label = sys.argv[1]
cmd = sys.argv[sys.argv.index("--") + 1:]
start = time.monotonic()
proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=sys.stderr)
wall = time.monotonic() - start
sys.stderr.buffer.write(proc.stdout)
requests = bytes_added = None
try:
    summary = json.loads(proc.stdout)
    requests = summary.get("requests")
    bytes_added = (summary.get("stats") or {}).get("bytes_added")
except (ValueError, AttributeError):
    pass
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({
    "label": label,
    "wall": round(wall, 3),
    "cpu": round(usage.ru_utime + usage.ru_stime, 3),
    "rss_mib": round(usage.ru_maxrss / 1024, 1),
    "exit": proc.returncode,
    "requests": requests,
    "bytes_added": bytes_added,
}))
sys.exit(0 if proc.returncode in (0, 3) else proc.returncode)
