#!/usr/bin/env bash
# Scale (issue #15): many small files. Grows one store of small notes in directories of 100
# files to each size in SCALE_STEPS and, at each, backs it up into a fresh repository (initial)
# and again (no-change), with wall, CPU and peak RSS; at the largest it also restores the whole
# tree. With restic installed the same runs on the same data, and the table shows ratios.
# Memory that grows with the file count shows as RSS rising across the steps.
#
#   bench/scale.sh                          # 100k, 300k and 1M files (about 15 minutes)
#   SCALE_STEPS="100000 300000" bench/scale.sh
#   SCALE_RESTIC=0 bench/scale.sh           # custodian alone
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${SCALE_STEPS:-100000 300000 1000000}
WORK=${BENCH_DIR:-${TMPDIR:-/tmp}/custodian-bench}/scale
cargo build --release --quiet
BIN=$PWD/target/release/custodian
M="python3 bench/measure.py"
RESULTS=bench/results/scale.jsonl
mkdir -p bench/results
: > "$RESULTS"
rm -rf "$WORK" && mkdir -p "$WORK/store"
"$BIN" key generate --output "$WORK/ops.key" > /dev/null
HAVE_RESTIC=0
[ "${SCALE_RESTIC:-1}" = 1 ] && command -v restic > /dev/null && HAVE_RESTIC=1
export RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$WORK/restic-cache

grow() { # grow N: add notes until the store holds N files (100 per directory)
  python3 - "$WORK/store" "$1" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
have = sum(len(f) for _, _, f in os.walk(root))
for i in range(have, n):
    d = os.path.join(root, f"client-{i // 100:05d}")
    if i % 100 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"note-{i:07d}.txt"), "w") as f:
        f.write(f"client {i}\nbalance {i * 7 % 100000}\n" + "memo " * (i % 40) + "\n")
PY
}

for n in $STEPS; do
  echo "growing the store to $n files…" >&2
  grow "$n"
  rm -rf "$WORK/repo" "$WORK/state" "$WORK/restic" "$WORK/writer.key"
  "$BIN" init --repo "$WORK/repo" --identity "$WORK/ops.key" --writer-key-out "$WORK/writer.key" > /dev/null 2>&1
  C="$BIN backup --json --repo $WORK/repo --writer-key $WORK/writer.key --source notes --new-source $WORK/store"
  export CUSTODIAN_STATE_DIR=$WORK/state
  [ $HAVE_RESTIC = 1 ] && RESTIC_REPOSITORY=$WORK/restic restic init --quiet > /dev/null
  for step in initial no-change; do
    sync
    $M "custodian $step $n" -- $C >> "$RESULTS" 2>> "$WORK/log"
    if [ $HAVE_RESTIC = 1 ]; then
      sync
      RESTIC_REPOSITORY=$WORK/restic $M "restic $step $n" -- restic backup --quiet "$WORK/store" >> "$RESULTS" 2>> "$WORK/log"
    fi
  done
  last=$n
done
rm -rf "$WORK/restore"
$M "custodian restore $last" -- "$BIN" restore latest --json --repo "$WORK/repo" --identity "$WORK/ops.key" \
  --target "$WORK/restore/custodian" >> "$RESULTS" 2>> "$WORK/log"
if [ $HAVE_RESTIC = 1 ]; then
  RESTIC_REPOSITORY=$WORK/restic $M "restic restore $last" -- restic restore latest --quiet \
    --target "$WORK/restore/restic" >> "$RESULTS" 2>> "$WORK/log"
fi
rm -rf "$WORK/restore"

python3 - "$RESULTS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {r["label"]: r for r in rows}
steps = sorted({int(r["label"].split()[-1]) for r in rows})
print("\n| files | step | custodian wall s | peak RSS MiB | restic wall s | peak RSS MiB | speed ratio | RSS custodian/restic |")
print("|---|---|---|---|---|---|---|---|")
for n in steps:
    for step in ("initial", "no-change", "restore"):
        c = by.get(f"custodian {step} {n}")
        if not c:
            continue
        r = by.get(f"restic {step} {n}")
        cells = [f"{n:,}", step, f"{c['wall']:.2f}", f"{c['rss_mib']:.0f}"]
        if r:
            cells += [f"{r['wall']:.2f}", f"{r['rss_mib']:.0f}", f"{r['wall'] / c['wall']:.2f}x",
                      f"{c['rss_mib'] / r['rss_mib']:.2f}"]
        else:
            cells += ["–"] * 4
        print("| " + " | ".join(cells) + " |")
PY
