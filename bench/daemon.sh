#!/usr/bin/env bash
# The daemon's reaction time and idle cost: a watched store of 100,000 files (1,000 directories),
# one file changed, time until the snapshot is committed; then the daemon's CPU over a quiet
# minute. Also the cost of watching during a backup (issue #15): the daemon's first backup of the
# watched store against the CLI's first backup of the same store into a fresh repository, and
# any rescans the backup's own reads caused. Prints a small table.
#
#   bench/daemon.sh                   # debounce 1s (the default 30s adds 29 s of deliberate quiet)
#   BENCH_FILES=20000 bench/daemon.sh # smaller
set -euo pipefail
cd "$(dirname "$0")/.."
FILES=${BENCH_FILES:-100000}
DEBOUNCE=${BENCH_DEBOUNCE:-1s}
IDLE=${BENCH_IDLE_SECONDS:-60}
WORK=${BENCH_DIR:-${TMPDIR:-/tmp}/custodian-bench}/daemon
cargo build --release --quiet
BIN=$PWD/target/release/custodian
rm -rf "$WORK" && mkdir -p "$WORK"
echo "creating $FILES files…" >&2
python3 - "$WORK/store" "$FILES" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, f"client-{i // 100:04d}")
    if i % 100 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"record-{i:06d}.csv"), "w") as f:
        f.write(f"id,name,balance\n{i},client {i},{i * 7 % 1000}\n")
PY
"$BIN" key generate --output "$WORK/ops.key" > "$WORK/ops.pub"
# The CLI's first backup of the same store, for comparison (its own repository).
"$BIN" init --repo "$WORK/cli-repo" --identity "$WORK/ops.key" --writer-key-out "$WORK/cli-writer.key" >&2
CLI_START=$(date +%s.%N)
CUSTODIAN_STATE_DIR="$WORK/cli-state" "$BIN" backup --repo "$WORK/cli-repo" --writer-key "$WORK/cli-writer.key" \
  --source store --new-source "$WORK/store" > /dev/null
CLI=$(python3 -c "import time; print(f'{time.time() - $CLI_START:.2f}')")
rm -rf "$WORK/cli-repo" "$WORK/cli-state"
"$BIN" init --repo "$WORK/repo" --identity "$WORK/ops.key" --writer-key-out "$WORK/writer.key" >&2
cat > "$WORK/custodian.toml" <<TOML
[repository]
url = "$WORK/repo"
writer-key-file = "$WORK/writer.key"
state-dir = "$WORK/state"
[[source]]
name = "store"
path = "$WORK/store"
watch = true
debounce = "$DEBOUNCE"
TOML
"$BIN" daemon --config "$WORK/custodian.toml" 2> "$WORK/daemon.log" &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
until grep -q "daemon ready" "$WORK/daemon.log"; do sleep 0.1; done
commits() { grep -c "backup committed" "$WORK/daemon.log" || true; }
wait_commit() { # wait_commit N: until N commits are logged; prints seconds waited
  python3 - "$WORK/daemon.log" "$1" <<'PY'
import sys, time
start = time.monotonic()
while open(sys.argv[1]).read().count("backup committed") < int(sys.argv[2]):
    time.sleep(0.01)
print(f"{time.monotonic() - start:.2f}")
PY
}
# First snapshot (every file read), triggered by a first change.
echo "first" > "$WORK/store/client-0000/first-change.txt"
FIRST=$(wait_commit 1)
FIRST_BACKUP=$(grep "backup committed" "$WORK/daemon.log" | head -1 | sed -E 's/.*seconds=([0-9.]+).*/\1/')
sleep 2
RESCANS=$(grep -c "lost events" "$WORK/daemon.log" || true)
# One file changed.
echo "changed" >> "$WORK/store/client-0500/record-050000.csv"
ONE=$(wait_commit 2)
BACKUP=$(grep "backup committed" "$WORK/daemon.log" | tail -1 | sed -E 's/.*seconds=([0-9.]+).*/\1/')
# Idle CPU over a quiet period.
ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
T0=$(ticks); sleep "$IDLE"; T1=$(ticks)
HZ=$(getconf CLK_TCK)
IDLE_CPU=$(python3 -c "print(f'{($T1 - $T0) / $HZ / $IDLE * 100:.3f}')")
RSS=$(awk '/VmRSS/ {print $2 / 1024}' "/proc/$PID/status")
kill -TERM $PID; wait $PID || true
cat <<TABLE

| measure ($FILES files, debounce $DEBOUNCE) | value |
|---|---|
| first change → first snapshot committed (all files read) | ${FIRST} s |
| of which the watched source's backup itself | ${FIRST_BACKUP} s |
| the CLI's first backup of the same store (fresh repository) | ${CLI} s |
| watcher overflows or rescans caused by the backup's reads | ${RESCANS} |
| one file changed → snapshot committed | ${ONE} s |
| of which the backup itself (walk, read 1 file, commit) | ${BACKUP} s |
| daemon CPU while idle (${IDLE} s) | ${IDLE_CPU} % of one core |
| daemon RSS while idle | ${RSS} MiB |
TABLE
