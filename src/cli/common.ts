import { UserError } from '../errors.js';
import { ModelRunner } from '../engine/runner.js';
import { loadModel, type LoadedModel } from '../models/load.js';
import type { Tokenizer } from '../tokenizers/types.js';
import { optNumber, optString, parseIds, requireString, type FlagSpec, type ParsedFlags } from './args.js';

/** Flags every model-reading command takes. */
export const MODEL_FLAGS: FlagSpec = { model: 'string', tokenizer: 'string', threads: 'int', 'low-memory': 'bool' };

export function openModel(flags: ParsedFlags): LoadedModel {
  return loadModel(requireString(flags, 'model'), { tokenizer: optString(flags, 'tokenizer') });
}

export function openRunner(flags: ParsedFlags): ModelRunner {
  const model = openModel(flags);
  return new ModelRunner(model, { threads: optNumber(flags, 'threads', 2, { min: 1, max: 256 }), lowMemory: flags['low-memory'] === true });
}

export function requireTokenizer(model: LoadedModel): Tokenizer {
  if (!model.tokenizer) {
    throw new UserError(`${model.path}: no tokenizer found (give --tokenizer PATH, or use --ids)`);
  }
  return model.tokenizer;
}

/** `--ids 1,2,3` or `--text TEXT` (exactly one), as token ids. */
export function inputIds(flags: ParsedFlags, model: LoadedModel): number[] {
  const ids = optString(flags, 'ids');
  const text = optString(flags, 'text');
  if ((ids === undefined) === (text === undefined)) throw new UserError('--ids/--text: give exactly one of them');
  const flag = ids !== undefined ? '--ids' : '--text';
  const out = ids !== undefined ? parseIds(ids) : requireTokenizer(model).encode(text!, { bos: flags['bos'] === true });
  if (out.length === 0) throw new UserError('--text: encodes to no tokens');
  const { maxSeqLen, vocabSize } = model.config;
  if (out.length > maxSeqLen) throw new UserError(`${flag}: ${out.length} tokens exceed the model's context of ${maxSeqLen}`);
  const bad = out.find((id) => id >= vocabSize);
  if (bad !== undefined) throw new UserError(`${flag}: token id ${bad} is outside the vocabulary 0-${vocabSize - 1}`);
  return out;
}
