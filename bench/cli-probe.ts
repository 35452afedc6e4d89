/**
 * Child process: runs the real CLI (`llm-features visualize ...`, same argv) and stops it at the end of its first
 * optimisation step, reporting when that happened and the process's memory at that moment.
 *
 *   node dist/bench/cli-probe.js visualize --model FILE --blocks 1-12 --select "[:, :, 0]" [--low-memory] ...
 *
 * It wraps ModelRunner.prototype.objective (the one step every optimisation runs) before importing the CLI, so the
 * command is otherwise untouched. Prints one JSON line: epoch ms at the first objective call and at its end (the
 * parent subtracts its spawn time), the first call's duration (graph build + session creation + one step), and
 * VmRSS / VmHWM / RssAnon / RssFile.
 */
import { ModelRunner } from '../src/engine/runner.js';
import { cpuMs, procMemory } from './common.js';

const now = () => performance.timeOrigin + performance.now();
const original = ModelRunner.prototype.runGraph;
let firstCallAt = 0;
ModelRunner.prototype.runGraph = async function (this: ModelRunner, ...args: Parameters<typeof original>) {
  // The first objective step (feature objectives run as `objective|…` graphs) is the one the probe times.
  if (!args[0].startsWith('objective|')) return original.apply(this, args);
  firstCallAt ||= now();
  const result = await original.apply(this, args);
  const firstStepAt = now();
  console.log(JSON.stringify({ processStartAt: performance.timeOrigin, firstCallAt, firstStepAt, memory: procMemory(), loss: result.loss[0], cpuMs: cpuMs() }));
  process.exit(0);
};

// The CLI reads process.argv.slice(2): this script's own arguments.
await import('../src/cli/main.js');
