import { toFloat32 } from '../formats/dequant.js';
import { assertFiniteChunk } from '../formats/finite.js';
import type { LoadedModel } from '../models/load.js';
import { architectureOf } from '../models/transformer.js';
import { Decoder, type EmbeddingTable } from './decode.js';

/** The model's token embedding table [V × D] as float32 (converted from the stored dtype). */
export function embeddingTable(model: LoadedModel): EmbeddingTable {
  const name = architectureOf(model.config).embeddingTable;
  const t = model.tensors.get(name);
  if (!t) throw new Error(`${model.path}: no embedding table ${name}`);
  const data = toFloat32(t);
  // Before any decode or pseudoinverse: a NaN here would surface as "EᵀE is singular" or garbage tokens.
  assertFiniteChunk(t, data);
  return { data, vocab: t.shape[0]!, dim: t.shape[1]! };
}

export function decoderFor(model: LoadedModel): Decoder {
  return new Decoder(embeddingTable(model));
}
