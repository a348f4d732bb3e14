#!/usr/bin/env bash
# Runs every test file under test/ with node's test runner (Node 20's --test takes no globs).
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(find test -name '*.test.ts' -not -path '*/fixtures/*' | sort)
exec node --import tsx --test --test-concurrency="${TTAQ_TEST_CONCURRENCY:-2}" "$@" "${files[@]}"
