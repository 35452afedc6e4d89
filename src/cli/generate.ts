import { generate } from '../engine/generate.js';
import { writeSamples } from '../engine/samples.js';
import { UserError } from '../errors.js';
import { optNumber, optString } from './args.js';
import { MODEL_FLAGS, openRunner, requireTokenizer } from './common.js';
import type { Command } from './command.js';

export const generateCommand: Command = {
  name: 'generate',
  summary: 'sample text from the model (temperature 0 = greedy)',
  usage:
    'llm-features generate --model PATH [--prompt TEXT] [--max-tokens N] [--temperature T] [--seed S]\n' +
    '  [--samples N --out FILE]: N samples (seeds S, S+1, …; temperature 1 unless given) written as a corpus, one story per\n' +
    '  <|endoftext|> line',
  flags: { ...MODEL_FLAGS, prompt: 'string', 'max-tokens': 'int', temperature: 'number', seed: 'int', samples: 'int', out: 'string' },
  async run(flags) {
    const out = optString(flags, 'out');
    if ((flags.samples === undefined) !== (out === undefined)) throw new UserError(flags.samples === undefined ? '--out: only with --samples N' : '--samples: needs --out FILE');
    const runner = openRunner(flags);
    const tokenizer = requireTokenizer(runner.model);
    if (out !== undefined) {
      const n = await writeSamples(runner, tokenizer, out, {
        samples: optNumber(flags, 'samples', 1, { min: 1, max: 1_000_000 }),
        prompt: optString(flags, 'prompt'),
        maxTokens: optNumber(flags, 'max-tokens', 256, { min: 0 }),
        // Greedy samples would all be the same story: sampling defaults to temperature 1.
        temperature: optNumber(flags, 'temperature', 1, { min: 0 }),
        seed: optNumber(flags, 'seed', 0),
        onSample: (i, total) => process.stderr.isTTY && process.stderr.write(`\r${i}/${total} samples${i === total ? '\n' : ''}`),
      });
      process.stdout.write(`${out}: ${n} samples\n`);
      await runner.close();
      return;
    }
    const result = await generate(runner, tokenizer, {
      prompt: optString(flags, 'prompt'),
      maxTokens: optNumber(flags, 'max-tokens', 256, { min: 0 }),
      temperature: optNumber(flags, 'temperature', 0, { min: 0 }),
      seed: optNumber(flags, 'seed', 0),
    });
    process.stdout.write(result.text + '\n');
  },
};
