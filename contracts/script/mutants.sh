#!/usr/bin/env bash
# Shows that the invariant tests can fail: each mutants/*.patch breaks the contracts on purpose, and
# the invariant its header names ("Kills: invariant_...", in "Test: test/...") must then fail.
#   script/mutants.sh              every mutant
#   script/mutants.sh NAME...      only mutants/NAME.patch
# Each mutant is applied to a copy of src/ and test/ in a temporary directory; the working tree is
# never touched. Exit status 0 only when every mutant compiled and was killed by its invariant.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FORGE="$HERE/node_modules/.bin/forge"
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

killed=0
failed=0
for patch in "${patches[@]}"; do
    name="$(basename "$patch" .patch)"
    kills="$(header Kills "$patch")"
    test_path="$(header Test "$patch")"
    if [ ! -f "$patch" ] || [ -z "$kills" ] || [ -z "$test_path" ]; then
        printf '%-44s BROKEN: no such patch, or no "Kills:" / "Test:" header\n' "$name"
        failed=$((failed + 1))
        continue
    fi
    work="$(mktemp -d)"
    cp -r src test foundry.toml remappings.txt solc-wrapper "$work/"
    ln -s "$HERE/node_modules" "$work/node_modules"
    if ! (cd "$work" && git apply -p1 "$HERE/$patch") 2>"$work/apply.log"; then
        printf '%-44s BROKEN: the patch does not apply (%s)\n' "$name" "$(head -n 1 "$work/apply.log")"
        failed=$((failed + 1))
        rm -rf "$work"
        continue
    fi
    output="$(cd "$work" && "$FORGE" test --use ./solc-wrapper --match-path "$test_path" --match-test "${kills}\\b" 2>&1)"
    status=$?
    if grep -q "Compiler run failed" <<<"$output" || grep -qE "^Error" <<<"$output"; then
        printf '%-44s BROKEN: the mutant does not compile\n' "$name"
        grep -E "^Error|-->" <<<"$output" | head -n 6 | sed 's/^/    /'
        failed=$((failed + 1))
    elif [ $status -ne 0 ] && grep -q "0 passed; 1 failed" <<<"$output" && grep -qE "^ *${kills}\(" <<<"$output"; then
        reason="$(grep -m 1 -E "^\[FAIL" <<<"$output" | sed -E 's/^\[FAIL: ?//; s/\] .*//' | cut -c1-90)"
        printf '%-44s killed by %s (%s)\n' "$name" "$kills" "$reason"
        killed=$((killed + 1))
    else
        printf '%-44s SURVIVED: %s still passes\n' "$name" "$kills"
        grep -E "^\[(PASS|FAIL)" <<<"$output" | head -n 3 | sed 's/^/    /'
        failed=$((failed + 1))
    fi
    rm -rf "$work"
done

echo "${killed} of ${#patches[@]} mutants killed"
[ $failed -eq 0 ]
