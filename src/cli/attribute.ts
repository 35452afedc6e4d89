import { attribute } from '../features/attribute.js';
import { decoderFor } from '../features/embeddings.js';
import { inputIds, openRunner } from './common.js';
import { printJson, type Command } from './command.js';
import { blocksAndHook, commandSettings } from './settings.js';
import { featureMapOf, type SaeFile, type SaeObjective } from '../features/sae.js';

export const attributeCommand: Command = {
  name: 'attribute',
  summary: 'activation of a selection for real tokens, its gradient w.r.t. the token embeddings, and saliency',
  async run(v) {
    const { blocks, hook } = blocksAndHook(v);
    const select = v.need('select');
    const runner = openRunner(v);
    const ids = inputIds(v, runner.model);
    const map = featureMapOf(commandSettings(v, runner.model) as { sae?: SaeFile; saeObjective?: SaeObjective });
    const result = await attribute(runner, decoderFor(runner.model), ids, blocks, hook, select, map);
    await runner.close();
    if (v.bool('json')) {
      printJson(result);
      return;
    }
    const tok = runner.model.tokenizer;
    const max = Math.max(...result.saliency.map(Math.abs), 1e-30);
    process.stdout.write(`${result.select} blocks ${blocks[0]}-${blocks[1]} hook ${hook}${map ? ` SAE latents (${map.width})` : ''}: activation ${result.activation.toFixed(4)}\n`);
    result.ids.forEach((id, t) => {
      const s = result.saliency[t]!;
      const barLen = Math.round((Math.abs(s) / max) * 20);
      const label = tok ? JSON.stringify(tok.piece(id)) : String(id);
      process.stdout.write(`${String(t).padStart(4)} ${label.padEnd(14)} ${s >= 0 ? '+' : '-'}${'#'.repeat(barLen).padEnd(20)} ${s.toFixed(4)}\n`);
    });
  },
};
