#!/usr/bin/env bash
# custodian's benchmark: initial backup, no-change backup, backup after a day of changes, full
# restore and check --read-data, each with wall time, CPU time, peak RSS, plus repository size.
# When restic is installed (apt-get install restic) it runs on the same data in the same run and
# the table shows ratios (restic / custodian: above 1 means custodian is better).
#
#   bench/run.sh                 # ~1.5 GiB store under $BENCH_DIR (default /tmp/custodian-bench, kept)
#   BENCH_SIZE=256M bench/run.sh # smaller, for a quick look
#   BENCH_S3=1 bench/run.sh      # both tools against an S3 server on loopback (s3s-fs, installed
#                                # into ~/.cache like scripts/test does), with request counts
#   BENCH_S3=moto bench/run.sh   # the same against moto (in memory; atomic create-if-absent, so
#                                # custodian is not in safe mode); repository sizes are not shown
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${BENCH_SIZE:-1536M}
# Outside the work tree: some workspaces watch it, which makes file creation 20x slower.
WORK=${BENCH_DIR:-${TMPDIR:-/tmp}/custodian-bench}
OUT=bench/results
mkdir -p "$WORK" "$OUT"
WORK=$(cd "$WORK" && pwd)
cargo build --release --quiet
BIN=$PWD/target/release/custodian
M="python3 bench/measure.py"
RESULTS=$OUT/latest.jsonl
: > "$RESULTS"

DATA=$WORK/records-$SIZE
PRISTINE=$WORK/pristine-$SIZE
if [ ! -d "$PRISTINE" ]; then
  echo "generating a $SIZE record store (once)…" >&2
  "$BIN" sample "$PRISTINE" --size "$SIZE" >&2
fi
# ext4 skips recently freed inodes when allocating (find_inode_bit -> recently_deleted), so
# file creation is several times slower for minutes after a mass delete. Old trees are moved
# aside here (a rename frees nothing) and deleted only after every measurement.
TRASH=$WORK/trash
mkdir -p "$TRASH"
for old in "$DATA" "$WORK/repo-custodian" "$WORK/repo-restic" "$WORK/restore" "$WORK/state" "$WORK/keys" "$WORK/restic-cache" "$WORK/s3s"; do
  [ -e "$old" ] && mv "$old" "$TRASH/$(basename "$old")-$(date +%s%N)"
done
cp -a "$PRISTINE" "$DATA"
mkdir -p "$WORK/keys"
C_REPO=$WORK/repo-custodian C_STORE=$WORK/repo-custodian
R_REPO=$WORK/repo-restic R_STORE=$WORK/repo-restic
if [ "${BENCH_S3:-0}" = moto ]; then
  VENV=${CUSTODIAN_TEST_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/custodian/test-venv}
  if [ ! -x "$VENV/bin/moto_server" ]; then
    python3 -m venv "$VENV" && "$VENV/bin/pip" install --quiet 'moto[server]==5.2.5'
  fi
  PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$VENV/bin/moto_server" -H 127.0.0.1 -p "$PORT" > "$WORK/moto.log" 2>&1 &
  MOTO_PID=$!
  trap 'kill "$MOTO_PID" 2>/dev/null || true' EXIT
  until python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 0.2)" 2>/dev/null; do sleep 0.1; done
  curl -sf -X PUT "http://127.0.0.1:$PORT/bench" > /dev/null
  export AWS_ENDPOINT_URL=http://127.0.0.1:$PORT AWS_ALLOW_HTTP=true AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1
  C_REPO=s3://bench/custodian C_STORE=
  R_REPO=s3:http://127.0.0.1:$PORT/bench/restic R_STORE=
  echo "S3 mode: moto on 127.0.0.1:$PORT" >&2
elif [ "${BENCH_S3:-0}" = 1 ]; then
  S3S=${CUSTODIAN_TEST_S3S:-${XDG_CACHE_HOME:-$HOME/.cache}/custodian/s3s-fs-0.14.1}
  [ -x "$S3S/bin/s3s-fs" ] || cargo install s3s-fs --version 0.14.1 --locked --features binary --root "$S3S" --quiet
  PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  mkdir -p "$WORK/s3s/bench"
  "$S3S/bin/s3s-fs" --host 127.0.0.1 --port "$PORT" --access-key bench --secret-key bench-secret "$WORK/s3s" > "$WORK/s3s.log" 2>&1 &
  S3S_PID=$!
  trap 'kill "$S3S_PID" 2>/dev/null || true' EXIT
  until python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 0.2)" 2>/dev/null; do sleep 0.1; done
  export AWS_ENDPOINT_URL=http://127.0.0.1:$PORT AWS_ALLOW_HTTP=true AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1
  C_REPO=s3://bench/custodian C_STORE=$WORK/s3s/bench/custodian
  R_REPO=s3:http://127.0.0.1:$PORT/bench/restic R_STORE=$WORK/s3s/bench/restic
  echo "S3 mode: s3s-fs on 127.0.0.1:$PORT" >&2
fi
"$BIN" key generate --output "$WORK/keys/ops.key" > "$WORK/keys/ops.pub"
"$BIN" init --repo "$C_REPO" --identity "$WORK/keys/ops.key" --writer-key-out "$WORK/keys/writer.key" >&2
export CUSTODIAN_REPO=$C_REPO CUSTODIAN_STATE_DIR=$WORK/state
C_W="$BIN backup --json --writer-key $WORK/keys/writer.key --source bench $DATA"
HAVE_RESTIC=0
if command -v restic >/dev/null; then
  HAVE_RESTIC=1
  export RESTIC_REPOSITORY=$R_REPO RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$WORK/restic-cache
  restic init --quiet >&2 || { echo "restic init failed: comparing custodian alone" >&2; HAVE_RESTIC=0; }
fi

step() { # step NAME custodian-cmd restic-cmd
  sync; echo "== $1" >&2
  $M "custodian $1" -- $2 >> "$RESULTS"
  # restic's failures are reported in the table, not fatal (its check fails on s3s-fs listings).
  if [ $HAVE_RESTIC = 1 ]; then sync; $M "restic $1" -- $3 >> "$RESULTS" || echo "restic $1 failed" >&2; fi
}
size_of() { if [ -n "$1" ]; then du -sb "$1" | cut -f1; else echo 0; fi; }

step initial "$C_W" "restic backup --quiet $DATA"
# The compression limit: zstd -3 on both cores over a tar of the same data (issue #15 asks the
# initial backup to stay within 1.3x of it).
sync; $M "zstd -3 two-core limit" -- bash -c "tar -C '$DATA' -cf - . | zstd -3 -T2 -q -c > /dev/null" >> "$RESULTS"
step no-change "$C_W" "restic backup --quiet $DATA"
repo_sizes() { # repo_sizes WHEN: both repositories' sizes, for the daily growth
  echo "{\"label\": \"custodian repo $1\", \"bytes\": $(size_of "$C_STORE")}" >> "$RESULTS"
  [ $HAVE_RESTIC = 1 ] && echo "{\"label\": \"restic repo $1\", \"bytes\": $(size_of "$R_STORE")}" >> "$RESULTS"
  return 0
}
repo_sizes "before the day"
"$BIN" sample "$DATA" --mutate >&2
step after-changes "$C_W" "restic backup --quiet $DATA"
repo_sizes "after the day"
step restore "$BIN restore latest --json --identity $WORK/keys/ops.key --target $WORK/restore/custodian" "restic restore latest --quiet --target $WORK/restore/restic"
step check-read-data "$BIN check --read-data --json --identity $WORK/keys/ops.key" "restic check --read-data --quiet"
echo "{\"label\": \"custodian repo\", \"bytes\": $(size_of "$C_STORE")}" >> "$RESULTS"
[ $HAVE_RESTIC = 1 ] && echo "{\"label\": \"restic repo\", \"bytes\": $(size_of "$R_STORE")}" >> "$RESULTS"
# Forget the first two snapshots and prune at once (no backup runs here, so no grace period).
"$BIN" forget --keep-last 1 --writer-key "$WORK/keys/writer.key" >&2
[ $HAVE_RESTIC = 1 ] && restic forget --keep-last 1 --quiet >&2
step prune "$BIN prune --grace 0s --max-unused 0 --json --writer-key $WORK/keys/writer.key" "restic prune --max-unused 0 --quiet"
echo "{\"label\": \"custodian repo after prune\", \"bytes\": $(size_of "$C_STORE")}" >> "$RESULTS"
[ $HAVE_RESTIC = 1 ] && echo "{\"label\": \"restic repo after prune\", \"bytes\": $(size_of "$R_STORE")}" >> "$RESULTS"

python3 - "$RESULTS" "$(size_of "$PRISTINE")" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
data = int(sys.argv[2])
by = {r["label"]: r for r in rows}
import os
where = {"1": "S3 (s3s-fs on loopback)", "moto": "S3 (moto on loopback)"}.get(os.environ.get("BENCH_S3", ""), "local disk")
print(f"\ndata set: {data / 2**30:.2f} GiB, repositories on {where}\n")
print("| step | custodian wall s | cpu s | peak RSS MiB | MB/s | requests PUT/GET/LIST | restic wall s | cpu s | peak RSS MiB | speed ratio | RSS ratio |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for step in ["initial", "no-change", "after-changes", "restore", "check-read-data", "prune"]:
    c = by.get(f"custodian {step}"); r = by.get(f"restic {step}")
    if not c: continue
    mbs = data / 1e6 / c["wall"] if step in ("initial", "restore") else float("nan")
    q = c.get("requests") or {}
    reqs = f"{q.get('put', '–')}/{q.get('get', '–')}/{q.get('list', '–')}"
    line = f"| {step} | {c['wall']:.2f} | {c['cpu']:.2f} | {c['rss_mib']:.0f} | {mbs:.0f} | {reqs} |"
    if r and r["exit"] not in (0, 3):
        line += f" failed (exit {r['exit']}) | – | – | – | – |"
    elif r:
        line += f" {r['wall']:.2f} | {r['cpu']:.2f} | {r['rss_mib']:.0f} | {r['wall'] / c['wall']:.2f}x | {r['rss_mib'] / c['rss_mib']:.2f}x |"
    else:
        line += " – | – | – | – | – |"
    print(line)
z = by.get("zstd -3 two-core limit"); c = by.get("custodian initial"); r = by.get("restic initial")
if z and c:
    print(f"\ninitial backup: custodian {c['wall']:.2f} s, zstd -3 on both cores over a tar {z['wall']:.2f} s "
          f"(custodian/limit {c['wall'] / z['wall']:.2f}x, target at most 1.3x)"
          + (f"; restic/custodian {r['wall'] / c['wall']:.2f}x (target at least 2x)" if r else ""))
def growth(tool):
    a, b = by.get(f"{tool} repo before the day"), by.get(f"{tool} repo after the day")
    return (b["bytes"] - a["bytes"]) / 1e6 if a and b else None
g = growth("custodian"); gr = growth("restic")
sized = by["custodian repo"]["bytes"] > 0  # moto keeps objects in memory: no sizes
if g is not None and sized:
    print(f"daily growth (one simulated day): custodian {g:.1f} MB (target at most 45)"
          + (f", restic {gr:.1f} MB" if gr is not None else ""))
c = by["custodian repo"]["bytes"]; r = by.get("restic repo")
if sized: print(f"\nrepository size: custodian {c / 2**20:.1f} MiB" + (f", restic {r['bytes'] / 2**20:.1f} MiB (restic/custodian {r['bytes'] / c:.4f})" if r else ""))
c = by.get("custodian repo after prune"); r = by.get("restic repo after prune")
if c and sized:
    print(f"after forget --keep-last 1 and prune: custodian {c['bytes'] / 2**20:.1f} MiB" + (f", restic {r['bytes'] / 2**20:.1f} MiB" if r else ""))
PY
echo "deleting this run's trees (wait a few minutes before the next run: see the ext4 note above)" >&2
rm -rf "$TRASH" "$WORK/restore"
