#!/usr/bin/env bash
# Continual protocol (15 corruptions, severity 5, batch 64, one pass), 1,000 images per domain.
# usage: scripts/results/eval.sh <name> <methods> <model.onnx>[,<model2.onnx>...]
# writes runs/results/eval-<name>.md (table), .json, .log (progress and per-run summary)
set -u
cd "$(dirname "$0")/../.."
name=$1 methods=$2 models=$3
out=runs/results
attempt() {
  /usr/bin/time -f "%e s wall" node bin/ttaq.js eval --protocol continual --severity 5 --limit 1000 \
    --threads 1 --model "$models" --method "$methods" --out "$out/eval-$name.json" \
    > "$out/eval-$name.md" 2> "$out/eval-$name.log"
}
if [ "${FORCE:-0}" != 1 ] && [ -s "$out/eval-$name.json" ]; then
  echo "eval $name: done already ($out/eval-$name.json)" >&2; exit 0
fi
start=$(date +%s)
attempt; rc=$?
if [ $rc -ne 0 ] && [ $(( $(date +%s) - start )) -lt 60 ]; then
  echo "eval $name failed at start-up (rc $rc), retrying in 60 s" >&2
  sleep 60; attempt; rc=$?
fi
echo "eval $name: rc $rc" >&2
exit $rc
