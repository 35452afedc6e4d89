import { UserError } from '../errors.js';
import { ModelRunner } from '../engine/runner.js';
import { parseIdList } from '../features/settings.js';
import { loadModel, type LoadedModel } from '../models/load.js';
import type { Tokenizer } from '../tokenizers/types.js';
import type { Values } from './args.js';

export function openModel(v: Values): LoadedModel {
  return loadModel(v.need('model'), { tokenizer: v.str('tokenizer') });
}

export function openRunner(v: Values): ModelRunner {
  const model = openModel(v);
  return new ModelRunner(model, { threads: v.num('threads'), lowMemory: v.bool('low-memory') });
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
  const out = ids !== undefined ? parseIdList(ids, 'ids') : requireTokenizer(model).encode(text!, { bos: v.bool('bos') });
  if (out.length === 0) throw new UserError('--text: encodes to no tokens');
  return out;
}
