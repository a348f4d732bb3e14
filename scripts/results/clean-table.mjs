// Prints the clean-accuracy table of docs/RESULTS.md from `ttaq quantize --json` reports.
// usage: node scripts/results/clean-table.mjs runs/q/w8a8.json runs/results/q/*.json ...
// Each file's name (without .json) is the row's name. PEM/PCR weights come from the report's
// `reconstruction`, else from the model's manifest, else (files from before either) from the name:
// ttaq = both at 1, -pemonly / -pcronly = one, the weights of that time.
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

// The manifest beside the model has carried the weights (calibration.pem / .pcr) longer than the report.
function manifestWeights(model) {
  try {
    const c = JSON.parse(readFileSync(model.replace(/\.onnx$/, '.manifest.json'), 'utf8')).quantization?.calibration;
    return c && typeof c.pem === 'number' && typeof c.pcr === 'number' ? { pem: c.pem, pcr: c.pcr } : undefined;
  } catch {
    return undefined;
  }
}

const rows = ['| model | W/A | method | PEM | PCR | clean acc. (%) | drop vs FP32 (pt) | output SQNR (dB) | size (KB) | wall (s) |',
  '| --- | --- | --- | :-: | :-: | ---: | ---: | ---: | ---: | ---: |'];
for (const file of process.argv.slice(2)) {
  const { report: r, out } = JSON.parse(readFileSync(file, 'utf8'));
  const name = basename(file, '.json');
  const rec = r.reconstruction ?? manifestWeights(out);
  const pem = rec ? rec.pem : r.method === 'ttaq' && !name.includes('pcronly') ? 1 : 0;
  const pcr = rec ? rec.pcr : r.method === 'ttaq' && !name.includes('pemonly') ? 1 : 0;
  const secs = Object.values(r.seconds).reduce((a, b) => a + b, 0);
  const acc = r.accuracy;
  rows.push(`| ${name} | W${r.weightBits}A${r.activationBits} | ${r.method} | ${pem} | ${pcr} | ${(100 * acc.quantized).toFixed(2)} | `
    + `${(100 * (acc.fp32 - acc.quantized)).toFixed(2)} | ${r.outputSqnrDb.toFixed(1)} | ${(r.size.quantizedBytes / 1024).toFixed(0)} | ${secs.toFixed(0)} |`);
}
console.log(rows.join('\n'));
