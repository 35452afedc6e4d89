/**
 * An untrained control model: the architecture and tokenizer of an existing checkpoint with freshly initialised
 * weights, written as a Hugging Face folder (config.json + model.safetensors in F32 + the tokenizer) that every
 * command opens like any other model. Feature visualizations of the control show what the architecture and the
 * tokenizer alone produce, before any training.
 *
 * Initialisation (the one GPT-2 and llama2.c use, `initializer_range` 0.02 in transformers): every linear weight,
 * the token embedding table (the model's own, never the source's) and GPT-2's position table ~ N(0, 0.02²); every
 * norm weight 1; every bias (q/k/v biases, GPT-2's linear and LayerNorm biases) 0. GPT-2's residual projections are
 * NOT scaled by 1/√(2·layers) as in transformers' GPT-2 init — one rule for everything keeps the control simple.
 *
 * Each tensor draws from its own stream, seeded from (seed, tensor name), so a tensor's values depend only on the
 * seed and its name: the same seed gives a byte-identical model.safetensors, whatever else changes.
 *
 * The weights are streamed to disk chunk by chunk; the source's weights are never read (only compared, for a head
 * stored separately, to learn whether it is tied).
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { paramError, UserError } from '../errors.js';
import { toFloat32 } from '../formats/dequant.js';
import { float32Chunks, writeSafetensors, type TensorSource } from '../formats/safetensors-write.js';
import type { StoredTensor } from '../formats/types.js';
import { readLlama2cTokenizer } from '../tokenizers/llama2c.js';
import { SentencePieceTokenizer, TokenType } from '../tokenizers/sentencepiece.js';
import type { Tokenizer } from '../tokenizers/types.js';
import { deriveSeed, normalStream } from '../util/random.js';
import type { ModelConfig } from './config.js';
import { headIsTied, type LoadedModel } from './load.js';
import { specOf } from './registry.js';
import type { TensorSpec } from './spec.js';

/** Standard deviation of every randomly initialised tensor (transformers' `initializer_range` default). */
export const INIT_STD = 0.02;

export type Init = { kind: 'normal'; std: number } | { kind: 'constant'; value: number };

/** One tensor of the output checkpoint: its Hugging Face name, shape and initialisation. */
export interface PlannedTensor {
  name: string;
  shape: number[];
  init: Init;
}

export interface RandomModelOptions {
  /** Base seed (0 .. 2^32-1); default 0. */
  seed?: number;
  /** Standard deviation of the normal initialisation; default INIT_STD. */
  std?: number;
  /**
   * The file the source's tokenizer was read from when the user named one explicitly (`--tokenizer`); otherwise the
   * tokenizer is found from the source itself (a Hugging Face folder's tokenizer.json).
   */
  tokenizerPath?: string;
  /**
   * Keep the source's trained tensors outside the blocks — the token embedding table (and GPT-2's position table), the
   * final norm and the head — and draw only the blocks fresh. This control separates what the trained embedding
   * table explains (the skip path) from what trained blocks add: a full redraw changes both at once.
   */
  keepEmbeddings?: boolean;
}

export interface RandomModelSummary {
  /** The folder written. */
  out: string;
  /** config.json's `architectures[0]`. */
  architecture: string;
  seed: number;
  std: number;
  tensors: number;
  parameters: number;
  /** Size of model.safetensors. */
  bytes: number;
  /** The tokenizer file written, or null when the source has none. */
  tokenizer: 'tokenizer.json' | 'tokenizer.bin' | null;
  /** Every file in the folder, sorted. */
  files: string[];
  tiedHead: boolean;
  /** Hugging Face names of the tensors copied from the source (`keepEmbeddings`); empty for a full redraw. */
  kept: string[];
}

// ---------------------------------------------------------------------------------------------------------------
// What to write

/**
 * The source's config as the output will have it: the head tied when the source's is (including a separately stored
 * head with the embedding's bytes, as llama.cpp writes for tied models), so the control has no extra parameters.
 *
 * RoPE: GGUF and llama2.c checkpoints pair dimensions (2i, 2i+1) ('interleaved'); a Hugging Face folder is read back
 * with rotate-half pairing (i, i + d/2), which is the HF convention the output follows. For trained weights that
 * difference requires permuting q/k; for freshly random weights no permutation exists to preserve — the two pairings
 * are the same architecture up to a fixed permutation of q/k rows, under which N(0, σ²) weights are equally likely.
 */
export function outputConfig(like: LoadedModel): ModelConfig {
  const tied = like.config.arch === 'gpt2' || headIsTied(like);
  return { ...like.config, tiedHead: tied, ropePairing: 'half' };
}

/** Every tensor the Hugging Face loader (hf.ts) expects for this config, by HF name, in checkpoint order: the spec's list. */
export function randomModelPlan(c: ModelConfig, std = INIT_STD): PlannedTensor[] {
  const inits: Record<TensorSpec['init'], Init> = {
    normal: { kind: 'normal', std },
    ones: { kind: 'constant', value: 1 },
    zeros: { kind: 'constant', value: 0 },
  };
  return specOf(c).tensors(c).map((t) => ({ name: t.hf, shape: t.shape, init: inits[t.init] }));
}

/** config.json for the config, as the family's spec writes it (its fromHfConfig reads it back). */
export function hfConfigJson(c: ModelConfig, tokenizer: Tokenizer | null, std = INIT_STD): Record<string, unknown> {
  const special = { bos_token_id: tokenizer?.bosId ?? null, eos_token_id: tokenizer?.eosId ?? null };
  return specOf(c).toHfConfig(c, special, std);
}

/** The plan as safetensors sources: each tensor's values from its own seeded stream, generated as they are written. */
export function randomTensorSources(plan: readonly PlannedTensor[], seed: number): TensorSource[] {
  return plan.map((t) => ({
    name: t.name,
    dtype: 'F32',
    shape: t.shape,
    chunks: () => {
      const count = t.shape.reduce((a, b) => a * b, 1);
      const init = t.init;
      if (init.kind === 'constant') return float32Chunks(count, () => init.value);
      const normal = normalStream(deriveSeed(seed, t.name));
      return float32Chunks(count, () => init.std * normal());
    },
  }));
}

// ---------------------------------------------------------------------------------------------------------------
// Writing the folder

/**
 * Writes the control model for `like` into `out`, which must not exist or be an empty directory. Everything is
 * written into a sibling temporary folder (`out.tmp-XXXXXX`) that is renamed to `out` only once complete, so a
 * failure leaves nothing at `out` (the temporary folder is removed too).
 */
export function writeRandomModel(like: LoadedModel, out: string, opts: RandomModelOptions = {}): RandomModelSummary {
  const seed = opts.seed ?? 0;
  const std = opts.std ?? INIT_STD;
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw paramError('seed', `must be an integer in 0..4294967295, got ${seed}`);
  if (!(std > 0 && Number.isFinite(std))) throw new UserError(`std must be a positive number, got ${std}`);
  checkOut(out);

  const config = outputConfig(like);
  const plan = randomModelPlan(config, std);
  checkAgainstSource(like, config);

  const target = path.resolve(out);
  // mkdir (not mkdtemp, which makes it 0700) so the folder gets the usual permissions under the user's umask.
  const tmp = `${target}.tmp-${randomBytes(6).toString('hex')}`;
  try {
    mkdirSync(path.dirname(target), { recursive: true });
    mkdirSync(tmp);
  } catch (e) {
    throw paramError('out', `cannot create ${out} (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
  try {
    const tokenizer = writeTokenizer(like, tmp, opts.tokenizerPath);
    const configJson = hfConfigJson(config, like.tokenizer, std);
    writeFileSync(path.join(tmp, 'config.json'), JSON.stringify(configJson, null, 2) + '\n');
    const kept = opts.keepEmbeddings ? keptTensors(like, config) : new Map<string, StoredTensor>();
    const init = kept.size
      ? `blocks random: normal(0, ${std}) linear weights, norms 1, biases 0; ${[...kept.keys()].join(', ')} copied from the trained source`
      : `random: normal(0, ${std}) linear and embedding weights, norms 1, biases 0`;
    const metadata = { format: 'pt', 'llm_features.init': init, 'llm_features.seed': String(seed) };
    const sources = randomTensorSources(plan, seed).map((s) => {
      const src = kept.get(s.name);
      return src ? keptSource(s, src) : s;
    });
    const written = writeSafetensors(path.join(tmp, 'model.safetensors'), sources, metadata);
    const files = readdirSync(tmp).sort();
    // rename(2) replaces an empty directory on POSIX but not on Windows; the emptiness was checked above.
    if (existsSync(target)) rmdirSync(target);
    renameSync(tmp, target);
    return {
      out,
      architecture: (configJson.architectures as string[])[0]!,
      seed,
      std,
      tensors: plan.length,
      parameters: plan.reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0),
      bytes: written.bytes,
      tokenizer,
      files,
      tiedHead: config.tiedHead,
      kept: [...kept.keys()],
    };
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    if (e instanceof UserError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code) throw paramError('out', `cannot write ${out} (${code})`);
    throw e;
  }
}

/** The source's tensors outside the blocks (layer before the first block or after the last), by the output's HF name. */
function keptTensors(like: LoadedModel, config: ModelConfig): Map<string, StoredTensor> {
  const out = new Map<string, StoredTensor>();
  for (const t of specOf(config).tensors(config)) {
    if (t.layer >= 0 && t.layer < config.nLayers) continue;
    const src = like.tensors.get(t.name);
    if (!src) throw new UserError(`${like.path}: has no ${t.name} to keep (--keep-embeddings)`);
    out.set(t.hf, src);
  }
  return out;
}

/** A kept tensor as a safetensors source: the source's values as float32 (converted from its stored dtype). */
function keptSource(planned: TensorSource, src: StoredTensor): TensorSource {
  return {
    ...planned,
    chunks: () => {
      const f = toFloat32(src);
      return [new Uint8Array(f.buffer, f.byteOffset, f.byteLength)];
    },
  };
}

/** `out` may not exist yet, or be an empty directory; anything else is refused before any work is done. */
function checkOut(out: string): void {
  if (!existsSync(out)) return;
  if (!statSync(out).isDirectory()) throw paramError('out', `${out} exists and is not a directory`);
  if (readdirSync(out).length > 0) throw paramError('out', `${out} exists and is not empty`);
}

/**
 * The plan is built from the config alone; every source tensor of the same role must have the same shape (a
 * mismatch would be a bug in the spec, not bad input).
 */
function checkAgainstSource(like: LoadedModel, config: ModelConfig): void {
  for (const t of specOf(config).tensors(config)) {
    const src = like.tensors.get(t.name);
    if (src && src.shape.join(',') !== t.shape.join(',')) {
      throw new Error(`random-model: planned ${t.hf} [${t.shape}] but ${like.path} stores [${src.shape}]`);
    }
  }
}

/**
 * Carries the source's tokenizer into `dir`: a tokenizer.json is copied (with the tokenizer_config.json and
 * special_tokens_map.json beside it, for transformers); a SentencePiece vocabulary (GGUF metadata or a llama2.c
 * tokenizer.bin) is written as tokenizer.bin, which load.ts reads from a folder without tokenizer.json.
 */
function writeTokenizer(like: LoadedModel, dir: string, explicitPath?: string): RandomModelSummary['tokenizer'] {
  const tok = like.tokenizer;
  if (!tok) return null;
  if (tok instanceof SentencePieceTokenizer) {
    const file = path.join(dir, 'tokenizer.bin');
    writeLlama2cTokenizer(file, tok);
    checkTokenizerRoundTrip(like, tok, file);
    return 'tokenizer.bin';
  }
  if (tok.kind === 'tokenizer.json') {
    const src = explicitPath ?? (like.format === 'hf' ? path.join(like.path, 'tokenizer.json') : undefined);
    if (!src || !existsSync(src)) throw new UserError(`${like.path}: cannot find the tokenizer.json file to copy`);
    copyFileSync(src, path.join(dir, 'tokenizer.json'));
    for (const extra of ['tokenizer_config.json', 'special_tokens_map.json']) {
      const p = path.join(path.dirname(src), extra);
      if (existsSync(p)) copyFileSync(p, path.join(dir, extra));
    }
    return 'tokenizer.json';
  }
  throw new UserError(`${like.path}: its tokenizer (${tok.kind}) cannot be written into a model folder`);
}

/**
 * llama2.c's tokenizer.bin, spelled as its tokenizer.py writes it: i32 max_token_length, then per token f32 score,
 * i32 byte length, UTF-8 bytes; '▁' as ' ', BOS/EOS (ids 1 and 2) as "\n<s>\n" / "\n</s>\n". readLlama2cTokenizer
 * undoes exactly this spelling.
 */
export function writeLlama2cTokenizer(file: string, tok: SentencePieceTokenizer): void {
  const records: Buffer[] = [];
  let maxLen = 1;
  for (let id = 0; id < tok.vocabSize; id++) {
    const { piece, score } = tok.info(id);
    let spelled = piece.replaceAll('\u2581', ' ');
    if (id === 1 && piece === '<s>') spelled = '\n<s>\n';
    if (id === 2 && piece === '</s>') spelled = '\n</s>\n';
    const bytes = Buffer.from(spelled, 'utf8');
    maxLen = Math.max(maxLen, bytes.length);
    const head = Buffer.alloc(8);
    head.writeFloatLE(score, 0);
    head.writeInt32LE(bytes.length, 4);
    records.push(head, bytes);
  }
  const first = Buffer.alloc(4);
  first.writeInt32LE(maxLen, 0);
  writeFileSync(file, Buffer.concat([first, ...records]));
}

/** What a token type means to SentencePieceTokenizer: normal and user-defined pieces behave alike, as do control and unused. */
function role(type: number): string {
  if (type === TokenType.NORMAL || type === TokenType.USER_DEFINED) return 'text';
  if (type === TokenType.CONTROL || type === TokenType.UNUSED) return 'control';
  return type === TokenType.BYTE ? 'byte' : type === TokenType.UNKNOWN ? 'unknown' : `type ${type}`;
}

/**
 * tokenizer.bin stores no token types and fixes BOS/EOS at ids 1/2 (types are inferred from the pieces on reading),
 * so not every SentencePiece vocabulary survives it. Read the file back and refuse rather than ship a tokenizer that
 * encodes differently from the source's.
 */
function checkTokenizerRoundTrip(like: LoadedModel, tok: SentencePieceTokenizer, file: string): void {
  const back = readLlama2cTokenizer(file, like.config.vocabSize);
  const fail = (why: string): never => {
    throw new UserError(`${like.path}: its tokenizer cannot be carried as a llama2.c tokenizer.bin (${why})`);
  };
  if (back.vocabSize !== tok.vocabSize) fail(`${tok.vocabSize} tokens, the model has ${like.config.vocabSize}`);
  if (back.bosId !== tok.bosId || back.eosId !== tok.eosId) fail(`BOS/EOS are ${tok.bosId}/${tok.eosId}, tokenizer.bin fixes them at 1/2`);
  for (let id = 0; id < tok.vocabSize; id++) {
    const [a, b] = [tok.info(id), back.info(id)];
    if (a.piece !== b.piece || role(a.type) !== role(b.type) || Math.fround(a.score) !== b.score) {
      fail(`token ${id} ${JSON.stringify(a.piece)} (type ${a.type}) reads back as ${JSON.stringify(b.piece)} (type ${b.type})`);
    }
  }
}
