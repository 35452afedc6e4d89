import { generate } from '../engine/generate.js';
import { openRunner, requireTokenizer } from './common.js';
import type { Command } from './command.js';

export const generateCommand: Command = {
  name: 'generate',
  summary: 'sample text from the model (temperature 0 = greedy)',
  async run(v) {
    const runner = openRunner(v);
    const tokenizer = requireTokenizer(runner.model);
    const result = await generate(runner, tokenizer, {
      prompt: v.str('prompt'),
      maxTokens: v.num('max-tokens'),
      temperature: v.num('temperature'),
      seed: v.num('seed'),
    });
    process.stdout.write(result.text + '\n');
  },
};
