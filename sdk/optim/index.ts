// sdk/optim: optimizers and learning-rate schedules for parameters held as Float32Arrays.
//
// API:
//   new Sgd({ lr, momentum?, dampening?, nesterov?, weightDecay? })
//   new Adam({ lr, beta1?, beta2?, eps?, weightDecay?, decoupled? })   decoupled = AdamW
//   createOptimizer({ kind: 'sgd' | 'adam' | 'adamw', ...options })
//   opt.step(params: Map<name, Float32Array | Tensor>, grads: Map<name, Float32Array | Tensor>, lr?)
//       updates the arrays in place; parameters without a gradient are left alone
//   opt.lr (set from a schedule), opt.steps, opt.state() / opt.load(state) / opt.reset()
//   stateToJson / stateFromJson (base64 buffers), stateToBytes / stateFromBytes, stateConfig
//   schedules: constantLr, cosineLr({ base, total, min }), stepLr({ base, every, gamma }),
//              multiStepLr({ base, milestones, gamma }), linearWarmup(after, { steps, startFactor })
//   GraphUpdater.create(opt, params) -> await updater.step(params, grads): the same update run by
//       onnxruntime. Measured on the 2-core CI box (sdk/optim/bench.ts) the JavaScript loops win
//       at both 1e3 and 1e6 parameters, so `opt.step` is the default everywhere.
//
// Example:
//   const opt = new Sgd({ lr: 0.1, momentum: 0.9, weightDecay: 5e-4 });
//   const lr = linearWarmup(cosineLr({ base: 0.1, total: 1000 }), { steps: 50 });
//   for (let t = 0; t < 1000; t++) {
//     const r = await step.run(params, batch);          // sdk/autodiff GradientStep
//     opt.step(params, r.grads, lr(t));                  // params: Map<name, float32 Tensor>
//   }
//   await writeFile('opt.json', JSON.stringify(stateToJson(opt.state())));
export {
  Adam,
  Sgd,
  createOptimizer,
  paramData,
  stateConfig,
  type AdamOptions,
  type GradArrays,
  type Optimizer,
  type OptimizerConfig,
  type OptimizerState,
  type ParamArrays,
  type SgdOptions,
} from './optimizers.ts';
export { constantLr, cosineLr, linearWarmup, multiStepLr, stepLr, type Schedule } from './schedules.ts';
export { stateFromBytes, stateFromJson, stateToBytes, stateToJson, type OptimizerStateJson } from './state.ts';
export { GraphUpdater } from './graph.ts';
