import { requireString } from './args.js';
import { MODEL_FLAGS, openModel, requireTokenizer } from './common.js';
import { printJson, type Command } from './command.js';

export const tokenizeCommand: Command = {
  name: 'tokenize',
  summary: 'encode text with the model\'s tokenizer: {ids, tokens}',
  usage: 'llm-features tokenize --model PATH --text TEXT [--bos]',
  flags: { ...MODEL_FLAGS, text: 'string', bos: 'bool' },
  async run(flags) {
    const tok = requireTokenizer(openModel(flags));
    const ids = tok.encode(requireString(flags, 'text'), { bos: flags.bos === true });
    printJson({ ids, tokens: ids.map((id) => tok.piece(id)) });
  },
};
