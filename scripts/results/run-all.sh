#!/usr/bin/env bash
# Every figure of the quantized rows in docs/RESULTS.md, in two lanes (one onnxruntime thread each,
# for a 2-core machine). Finished steps are skipped on a rerun (FORCE=1 redoes them).
# Quantized models are quantized with the fast preset (scripts/results/quantize.sh) and evaluated on
# the continual stream (scripts/results/eval.sh) in their INT8-container variant (<name>.int8.onnx,
# the same values as the true-width file; checked by `ttaq quantize`'s report and test/quant).
# Run from the repository root: nohup scripts/results/run-all.sh > runs/results/run-all.log 2>&1 &
set -u
cd "$(dirname "$0")/../.."
S=scripts/results
Q=runs/results/q
step() { echo "== $(date +%T) $*"; "$@"; }
lane_resnet() {
  # ResNet-20: calibration only vs reconstruction, W8A8 / W4A4 / W2A4
  step $S/quantize.sh w8a8-mse 8 8 mse
  for wa in "4 4" "2 4"; do
    set -- $wa
    for m in minmax mse qdrop ttaq; do step $S/quantize.sh "w$1a$2-$m" "$1" "$2" "$m"; done
  done
  step $S/eval.sh fp32 source,bn,tent,abl models/resnet20-fmnist.onnx
  step $S/eval.sh quant source,tent,abl $Q/w4a4-ttaq.int8.onnx,$Q/w4a4-qdrop.int8.onnx,$Q/w2a4-ttaq.int8.onnx,$Q/w2a4-qdrop.int8.onnx,$Q/w2a4-minmax.int8.onnx
  # W2A4 at the default preset (2,000 iterations per block), the setting issue 5's targets name
  PRESET=default step $S/quantize.sh w2a4-ttaq-default 2 4 ttaq
}
lane_ablation() {
  # PEM / PCR one at a time where quantization hurts most: W3A3 (and W2A4), ResNet-20
  for v in "qdrop qdrop" "ttaq ttaq" "pemonly ttaq --pcr 0" "pcronly ttaq --pem 0"; do
    set -- $v; name=$1 method=$2; shift 2
    step $S/quantize.sh "w3a3-$name" 3 3 "$method" "$@"
  done
  step $S/eval.sh w3a3 source,tent,abl $Q/w3a3-qdrop.int8.onnx,$Q/w3a3-ttaq.int8.onnx,$Q/w3a3-pemonly.int8.onnx,$Q/w3a3-pcronly.int8.onnx
  # and W2A2
  for v in "qdrop qdrop" "ttaq ttaq" "pemonly ttaq --pcr 0" "pcronly ttaq --pem 0"; do
    set -- $v; name=$1 method=$2; shift 2
    step $S/quantize.sh "w2a2-$name" 2 2 "$method" "$@"
  done
  step $S/eval.sh w2a2 source,tent,abl $Q/w2a2-qdrop.int8.onnx,$Q/w2a2-ttaq.int8.onnx,$Q/w2a2-pemonly.int8.onnx,$Q/w2a2-pcronly.int8.onnx
  # The MobileNet-style model at W4A4 (depthwise convolutions quantize much worse)
  for m in minmax mse qdrop ttaq; do MODEL=models/mobilenet-fmnist.onnx step $S/quantize.sh "mbv2-w4a4-$m" 4 4 "$m"; done
  MODEL=models/mobilenet-fmnist.onnx step $S/quantize.sh mbv2-w4a4-pemonly 4 4 ttaq --pcr 0
  MODEL=models/mobilenet-fmnist.onnx step $S/quantize.sh mbv2-w4a4-pcronly 4 4 ttaq --pem 0
  # the MobileNet rows of issue 5's clean-accuracy table at W8A8 and W2A4
  MODEL=models/mobilenet-fmnist.onnx step $S/quantize.sh mbv2-w8a8-mse 8 8 mse
  for m in minmax mse qdrop ttaq; do MODEL=models/mobilenet-fmnist.onnx step $S/quantize.sh "mbv2-w2a4-$m" 2 4 "$m"; done
  step $S/eval.sh mbv2 source,tent,abl models/mobilenet-fmnist.onnx,$Q/mbv2-w4a4-qdrop.int8.onnx,$Q/mbv2-w4a4-ttaq.int8.onnx,$Q/mbv2-w4a4-pemonly.int8.onnx,$Q/mbv2-w4a4-pcronly.int8.onnx
  # The other protocols on the FP32 model and the W2A4 TTAQ model
  local m=models/resnet20-fmnist.onnx,$Q/w2a4-ttaq.int8.onnx
  until [ -f $Q/w2a4-ttaq.int8.onnx ]; do sleep 30; done   # made by the other lane
  step $S/protocol.sh imbalanced imbalanced source,bn,tent,abl:robust 1000 "$m"
  step $S/protocol.sh camera camera bn:robust,abl:robust 1000 "$m" --batch 4
  step $S/protocol.sh longrun longrun source,bn,abl 200 models/resnet20-fmnist.onnx --plot runs/results/longrun-resnet20.png
}
mkdir -p runs/results
lane_resnet > runs/results/lane-resnet.log 2>&1 &
lane_ablation > runs/results/lane-ablation.log 2>&1 &
wait
echo "== $(date +%T) done"
