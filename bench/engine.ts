/**
 * Engine micro-benchmarks (issue: engine): generation speed on stories260K and the forward time of 8 tokens through a
 * 12-layer d768 random Llama. Run: node dist/bench/engine.js
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { generate } from '../src/engine/generate.js';
import { ModelRunner } from '../src/engine/runner.js';
import { loadModel } from '../src/models/load.js';
import { writeRandomLlama2c } from './random-llama2c.js';

const models = process.env.LLMF_TEST_MODELS ?? path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../../shared/models');

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function generationSpeed() {
  const model = loadModel(path.join(models, 'stories260K.bin'));
  const runner = new ModelRunner(model);
  await generate(runner, model.tokenizer!, { maxTokens: 200 }); // build the bucket sessions
  const t0 = performance.now();
  const g = await generate(runner, model.tokenizer!, { maxTokens: 200 });
  const ms = performance.now() - t0;
  await runner.close();
  return { tokens: g.ids.length - 1, ms, tokensPerSecond: ((g.ids.length - 1) / ms) * 1000 };
}

async function forwardConfigA() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'llmf-bench-'));
  try {
    const file = path.join(dir, 'configA.bin');
    writeRandomLlama2c(file, { dim: 768, hiddenDim: 2048, nLayers: 12, nHeads: 12, nKvHeads: 12, vocabSize: 32000, seqLen: 256 });
    const runner = new ModelRunner(loadModel(file));
    const ids = [Array.from({ length: 8 }, (_, i) => 100 + i)];
    const t0 = performance.now();
    await runner.hidden(ids, [1, 12], 'resid');
    const firstMs = performance.now() - t0;
    const times: number[] = [];
    for (let i = 0; i < 20; i++) {
      const t = performance.now();
      await runner.hidden(ids, [1, 12], 'resid');
      times.push(performance.now() - t);
    }
    await runner.close();
    return { sessionAndFirstRunMs: firstMs, forwardMs: median(times) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const gen = await generationSpeed();
console.log(`generate stories260K: ${gen.tokens} tokens in ${gen.ms.toFixed(0)} ms = ${gen.tokensPerSecond.toFixed(0)} tokens/s (sessions warm)`);
const fwd = await forwardConfigA();
console.log(`forward 8 tokens, 12-layer d768 Llama: ${fwd.forwardMs.toFixed(2)} ms median of 20 (session + first run ${fwd.sessionAndFirstRunMs.toFixed(0)} ms)`);
