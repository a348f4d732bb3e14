#!/usr/bin/env bash
# Every figure of the quantized rows in docs/RESULTS.md, one job at a time (shared 2-core machine).
# Finished steps are skipped on a rerun (FORCE=1 redoes them). The W4A4 and W2A4 TTAQ models are
# runs/q/w4a4-ttaq.onnx and runs/q/w2a4-ttaq.onnx (runs/q/run.sh, same command form, same sdk/quant
# code); REQUANT_TTAQ=1 remakes them here.
# Quantized models are evaluated in their INT8-container variant (<name>.int8.onnx, same values):
# the adaptation step graph of a true-width INT2/UINT2 model does not load in onnxruntime 1.30
# (constant folding: "Element type mismatch between tensor proto and ortvalue_initializer").
# Run from the repository root: nohup scripts/results/run-all.sh > runs/results/run-all.log 2>&1 &
set -u
cd "$(dirname "$0")/../.."
S=scripts/results
Q=runs/results/q
ttaq4=runs/q/w4a4-ttaq ttaq2=runs/q/w2a4-ttaq
if [ "${REQUANT_TTAQ:-0}" = 1 ]; then
  $S/quantize.sh w4a4-ttaq 4 4 ttaq; $S/quantize.sh w2a4-ttaq 2 4 ttaq
  ttaq4=$Q/w4a4-ttaq ttaq2=$Q/w2a4-ttaq
fi
step() { echo "== $(date +%T) $*"; "$@"; }
# step 1: quantization (qdrop = neither PEM nor PCR, ttaq = both)
step $S/quantize.sh w2a4-qdrop 2 4 qdrop
step $S/quantize.sh w4a4-minmax 4 4 minmax
step $S/quantize.sh w2a4-minmax 2 4 minmax
step $S/quantize.sh w4a4-qdrop 4 4 qdrop
# step 2: continual, FP32 and quantized
step $S/eval.sh fp32 source,bn,tent,abl models/resnet20-fmnist.onnx
step $S/eval.sh quant source,tent,abl $ttaq4.int8.onnx,$ttaq2.int8.onnx,$Q/w2a4-qdrop.int8.onnx,$Q/w2a4-minmax.int8.onnx
step $S/eval.sh w4a4-qdrop source,tent,abl $Q/w4a4-qdrop.int8.onnx
# step 3: the PEM/PCR ablation at W2A4 (qdrop and ttaq rows come from eval-quant)
step $S/quantize.sh w2a4-pcronly 2 4 ttaq --pem 0
step $S/quantize.sh w2a4-pemonly 2 4 ttaq --pcr 0
step $S/eval.sh ablation source,abl $Q/w2a4-pemonly.int8.onnx,$Q/w2a4-pcronly.int8.onnx
# step 4: a W3A4 pair on ResNet-20 (activations take 4 or 8 bit only), then the MobileNet-style model
step $S/quantize.sh w3a4-qdrop 3 4 qdrop
step $S/quantize.sh w3a4-ttaq 3 4 ttaq
step $S/eval.sh w3a4 source,abl $Q/w3a4-qdrop.int8.onnx,$Q/w3a4-ttaq.int8.onnx
step $S/eval.sh w3a4-tent tent $Q/w3a4-qdrop.int8.onnx,$Q/w3a4-ttaq.int8.onnx
# MobileNet-style model at W4A4. Its quantizations fail at the accuracy report for now (onnxruntime rejects the UINT4
# QuantizeLinear after a Clip).
MODEL=models/mobilenet-fmnist.onnx step $S/quantize.sh mbv2-w4a4-mse 4 4 mse
MODEL=models/mobilenet-fmnist.onnx step $S/quantize.sh mbv2-w4a4-qdrop 4 4 qdrop
MODEL=models/mobilenet-fmnist.onnx step $S/quantize.sh mbv2-w4a4-ttaq 4 4 ttaq
step $S/eval.sh mbv2 source,abl models/mobilenet-fmnist.onnx,$Q/mbv2-w4a4-mse.int8.onnx,$Q/mbv2-w4a4-qdrop.int8.onnx,$Q/mbv2-w4a4-ttaq.int8.onnx
echo "== $(date +%T) done"
