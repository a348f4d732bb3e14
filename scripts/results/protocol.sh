#!/usr/bin/env bash
# One protocol of ttaq eval on one model set, one onnxruntime thread.
# usage: scripts/results/protocol.sh <name> <protocol> <methods> <limit> <model.onnx>[,...] [extra eval flags...]
# writes runs/results/eval-<name>.md (table), .json, .log; a finished run is kept (FORCE=1 redoes it)
set -u
cd "$(dirname "$0")/../.."
name=$1 protocol=$2 methods=$3 limit=$4 models=$5; shift 5
out=runs/results
mkdir -p "$out"
if [ "${FORCE:-0}" != 1 ] && [ -s "$out/eval-$name.json" ]; then
  echo "eval $name: done already ($out/eval-$name.json)" >&2; exit 0
fi
/usr/bin/time -f "%e s wall" node bin/ttaq.js eval --protocol "$protocol" --limit "$limit" --threads 1 \
  --model "$models" --method "$methods" --out "$out/eval-$name.json" "$@" > "$out/eval-$name.md" 2> "$out/eval-$name.log"
rc=$?
echo "eval $name: rc $rc" >&2
exit $rc
