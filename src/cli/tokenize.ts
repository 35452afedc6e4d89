import { openModel, requireTokenizer } from './common.js';
import { printJson, type Command } from './command.js';

export const tokenizeCommand: Command = {
  name: 'tokenize',
  summary: 'encode text with the model\'s tokenizer: {ids, tokens}',
  async run(v) {
    const tok = requireTokenizer(openModel(v));
    const ids = tok.encode(v.need('text'), { bos: v.bool('bos') });
    printJson({ ids, tokens: ids.map((id) => tok.piece(id)) });
  },
};
