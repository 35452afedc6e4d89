import { generate } from '../engine/generate.js';
import { optNumber, optString } from './args.js';
import { MODEL_FLAGS, openRunner, requireTokenizer } from './common.js';
import type { Command } from './command.js';

export const generateCommand: Command = {
  name: 'generate',
  summary: 'sample text from the model (temperature 0 = greedy)',
  usage: 'llm-features generate --model PATH [--prompt TEXT] [--max-tokens N] [--temperature T] [--seed S]',
  flags: { ...MODEL_FLAGS, prompt: 'string', 'max-tokens': 'int', temperature: 'number', seed: 'int' },
  async run(flags) {
    const runner = openRunner(flags);
    const tokenizer = requireTokenizer(runner.model);
    const result = await generate(runner, tokenizer, {
      prompt: optString(flags, 'prompt'),
      maxTokens: optNumber(flags, 'max-tokens', 256, { min: 0 }),
      temperature: optNumber(flags, 'temperature', 0, { min: 0 }),
      seed: optNumber(flags, 'seed', 0),
    });
    process.stdout.write(result.text + '\n');
  },
};
