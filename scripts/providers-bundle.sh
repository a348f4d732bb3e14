#!/usr/bin/env bash
# Packs `ttaq providers` into a folder that runs on an x86-64 Linux machine with no npm access (a
# GPU box behind a firewall): the node binary, onnxruntime-node's binding and one bundled .mjs.
# Usage: scripts/providers-bundle.sh <out-dir>; there: `bash run.sh [ttaq providers options]`.
# WebGPU on an NVIDIA GPU needs the Vulkan loader (Debian/Ubuntu: libvulkan1) and the driver's ICD.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/providers-bundle.sh <out-dir>}
mkdir -p "$out"
printf "import { run } from '%s/tools/providers.ts';\nprocess.exitCode = await run(process.argv.slice(2));\n" "$PWD" > "$out/entry.ts"
# argv[1] is overwritten first thing so that no bundled module's "run as a script" check fires;
# sharp (image loading) is not needed by the check and is replaced by a stub.
echo "export default function sharp() { throw new Error('sharp is not in the providers bundle'); }" > "$out/sharp-stub.mjs"
node_modules/.bin/esbuild "$out/entry.ts" --bundle --platform=node --format=esm --target=node20 --log-level=error \
  --external:onnxruntime-node --alias:sharp="$(realpath "$out")/sharp-stub.mjs" --outfile="$out/providers.mjs" \
  --banner:js="import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url); process.argv[1] = '/ttaq-providers-bundle';"
rm "$out/entry.ts" "$out/sharp-stub.mjs"
cp "$(command -v node)" "$out/node"
mkdir -p "$out/node_modules"
tar cf - --exclude='*/napi-v6/darwin' --exclude='*/napi-v6/win32' --exclude='*/napi-v6/linux/arm64' \
  node_modules/onnxruntime-node node_modules/onnxruntime-common | tar xf - -C "$out"
mkdir -p "$out/models" && cp models/*.onnx models/*.manifest.json "$out/models/"
cat > "$out/run.sh" <<'RUN'
#!/usr/bin/env bash
cd "$(dirname "$0")" && exec ./node providers.mjs --model models/resnet20-fmnist.onnx --model models/mobilenet-fmnist.onnx --providers tensorrt,cuda,webgpu,cpu "$@"
RUN
chmod +x "$out/run.sh"
du -sh "$out"
