#!/usr/bin/env bash
# Index at scale (issue #15): a repository whose index names INDEX_BLOBS synthetic blobs
# (default ten million), then what opening it costs (load time, RSS, bytes per blob, lookup
# rate) and what a backup of 20,000 small files into it costs, against the same backup into a
# repository with an empty index.
#
#   bench/index.sh                      # 10 million blobs (about 5 minutes)
#   INDEX_BLOBS=1000000 bench/index.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${INDEX_BLOBS:-10000000}
WORK=${BENCH_DIR:-${TMPDIR:-/tmp}/custodian-bench}/index
cargo build --release --quiet --bin custodian --example index_scale
BIN=$PWD/target/release/custodian
EX=$PWD/target/release/examples/index_scale
M="python3 bench/measure.py"
RESULTS=bench/results/index.jsonl
mkdir -p bench/results
: > "$RESULTS"
rm -rf "$WORK" && mkdir -p "$WORK/store"
"$BIN" key generate --output "$WORK/ops.key" > /dev/null 2>&1
for repo in big empty; do
  "$BIN" init --repo "$WORK/$repo" --identity "$WORK/ops.key" --writer-key-out "$WORK/$repo.key" > /dev/null 2>&1
done
echo "writing $N synthetic index entries…" >&2
"$EX" fill "$WORK/big" "$WORK/big.key" "$N" >&2
"$EX" open "$WORK/big" "$WORK/big.key" | tee -a "$RESULTS"
python3 - "$WORK/store" <<'PY'
import os, sys
root = sys.argv[1]
for i in range(20000):
    d = os.path.join(root, f"client-{i // 100:04d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"note-{i:06d}.txt"), "w") as f:
        f.write(f"client {i}\nbalance {i * 7 % 100000}\n" + "memo " * (i % 40) + "\n")
PY
for repo in empty big; do
  sync
  CUSTODIAN_STATE_DIR=$WORK/state-$repo $M "backup of 20000 files, index $repo" -- \
    "$BIN" backup --json --repo "$WORK/$repo" --writer-key "$WORK/$repo.key" --source notes --new-source "$WORK/store" \
    >> "$RESULTS" 2>> "$WORK/log"
done
python3 - "$RESULTS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
o = rows[0]
print(f"\n| index of {o['blobs']:,} blobs | load {o['load_seconds']} s | RSS {o['rss_mib']} MiB "
      f"(peak {o['peak_rss_mib']}) | {o['index_bytes_per_blob']} B/blob | {o['lookups_per_second']:,.0f} lookups/s |")
print("\n| backup of 20,000 files | wall s | peak RSS MiB |\n|---|---|---|")
for r in rows[1:]:
    print(f"| {r['label']} | {r['wall']} | {r['rss_mib']} |")
PY
