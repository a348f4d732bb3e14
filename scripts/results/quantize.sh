#!/usr/bin/env bash
# Quantize the bundled ResNet-20 (or MODEL=m.onnx) with the fast preset (PRESET=default for 2,000 iterations per block), 1,024 calibration
# images (the default), clean accuracy on the Fashion-MNIST test set, one onnxruntime thread in one session (--threads 1
# --workers 1: two jobs share the two cores; pass --workers auto to give one job both, as `ttaq quantize` does by default).
# usage: scripts/results/quantize.sh <name> <w-bits> <a-bits> <method> [extra quantize flags...]
# writes runs/results/q/<name>.onnx (+ .int8.onnx, manifests), <name>.json (report), <name>.log
set -u
cd "$(dirname "$0")/../.."
name=$1 w=$2 a=$3 method=$4; shift 4
model=${MODEL:-models/resnet20-fmnist.onnx}
out=runs/results/q
mkdir -p "$out"
# one thread in one session unless the flags choose the workers: then quantize's own choice of
# threads (every core, shared among a step's slices) stands
cores=(--threads 1 --workers 1)
case " $* " in *" --workers "*) cores=() ;; esac
attempt() {
  /usr/bin/time -f "%e s wall" node bin/ttaq.js quantize --model "$model" --calib fashion-mnist \
    --eval fashion-mnist:test --w-bits "$w" --a-bits "$a" --method "$method" --preset "${PRESET:-fast}" \
    --out "$out/$name.onnx" "${cores[@]}" --json "$@" > "$out/$name.json" 2> "$out/$name.log"
}
# a finished report is kept: rerunning run-all.sh skips what is done (FORCE=1 redoes it)
if [ "${FORCE:-0}" != 1 ] && node -e "process.exit(JSON.parse(require('fs').readFileSync(process.argv[1],'utf8')).report ? 0 : 1)" "$out/$name.json" 2>/dev/null; then
  echo "quantize $name: done already ($out/$name.json)" >&2; exit 0
fi
start=$(date +%s)
attempt "$@"; rc=$?
# another engineer may be mid-edit in sdk/quant: a failure at start-up gets one retry after a minute
if [ $rc -ne 0 ] && [ $(( $(date +%s) - start )) -lt 60 ]; then
  echo "quantize $name failed at start-up (rc $rc), retrying in 60 s" >&2
  sleep 60; attempt "$@"; rc=$?
fi
echo "quantize $name: rc $rc" >&2
exit $rc
