import { UserError } from '../errors.js';
import type { Tokenizer } from '../tokenizers/types.js';
import { uniformStream } from '../util/random.js';
import type { ModelRunner } from './runner.js';

export interface GenerateOptions {
  prompt?: string;
  maxTokens?: number;
  /** 0 = greedy. */
  temperature?: number;
  seed?: number;
}

export interface Generation {
  ids: number[];
  text: string;
}

/** Sequence-length buckets: one session each, so a generation builds a handful of sessions, not one per token. */
function bucketFor(length: number, maxSeqLen: number): number {
  let b = 32;
  while (b < length) b *= 2;
  return Math.min(b, maxSeqLen);
}

/**
 * Autoregressive sampling from BOS (plus an optional prompt). Stops at BOS/EOS, after maxTokens new tokens, or at the
 * model's context length.
 */
export async function generate(runner: ModelRunner, tokenizer: Tokenizer, opts: GenerateOptions = {}): Promise<Generation> {
  const cfg = runner.config;
  const maxTokens = opts.maxTokens ?? 256;
  const temperature = opts.temperature ?? 0;
  if (tokenizer.bosId === null) throw new UserError(`${runner.model.path}: the tokenizer has no BOS token to start from`);
  const ids = [tokenizer.bosId, ...(opts.prompt ? tokenizer.encode(opts.prompt) : [])];
  if (ids.length > cfg.maxSeqLen) throw new UserError(`prompt: ${ids.length} tokens exceed the model's context of ${cfg.maxSeqLen}`, undefined, 'prompt');
  const random = uniformStream(opts.seed ?? 0);
  for (let n = 0; n < maxTokens && ids.length < cfg.maxSeqLen; n++) {
    const logits = await runner.logitsAt(ids, ids.length - 1, bucketFor(ids.length, cfg.maxSeqLen));
    const next = temperature === 0 ? argmax(logits) : sample(logits, temperature, random());
    if (next === tokenizer.bosId || next === tokenizer.eosId) break;
    ids.push(next);
  }
  return { ids, text: tokenizer.decode(ids) };
}

export function argmax(xs: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i]! > xs[best]!) best = i;
  return best;
}

function sample(logits: Float32Array, temperature: number, u: number): number {
  const max = logits.reduce((m, x) => Math.max(m, x), -Infinity);
  const weights = Array.from(logits, (x) => Math.exp((x - max) / temperature));
  const total = weights.reduce((a, b) => a + b, 0);
  let acc = 0;
  for (let i = 0; i < weights.length; i++) {
    acc += weights[i]! / total;
    if (u < acc) return i;
  }
  return weights.length - 1;
}
