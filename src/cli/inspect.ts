import { headIsTied } from '../models/load.js';
import { MODEL_FLAGS, openModel } from './common.js';
import { printJson, type Command } from './command.js';

export const inspectCommand: Command = {
  name: 'inspect',
  summary: 'describe a checkpoint (format, sizes, dtype, tokenizer) as JSON',
  usage: 'llm-features inspect --model PATH',
  flags: { ...MODEL_FLAGS },
  async run(flags) {
    const m = openModel(flags);
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
      rope: { theta: c.ropeTheta, pairing: c.ropePairing, scaling: c.ropeScaling },
      norm_eps: c.normEps,
    });
  },
};
