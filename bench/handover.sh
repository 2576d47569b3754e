#!/usr/bin/env bash
# Handover against copy (issue #16): on local disk, `handover prepare` of a generated record store
# (two snapshots: initial and after a simulated day) must take no longer than a plain `copy` of the
# same snapshots. Both move ciphertext without decrypting it; prepare re-wraps session keys and
# re-makes pack headers, index, reference lists and heads, copy moves objects whole and reads each
# back. Prints both figures and appends them to bench/results/latest-handover.jsonl.
#
#   bench/handover.sh                  # 1.5 GiB
#   BENCH_SIZE=256M bench/handover.sh  # a quick look
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${BENCH_SIZE:-1536M}
BASE=${BENCH_DIR:-${TMPDIR:-/tmp}/custodian-bench}
WORK=$BASE/handover
PRISTINE=$BASE/pristine-$SIZE
cargo build --release --quiet
BIN=$PWD/target/release/custodian
M="python3 bench/measure.py"
OUT=bench/results/latest-handover.jsonl
mkdir -p bench/results
[ -d "$PRISTINE" ] || "$BIN" sample "$PRISTINE" --size "$SIZE" >&2
rm -rf "$WORK"
mkdir -p "$WORK"
cp -a "$PRISTINE" "$WORK/data"
export CUSTODIAN_STATE_DIR=$WORK/state
"$BIN" key generate --output "$WORK/ops.key" > /dev/null
NEW=$("$BIN" key generate --output "$WORK/new.key")
"$BIN" init --repo "$WORK/repo" --identity "$WORK/ops.key" --writer-key-out "$WORK/writer.key" > /dev/null
"$BIN" backup --repo "$WORK/repo" --writer-key "$WORK/writer.key" --new-source --source books "$WORK/data" > /dev/null
"$BIN" sample "$WORK/data" --mutate > /dev/null
"$BIN" backup --repo "$WORK/repo" --writer-key "$WORK/writer.key" --source books "$WORK/data" > /dev/null
: > "$OUT"
sync
$M "copy (2 snapshots)" -- "$BIN" copy --from "$WORK/repo" --to "$WORK/copy" --source books \
  --writer-key "$WORK/writer.key" --json | tee -a "$OUT"
sync
$M "handover prepare (2 snapshots)" -- "$BIN" handover prepare --repo "$WORK/repo" \
  --identity "$WORK/ops.key" --source books --to-repo "$WORK/newco" --to-recipient "$NEW" \
  --reason "bench" --out "$WORK/out" --json | tee -a "$OUT"
python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
copy, prep = rows[0], rows[1]
print(f"\ncopy:             {copy['wall']:7.2f} s wall, {copy['cpu']:6.2f} s CPU, {copy['rss_mib']:7.1f} MiB")
print(f"handover prepare: {prep['wall']:7.2f} s wall, {prep['cpu']:6.2f} s CPU, {prep['rss_mib']:7.1f} MiB")
print(f"prepare / copy:   {prep['wall'] / copy['wall']:.2f} (target: at most 1.00)")
PY
