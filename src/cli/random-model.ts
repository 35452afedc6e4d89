import { loadModel } from '../models/load.js';
import { INIT_STD, writeRandomModel } from '../models/random-model.js';
import { optNumber, optString, requireString } from './args.js';
import { printJson, type Command } from './command.js';

export const randomModelCommand: Command = {
  name: 'random-model',
  summary: 'write an untrained control: same architecture and tokenizer, fresh N(0, 0.02) weights, as an HF folder',
  usage: 'llm-features random-model --like PATH --out DIR [--seed S] [--tokenizer PATH] [--json]',
  flags: { like: 'string', out: 'string', seed: 'int', tokenizer: 'string', json: 'bool' },
  async run(flags) {
    const likePath = requireString(flags, 'like');
    const out = requireString(flags, 'out');
    const seed = optNumber(flags, 'seed', 0, { min: 0, max: 0xffffffff });
    const tokenizerPath = optString(flags, 'tokenizer');
    const like = loadModel(likePath, { tokenizer: tokenizerPath });
    const s = writeRandomModel(like, out, { seed, std: INIT_STD, tokenizerPath });
    if (flags.json) {
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
      });
      return;
    }
    const mb = (s.bytes / 1e6).toFixed(1);
    process.stdout.write(
      `wrote ${s.out}: ${s.architecture}, ${s.parameters.toLocaleString('en-US')} parameters (F32, ${mb} MB), ` +
        `tokenizer ${s.tokenizer ?? 'none'}, seed ${s.seed}\n`,
    );
  },
};
