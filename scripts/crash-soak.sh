#!/usr/bin/env bash
# Crash soak: many more SIGKILLs and simulated crashes than `make test` runs, for the group commit's crash order
# (Docs/CRASH-ORDER.md). Each iteration kills the server ROUNDS times while 32 clients create, write FILE_SYNC,
# rename and remove, then checks every acknowledged change after the restart; and runs the union's 220 simulated
# crashes at random moments. Failures print the seed to replay.
#   scripts/crash-soak.sh [ITERATIONS] [ROUNDS]      (defaults 10 and 30: 300 SIGKILLs, 2,200 simulated crashes)
set -euo pipefail
cd "$(dirname "$0")/.."
iterations="${1:-10}"
rounds="${2:-30}"
swift build --build-tests
export STRATA_BIN="${STRATA_BIN:-$PWD/.build/debug/strata}"
for i in $(seq 1 "$iterations"); do
    echo "== iteration $i/$iterations: $rounds SIGKILLs, 220 simulated crashes"
    STRATA_CRASH_ROUNDS="$rounds" swift test --skip-build \
        --filter 'ConcurrentCrashTests|randomCrashesDuringConcurrentChangesLoseNothingAcknowledged'
done
echo "crash soak: $((iterations * rounds)) SIGKILLs and $((iterations * 220)) simulated crashes, no acknowledged change lost"
