import { attribute } from '../features/attribute.js';
import { decoderFor } from '../features/embeddings.js';
import { HOOKS, type Hook } from '../models/config.js';
import { UserError } from '../errors.js';
import { optString, parseBlockRange, requireString } from './args.js';
import { inputIds, MODEL_FLAGS, openRunner } from './common.js';
import { printJson, type Command } from './command.js';
import { resolveAtFile } from './at-file.js';

export const attributeCommand: Command = {
  name: 'attribute',
  summary: 'activation of a selection for real tokens, its gradient w.r.t. the token embeddings, and saliency',
  usage: 'llm-features attribute --model PATH (--ids 1,2,3 | --text TEXT) [--bos] --blocks A-B [--hook resid|mlp|attn] --select "[:, :, F]" [--json]',
  flags: { ...MODEL_FLAGS, ids: 'string', text: 'string', bos: 'bool', blocks: 'string', hook: 'string', select: 'string', json: 'bool' },
  async run(flags) {
    const hook = (optString(flags, 'hook') ?? 'resid') as Hook;
    if (!HOOKS.includes(hook)) throw new UserError(`--hook: unknown hook "${hook}" (expected ${HOOKS.join(', ')})`);
    const blocks = parseBlockRange(requireString(flags, 'blocks'));
    const select = resolveAtFile(requireString(flags, 'select'), '--select');
    const runner = openRunner(flags);
    const ids = inputIds(flags, runner.model);
    const result = await attribute(runner, decoderFor(runner.model), ids, blocks, hook, select);
    await runner.close();
    if (flags.json) {
      printJson(result);
      return;
    }
    const tok = runner.model.tokenizer;
    const max = Math.max(...result.saliency.map(Math.abs), 1e-30);
    process.stdout.write(`${result.select} blocks ${blocks[0]}-${blocks[1]} hook ${hook}: activation ${result.activation.toFixed(4)}\n`);
    result.ids.forEach((id, t) => {
      const s = result.saliency[t]!;
      const barLen = Math.round((Math.abs(s) / max) * 20);
      const label = tok ? JSON.stringify(tok.piece(id)) : String(id);
      process.stdout.write(`${String(t).padStart(4)} ${label.padEnd(14)} ${s >= 0 ? '+' : '-'}${'#'.repeat(barLen).padEnd(20)} ${s.toFixed(4)}\n`);
    });
  },
};
