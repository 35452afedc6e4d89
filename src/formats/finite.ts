/**
 * Non-finite weights (NaN, ±Inf) are corruption, not numbers: one of them turns every activation downstream into NaN
 * and a sample into "⁇ ⁇ ⁇" with exit 0. Readers call this on every float32 value they hand to the engine, once.
 */
import { UserError } from '../errors.js';
import type { StoredTensor } from './types.js';

/** Throws a UserError naming the tensor and the first non-finite value; `start` is the index of values[0] in it. */
export function assertFiniteChunk(t: Pick<StoredTensor, 'file' | 'name'>, values: Float32Array, start = 0): void {
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    // v - v is 0 for every finite v and NaN for NaN and ±Inf: one subtraction and one compare per value.
    if (v - v !== 0) {
      throw new UserError(`${t.file}: tensor ${t.name} holds ${v} at element ${start + i}; the checkpoint is corrupt (weights must be finite)`);
    }
  }
}
