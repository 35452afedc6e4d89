import { identityRate, typicalNeighbourCosine } from '../features/decode.js';
import { decoderFor } from '../features/embeddings.js';
import { normalTokenIds } from '../features/visualize.js';
import { headIsTied, type LoadedModel } from '../models/load.js';
import { openModel } from './common.js';
import { ModelRunner } from '../engine/runner.js';
import { resolveDevice } from '../engine/device.js';
import { UserError } from '../errors.js';
import { checkWidth, loadSae, saeCorpusStats, saeHookFlag } from '../features/sae.js';
import { resolveBlocksAndHook } from '../models/hooks.js';
import type { Values } from './args.js';
import { printJson, type Command } from './command.js';
import { requireDevice } from './devices.js';

export const inspectCommand: Command = {
  name: 'inspect',
  summary: 'describe a checkpoint (format, sizes, dtype, tokenizer) as JSON',
  async run(v) {
    if (v.has('sae')) return inspectSae(v);
    if (v.has('corpus') || v.has('hook')) throw new UserError(`--${v.has('corpus') ? 'corpus' : 'hook'}: only with --sae (inspect describes an SAE on that hook)`);
    const m = openModel(v);
    const deviceFlag = v.str('device');
    const device = deviceFlag === undefined ? undefined : await requireDevice(deviceFlag);
    const c = m.config;
    printJson({
      path: m.path,
      format: m.format,
      architecture: c.arch,
      hidden_size: c.dim,
      layers: c.nLayers,
      heads: c.nHeads,
      kv_heads: c.nKvHeads,
      head_dim: c.headDim,
      ffn_size: c.ffnDim,
      vocab_size: c.vocabSize,
      context_length: c.maxSeqLen,
      stored_dtype: m.storedDtype,
      tokenizer: m.tokenizer?.kind ?? null,
      tied_head: headIsTied(m),
      rope: { theta: c.ropeTheta, pairing: c.ropePairing, scaling: c.ropeScaling, rotary_dim: c.rotaryDim ?? c.headDim },
      parallel_residual: c.parallelResidual ?? false,
      norm_eps: c.normEps,
      decoder: decoderChecks(m),
      ...(device ? { device } : {}),
    });
  },
};

/**
 * `inspect --model M --sae DIR [--corpus FILE]`: what the SAE is (architecture, hook, widths, content hash), checked
 * against the model's hook width, and with a corpus its L0, fraction of variance unexplained and dead latents.
 */
async function inspectSae(v: Values): Promise<void> {
  const sae = loadSae(v.need('sae'));
  const hookText = saeHookFlag(sae, v.has('hook') ? v.str('hook') : undefined);
  const { blocks, hook } = resolveBlocksAndHook(undefined, hookText);
  if (!blocks) throw new UserError(`--hook: ${hookText} names no block; give a TransformerLens name such as blocks.3.hook_resid_post`);
  // inspect is not a running command (no --threads/--low-memory flags): the runner's defaults.
  const runner = new ModelRunner(openModel(v), { device: resolveDevice(v.str('device')) });
  try {
    runner.checkRange(blocks, 'hook');
    checkWidth(runner.config, hook, sae.dIn);
    const corpus = v.str('corpus');
    const stats = corpus === undefined ? null : await saeCorpusStats(runner, sae, blocks, hook, corpus);
    const thr = sae.threshold ? Array.from(sae.threshold).sort((a, b) => a - b) : null;
    printJson({
      model: { path: runner.model.path, architecture: runner.config.arch },
      sae: {
        path: sae.path,
        format: sae.format,
        architecture: sae.architecture,
        ...(sae.k !== null ? { k: sae.k } : {}),
        hook_name: sae.hookName,
        blocks,
        hook,
        d_in: sae.dIn,
        d_sae: sae.dSae,
        apply_b_dec_to_input: sae.applyBDecToInput,
        ...(thr ? { threshold: { min: thr[0], median: thr[thr.length >> 1], max: thr[thr.length - 1] } } : {}),
        saelens_version: sae.version,
        sparsity_file: sae.sparsity !== null,
        hash: sae.hash,
      },
      corpus: stats && {
        file: stats.corpus,
        windows: stats.windows,
        tokens: stats.tokens,
        positions: 'every position >= 1 of 64-token windows (position 0, the attention sink, left out)',
        l0: stats.l0,
        fvu: stats.fvu,
        fve: 1 - stats.fvu,
        mse: stats.mse,
        dead_latents: stats.dead,
        dead_share: stats.dead / sae.dSae,
      },
    });
  } finally {
    await runner.close();
  }
}

/**
 * How well the embedding table decodes: the share of normal tokens whose own embedding pinv-decodes back to themselves,
 * and the median over normal tokens of the largest cosine to another normal token. Sampled for large vocabularies.
 */
function decoderChecks(m: LoadedModel): Record<string, unknown> {
  const V = m.config.vocabSize;
  const ids = normalTokenIds(m.tokenizer, V);
  try {
    const decoder = decoderFor(m);
    const id = identityRate(decoder, ids);
    const nn = typicalNeighbourCosine(decoder, ids);
    return {
      identity_rate: id.rate,
      tokens_checked: id.total,
      identity_failures: id.failures.length,
      sampled: id.sampled,
      nearest_neighbour_cosine_median: nn.median,
    };
  } catch (e) {
    return { error: e instanceof Error ? e.message : String(e) };
  }
}
