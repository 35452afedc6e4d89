import { identityRate, typicalNeighbourCosine } from '../features/decode.js';
import { decoderFor } from '../features/embeddings.js';
import { normalTokenIds } from '../features/visualize.js';
import { headIsTied, type LoadedModel } from '../models/load.js';
import { openModel } from './common.js';
import { printJson, type Command } from './command.js';
import { requireDevice } from './devices.js';

export const inspectCommand: Command = {
  name: 'inspect',
  summary: 'describe a checkpoint (format, sizes, dtype, tokenizer) as JSON',
  async run(v) {
    const m = openModel(v);
    const deviceFlag = v.str('device');
    const device = deviceFlag === undefined ? undefined : await requireDevice(deviceFlag);
    const c = m.config;
    printJson({
      path: m.path,
      format: m.format,
      architecture: c.arch,
      hidden_size: c.dim,
      layers: c.nLayers,
      heads: c.nHeads,
      kv_heads: c.nKvHeads,
      head_dim: c.headDim,
      ffn_size: c.ffnDim,
      vocab_size: c.vocabSize,
      context_length: c.maxSeqLen,
      stored_dtype: m.storedDtype,
      tokenizer: m.tokenizer?.kind ?? null,
      tied_head: headIsTied(m),
      rope: { theta: c.ropeTheta, pairing: c.ropePairing, scaling: c.ropeScaling, rotary_dim: c.rotaryDim ?? c.headDim },
      parallel_residual: c.parallelResidual ?? false,
      norm_eps: c.normEps,
      decoder: decoderChecks(m),
      ...(device ? { device } : {}),
    });
  },
};

/**
 * How well the embedding table decodes: the share of normal tokens whose own embedding pinv-decodes back to themselves,
 * and the median over normal tokens of the largest cosine to another normal token. Sampled for large vocabularies.
 */
function decoderChecks(m: LoadedModel): Record<string, unknown> {
  const V = m.config.vocabSize;
  const ids = normalTokenIds(m.tokenizer, V);
  try {
    const decoder = decoderFor(m);
    const id = identityRate(decoder, ids);
    const nn = typicalNeighbourCosine(decoder, ids);
    return {
      identity_rate: id.rate,
      tokens_checked: id.total,
      identity_failures: id.failures.length,
      sampled: id.sampled,
      nearest_neighbour_cosine_median: nn.median,
    };
  } catch (e) {
    return { error: e instanceof Error ? e.message : String(e) };
  }
}
