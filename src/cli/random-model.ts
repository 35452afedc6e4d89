import { loadModel } from '../models/load.js';
import { INIT_STD, writeRandomModel } from '../models/random-model.js';
import { printJson, type Command } from './command.js';

export const randomModelCommand: Command = {
  name: 'random-model',
  summary: 'write an untrained control: same architecture and tokenizer, fresh N(0, 0.02) weights (--keep-embeddings: blocks only), as an HF folder',
  async run(v) {
    const likePath = v.need('like');
    const out = v.need('out');
    const seed = v.num('seed');
    const tokenizerPath = v.str('tokenizer');
    const like = loadModel(likePath, { tokenizer: tokenizerPath });
    const s = writeRandomModel(like, out, { seed, std: INIT_STD, tokenizerPath, keepEmbeddings: v.bool('keep-embeddings') });
    if (v.bool('json')) {
      printJson({
        out: s.out,
        like: likePath,
        architecture: s.architecture,
        seed: s.seed,
        std: s.std,
        tensors: s.tensors,
        parameters: s.parameters,
        bytes: s.bytes,
        tied_head: s.tiedHead,
        tokenizer: s.tokenizer,
        files: s.files,
        kept: s.kept,
      });
      return;
    }
    const mb = (s.bytes / 1e6).toFixed(1);
    process.stdout.write(
      `wrote ${s.out}: ${s.architecture}, ${s.parameters.toLocaleString('en-US')} parameters (F32, ${mb} MB), ` +
        `tokenizer ${s.tokenizer ?? 'none'}, seed ${s.seed}${s.kept.length ? `; kept from the source: ${s.kept.join(', ')}` : ''}\n`,
    );
  },
};
