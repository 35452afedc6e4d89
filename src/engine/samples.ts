/**
 * A model-sampled corpus: N generations written in the plain-text corpus format (features/corpus.ts), each story
 * followed by a `<|endoftext|>` line. The file is written to a temporary name and renamed at the end, so an
 * interrupted run leaves nothing half-written.
 */
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { UserError } from '../errors.js';
import { DEFAULT_SEPARATOR } from '../features/corpus.js';
import type { Tokenizer } from '../tokenizers/types.js';
import { generate } from './generate.js';
import type { ModelRunner } from './runner.js';

export interface SampleOptions {
  samples: number;
  prompt?: string;
  maxTokens: number;
  temperature: number;
  /** Sample i uses seed + i. */
  seed: number;
  onSample?: (done: number, total: number) => void;
}

export async function writeSamples(runner: ModelRunner, tokenizer: Tokenizer, out: string, opts: SampleOptions): Promise<number> {
  const stories: string[] = [];
  for (let i = 0; i < opts.samples; i++) {
    const g = await generate(runner, tokenizer, { prompt: opts.prompt, maxTokens: opts.maxTokens, temperature: opts.temperature, seed: opts.seed + i });
    // A story that itself contains a separator line would split in two when read back.
    stories.push(g.text.split('\n').filter((l) => l.trim() !== DEFAULT_SEPARATOR).join('\n'));
    opts.onSample?.(i + 1, opts.samples);
  }
  const tmp = `${out}.tmp-${process.pid}`;
  try {
    writeFileSync(tmp, stories.map((s) => `${s}\n${DEFAULT_SEPARATOR}\n`).join(''));
    renameSync(tmp, out);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw new UserError(`--out: ${out}: cannot write the file (${(err as Error).message})`);
  }
  return stories.length;
}
