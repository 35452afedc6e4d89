import { UserError } from '../errors.js';
import type { Hook } from '../models/config.js';
import { resolveBlocksAndHook } from '../models/hooks.js';
import { inputIds, openRunner } from './common.js';
import { printJson, type Command } from './command.js';

export const forwardCommand: Command = {
  name: 'forward',
  summary: 'run blocks A-B on token embeddings and print a hook, or the full model\'s logits',
  async run(v) {
    const runner = openRunner(v);
    const ids = inputIds(v, runner.model);
    const hookFlag = v.str('hook');
    const resolved = resolveBlocksAndHook(v.str('blocks'), hookFlag);
    if (hookFlag !== undefined && resolved.blocks === null) throw new UserError('--hook: needs --blocks (without it, forward prints logits)');
    const blocks = resolved.blocks;
    let hook: Hook | 'logits' = 'logits';
    let result;
    if (blocks !== null) {
      hook = resolved.hook;
      result = await runner.hidden([ids], blocks, hook);
    } else {
      result = await runner.logits([ids]);
    }
    const [, T, F] = result.shape;
    const values = Array.from({ length: T }, (_, t) => Array.from(result.data.subarray(t * F, (t + 1) * F)));
    if (v.bool('json')) {
      printJson({ ids, blocks, hook, shape: [T, F], values });
      return;
    }
    process.stdout.write(`${hook} of ${blocks ? `blocks ${blocks[0]}-${blocks[1]}` : 'the full model'}: shape [${T}, ${F}]\n`);
    const tok = runner.model.tokenizer;
    values.forEach((row, t) => {
      const label = tok ? JSON.stringify(tok.piece(ids[t]!)) : String(ids[t]);
      const head = row.slice(0, 8).map((v) => v.toFixed(4)).join(' ');
      process.stdout.write(`${String(t).padStart(4)} ${label.padEnd(12)} ${head}${F > 8 ? ' …' : ''}\n`);
    });
  },
};
