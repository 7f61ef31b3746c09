#!/usr/bin/env bash
# Runs every fuzz test of the main module (func FuzzXxx in a _test.go file)
# for FUZZTIME each (default 10s): `make fuzz`, and `make test` after the
# tests. A failure leaves the crashing input in the package's
# testdata/fuzz/FuzzXxx/ and fails the run; commit that file with the fix.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
fuzztime="${FUZZTIME:-10s}"

found=0
while IFS= read -r file; do
	dir="./$(dirname "$file")"
	while IFS= read -r name; do
		found=$((found + 1))
		echo "fuzz: $name in $dir for $fuzztime"
		go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$dir"
	done < <(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$file")
done < <(git ls-files '*_test.go' | grep -v '^bench/' | xargs grep -l '^func Fuzz' || true)
echo "fuzz: $found fuzz tests ran for $fuzztime each"
