/**
 * Child process of webgpu.test.ts: onnxruntime writes its node-placement log (verbose severity) to the process's own
 * stderr from native code, where the test process cannot read it, so the sessions are created here. Builds the
 * optimiser's forward+backward graph, the ids → hidden graph and the full-model logits graph for a model on webgpu, runs each once, and exits.
 * argv: model path, cache folder, and optionally the sequence length (default 3; longer than Gemma-2's window to
 * place its sliding-window layers' mask too).
 */
import { ModelRunner } from '../src/engine/runner.js';
import { objectiveStep } from '../src/features/objective.js';
import { hookWidth } from '../src/models/config.js';
import { loadModel } from '../src/models/load.js';

const [modelPath, cacheDir, length] = process.argv.slice(2) as [string, string, string | undefined];
const model = loadModel(modelPath);
const runner = new ModelRunner(model, { device: 'webgpu', logSeverity: 0, cacheDir });
const { nLayers, dim } = model.config;
const [B, T] = [2, length ? Number(length) : 3];
const F = hookWidth(model.config, 'mlp');
const ones = new Float32Array(B * T * F).fill(1);
await objectiveStep(runner, [1, nLayers], 'mlp', { x: new Float32Array(B * T * dim).fill(0.1), l1: ones, lin: ones, C: new Float32Array(B).fill(1), report: ones }, { B, T });
const ids = [Array.from({ length: T }, (_, t) => t + 1)];
await runner.hidden(ids, [1, nLayers], 'resid');
await runner.logits(ids);
await runner.close();
process.stdout.write('placement-child: done\n');
