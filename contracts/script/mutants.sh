#!/usr/bin/env bash
# Shows that the invariant tests can fail: each mutants/*.patch breaks the contracts on purpose, and
# the invariant its header names ("Kills: invariant_...", in "Test: test/...") must then fail.
#   script/mutants.sh              every mutant
#   script/mutants.sh NAME...      only mutants/NAME.patch
# Each mutant is applied to a copy of src/ and test/ in a temporary directory; the working tree is
# never touched. MUTANT_JOBS (default: the number of CPUs) mutants run at a time. The fuzzer's seed is
# fixed (MUTANT_SEED, default 0x5eed), so a run is repeatable; set MUTANT_SEED=random for a new one
# each time. Exit status 0 only when every mutant compiled and was killed by its invariant.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FORGE="$HERE/node_modules/.bin/forge"
JOBS="${MUTANT_JOBS:-$(nproc 2>/dev/null || echo 2)}"
SEED=()
[ "${MUTANT_SEED:-0x5eed}" != random ] && SEED=(--fuzz-seed "${MUTANT_SEED:-0x5eed}")
cd "$HERE"

if [ $# -gt 0 ]; then
    patches=()
    for name in "$@"; do patches+=("mutants/${name%.patch}.patch"); done
else
    patches=(mutants/*.patch)
fi

header() {  # header FIELD FILE
    sed -n "s/^$1: *//p" "$2" | head -n 1
}

# run_mutant PATCH: prints one result line (and details), and "killed" or "failed" as the last line.
run_mutant() {
    local patch="$1" name kills test_path work output status reason
    name="$(basename "$patch" .patch)"
    kills="$(header Kills "$patch" 2>/dev/null)"
    test_path="$(header Test "$patch" 2>/dev/null)"
    if [ ! -f "$patch" ] || [ -z "$kills" ] || [ -z "$test_path" ]; then
        printf '%-46s BROKEN: no such patch, or no "Kills:" / "Test:" header\nfailed\n' "$name"
        return
    fi
    work="$(mktemp -d)"
    cp -r src test foundry.toml remappings.txt solc-wrapper "$work/"
    ln -s "$HERE/node_modules" "$work/node_modules"
    if ! (cd "$work" && git apply -p1 "$HERE/$patch") 2>"$work/apply.log"; then
        printf '%-46s BROKEN: the patch does not apply (%s)\nfailed\n' "$name" "$(head -n 1 "$work/apply.log")"
        rm -rf "$work"
        return
    fi
    output="$(cd "$work" && "$FORGE" test --use ./solc-wrapper "${SEED[@]}" --match-path "$test_path" \
        --match-test "${kills}\\b" 2>&1)"
    status=$?
    rm -rf "$work"
    if grep -q "Compiler run failed" <<<"$output" || grep -qE "^Error" <<<"$output"; then
        printf '%-46s BROKEN: the mutant does not compile\n' "$name"
        grep -E "^Error|-->" <<<"$output" | head -n 6 | sed 's/^/    /'
        echo failed
    elif [ $status -ne 0 ] && grep -q "0 passed; 1 failed" <<<"$output" && grep -qE "^ *${kills}\(" <<<"$output"; then
        reason="$(grep -m 1 -E "^\[FAIL" <<<"$output" | sed -E 's/^\[FAIL: ?//; s/\]$//' | cut -c1-100)"
        printf '%-46s killed by %s: %s\nkilled\n' "$name" "$kills" "$reason"
    else
        printf '%-46s SURVIVED: %s still passes\n' "$name" "$kills"
        grep -E "^\[(PASS|FAIL)" <<<"$output" | head -n 3 | sed 's/^/    /'
        echo failed
    fi
}

results="$(mktemp -d)"
running=0
for i in "${!patches[@]}"; do
    run_mutant "${patches[$i]}" >"$results/$i" &
    running=$((running + 1))
    if [ "$running" -ge "$JOBS" ]; then
        wait -n
        running=$((running - 1))
    fi
done
wait

killed=0
for i in "${!patches[@]}"; do
    sed '$d' "$results/$i"
    [ "$(tail -n 1 "$results/$i")" = killed ] && killed=$((killed + 1))
done
rm -rf "$results"
echo "${killed} of ${#patches[@]} mutants killed"
[ "$killed" -eq "${#patches[@]}" ]
