#!/usr/bin/env bash
# custodian's benchmark: initial backup, no-change backup, backup after a day of changes, full
# restore and check --read-data, each with wall time, CPU time, peak RSS, plus repository size.
# When restic is installed (apt-get install restic) it runs on the same data in the same run and
# the table shows ratios (restic / custodian: above 1 means custodian is better).
#
#   bench/run.sh                 # ~1.5 GiB store under $BENCH_DIR (default /tmp/custodian-bench, kept)
#   BENCH_SIZE=256M bench/run.sh # smaller, for a quick look
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
for old in "$DATA" "$WORK/repo-custodian" "$WORK/repo-restic" "$WORK/restore" "$WORK/state" "$WORK/keys" "$WORK/restic-cache"; do
  [ -e "$old" ] && mv "$old" "$TRASH/$(basename "$old")-$(date +%s%N)"
done
cp -a "$PRISTINE" "$DATA"
mkdir -p "$WORK/keys"
"$BIN" key generate --output "$WORK/keys/ops.key" > "$WORK/keys/ops.pub"
"$BIN" init --repo "$WORK/repo-custodian" --recipient "$(cat "$WORK/keys/ops.pub")" --writer-key-out "$WORK/keys/writer.key" >&2
export CUSTODIAN_REPO=$WORK/repo-custodian CUSTODIAN_STATE_DIR=$WORK/state
C_W="$BIN backup --json --writer-key $WORK/keys/writer.key --source bench $DATA"
HAVE_RESTIC=0
if command -v restic >/dev/null; then
  HAVE_RESTIC=1
  export RESTIC_REPOSITORY=$WORK/repo-restic RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$WORK/restic-cache
  restic init --quiet >&2
fi

step() { # step NAME custodian-cmd restic-cmd
  sync; echo "== $1" >&2
  $M "custodian $1" -- $2 >> "$RESULTS"
  if [ $HAVE_RESTIC = 1 ]; then sync; $M "restic $1" -- $3 >> "$RESULTS"; fi
}
size_of() { du -sb "$1" | cut -f1; }

step initial "$C_W" "restic backup --quiet $DATA"
step no-change "$C_W" "restic backup --quiet $DATA"
"$BIN" sample "$DATA" --mutate >&2
step after-changes "$C_W" "restic backup --quiet $DATA"
step restore "$BIN restore latest --json --identity $WORK/keys/ops.key --target $WORK/restore/custodian" "restic restore latest --quiet --target $WORK/restore/restic"
step check-read-data "$BIN check --read-data --json --identity $WORK/keys/ops.key" "restic check --read-data --quiet"
echo "{\"label\": \"custodian repo\", \"bytes\": $(size_of "$WORK/repo-custodian")}" >> "$RESULTS"
[ $HAVE_RESTIC = 1 ] && echo "{\"label\": \"restic repo\", \"bytes\": $(size_of "$WORK/repo-restic")}" >> "$RESULTS"

python3 - "$RESULTS" "$(size_of "$PRISTINE")" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
data = int(sys.argv[2])
by = {r["label"]: r for r in rows}
print(f"\ndata set: {data / 2**30:.2f} GiB\n")
print("| step | custodian wall s | cpu s | peak RSS MiB | MB/s | requests PUT/GET/LIST | restic wall s | cpu s | peak RSS MiB | speed ratio | RSS ratio |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for step in ["initial", "no-change", "after-changes", "restore", "check-read-data"]:
    c = by.get(f"custodian {step}"); r = by.get(f"restic {step}")
    if not c: continue
    mbs = data / 1e6 / c["wall"] if step in ("initial", "restore") else float("nan")
    q = c.get("requests") or {}
    reqs = f"{q.get('put', '–')}/{q.get('get', '–')}/{q.get('list', '–')}"
    line = f"| {step} | {c['wall']:.2f} | {c['cpu']:.2f} | {c['rss_mib']:.0f} | {mbs:.0f} | {reqs} |"
    if r:
        line += f" {r['wall']:.2f} | {r['cpu']:.2f} | {r['rss_mib']:.0f} | {r['wall'] / c['wall']:.2f}x | {r['rss_mib'] / c['rss_mib']:.2f}x |"
    else:
        line += " – | – | – | – | – |"
    print(line)
c = by["custodian repo"]["bytes"]; r = by.get("restic repo")
print(f"\nrepository size: custodian {c / 2**20:.1f} MiB" + (f", restic {r['bytes'] / 2**20:.1f} MiB (restic/custodian {r['bytes'] / c:.4f})" if r else ""))
PY
echo "deleting this run's trees (wait a few minutes before the next run: see the ext4 note above)" >&2
rm -rf "$TRASH" "$WORK/restore"
