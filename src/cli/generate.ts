import { generate } from '../engine/generate.js';
import { writeSamples } from '../engine/samples.js';
import { UserError } from '../errors.js';
import { openRunner, requireTokenizer } from './common.js';
import type { Command } from './command.js';

export const generateCommand: Command = {
  name: 'generate',
  summary: 'sample text from the model (temperature 0 = greedy), or write N samples as a corpus',
  notes: ['--samples N --out FILE: N samples (seeds S, S+1, …; temperature 1 unless given) written as a corpus, one story per <|endoftext|> line'],
  async run(v) {
    const out = v.str('out');
    if (v.has('samples') !== (out !== undefined)) throw new UserError(v.has('samples') ? '--samples: needs --out FILE' : '--out: only with --samples N');
    const runner = openRunner(v);
    const tokenizer = requireTokenizer(runner.model);
    if (out !== undefined) {
      const n = await writeSamples(runner, tokenizer, out, {
        samples: v.num('samples'),
        prompt: v.str('prompt'),
        maxTokens: v.num('max-tokens'),
        // Greedy samples would all be the same story: sampling defaults to temperature 1.
        temperature: v.has('temperature') ? v.num('temperature') : 1,
        seed: v.num('seed'),
        onSample: (i, total) => process.stderr.isTTY && process.stderr.write(`\r${i}/${total} samples${i === total ? '\n' : ''}`),
      });
      process.stdout.write(`${out}: ${n} samples\n`);
      await runner.close();
      return;
    }
    const result = await generate(runner, tokenizer, {
      prompt: v.str('prompt'),
      maxTokens: v.num('max-tokens'),
      temperature: v.num('temperature'),
      seed: v.num('seed'),
    });
    process.stdout.write(result.text + '\n');
  },
};
