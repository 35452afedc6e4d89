import path from 'node:path';
import { scanReference } from '../atlas/scan-reference.js';
import { Atlas } from '../atlas/store.js';
import { UserError } from '../errors.js';
import { corpusReference, type ReferenceProvider } from '../features/calibrate.js';
import { resolveDevice } from '../engine/device.js';
import { ModelRunner } from '../engine/runner.js';
import { parseIdList } from '../features/settings.js';
import { loadModel, type LoadedModel } from '../models/load.js';
import type { Tokenizer } from '../tokenizers/types.js';
import type { Values } from './args.js';

export function openModel(v: Values): LoadedModel {
  return loadModel(v.need('model'), { tokenizer: v.str('tokenizer') });
}

export function openRunner(v: Values): ModelRunner {
  const device = resolveDevice(v.str('device'));
  const model = openModel(v);
  return new ModelRunner(model, { threads: v.num('threads'), lowMemory: v.bool('low-memory'), device });
}

export function requireTokenizer(model: LoadedModel): Tokenizer {
  if (!model.tokenizer) {
    throw new UserError(`${model.path}: no tokenizer found (give --tokenizer PATH, or use --ids)`);
  }
  return model.tokenizer;
}

/** `--ids 1,2,3` or `--text TEXT` (exactly one), as token ids. */
export function inputIds(v: Values, model: LoadedModel): number[] {
  const ids = v.str('ids');
  const text = v.str('text');
  if ((ids === undefined) === (text === undefined)) throw new UserError('--ids/--text: give exactly one of them');
  const flag = ids !== undefined ? '--ids' : '--text';
  const out = ids !== undefined ? parseIdList(ids, 'ids') : requireTokenizer(model).encode(text!, { bos: v.bool('bos') });
  if (out.length === 0) throw new UserError('--text: encodes to no tokens');
  const { maxSeqLen, vocabSize } = model.config;
  if (out.length > maxSeqLen) throw new UserError(`${flag}: ${out.length} tokens exceed the model's context of ${maxSeqLen}`);
  const bad = out.find((id) => id >= vocabSize);
  if (bad !== undefined) throw new UserError(`${flag}: token id ${bad} is outside the vocabulary 0-${vocabSize - 1}`);
  return out;
}

/**
 * The real-data reference a run's percentiles come from: `--corpus FILE` (every same-shaped window, computed now) or
 * `--scan-db FILE` (a matching scan's stored grid). `ownDb`: the atlas a build writes, opened writable if it is the same file.
 */
export function referenceFromFlags(v: Values, runner: ModelRunner, ownDb?: string): ReferenceProvider | undefined {
  const corpus = v.str('corpus');
  const scanDb = v.str('scan-db');
  if (corpus !== undefined && scanDb !== undefined) throw new UserError('--corpus/--scan-db: give at most one of them');
  if (corpus !== undefined) return corpusReference(runner, runner.model.tokenizer, { file: corpus });
  if (scanDb !== undefined) {
    if (ownDb !== undefined && path.resolve(ownDb) === path.resolve(scanDb)) return scanReference(() => Atlas.open(scanDb), runner);
    return scanReference(() => Atlas.open(scanDb, { readonly: true }), runner);
  }
  return undefined;
}
