#!/usr/bin/env bash
# The audit log at scale: append N entries (default 100,000) to a fresh local repository, as N
# commands would, then time `custodian audit verify` (every signature, link and checkpoint) and
# `audit log --json` and `report`. Prints the figures and appends them to bench/results/latest-audit.jsonl.
#
#   bench/audit.sh            # 100,000 entries
#   AUDIT_N=10000 bench/audit.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${AUDIT_N:-100000}
WORK=${BENCH_DIR:-${TMPDIR:-/tmp}/custodian-bench}/audit
rm -rf "$WORK"
mkdir -p "$WORK" bench/results
cargo build --release --quiet --bins --example audit_fill
BIN=$PWD/target/release/custodian
FILL=$PWD/target/release/examples/audit_fill
export CUSTODIAN_STATE_DIR=$WORK/state
"$BIN" key generate --output "$WORK/ops.key" > /dev/null
"$BIN" init --repo "$WORK/repo" --identity "$WORK/ops.key" --writer-key-out "$WORK/writer.key" > /dev/null
"$FILL" "$WORK/repo" "$WORK/ops.key" "$N" "$WORK/state"
M="python3 bench/measure.py"
$M "audit verify ($N entries)" -- "$BIN" audit verify --repo "$WORK/repo" --writer-key "$WORK/writer.key" --json \
  | tee -a bench/results/latest-audit.jsonl
$M "audit log --json ($N entries)" -- sh -c "'$BIN' audit log --repo '$WORK/repo' --writer-key '$WORK/writer.key' --json > /dev/null" \
  | tee -a bench/results/latest-audit.jsonl
$M "report ($N entries)" -- "$BIN" report --since 3650d --out "$WORK/report" --repo "$WORK/repo" --writer-key "$WORK/writer.key" \
  | tee -a bench/results/latest-audit.jsonl
