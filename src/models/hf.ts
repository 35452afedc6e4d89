/**
 * Opens a Hugging Face model folder (config.json + model.safetensors, or shards listed in model.safetensors.index.json)
 * as a normalised ModelConfig plus tensors under the GGUF-style names the block code reads — the same shape of result
 * load.ts produces for GGUF and llama2.c. HF cache snapshot folders work as they are: their files are symlinks into
 * ../../blobs, which are opened through the link (StoredTensor.file keeps the snapshot path; the engine resolves
 * real paths itself). Nothing here reads weight bytes, only safetensors headers.
 */
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { UserError } from '../errors.js';
import { readSmallText } from '../formats/files.js';
import { readSafetensors } from '../formats/safetensors.js';
import type { StoredTensor } from '../formats/types.js';
import type { Llama3RopeScaling, ModelConfig } from './config.js';

export interface HfFolder {
  config: ModelConfig;
  /** By GGUF-style name (token_embd.weight, blk.N.attn_q.weight, …; GPT-2 keeps its own names). `.name` is the HF name. */
  tensors: Map<string, StoredTensor>;
  /** The dtype most weight bytes are stored in. */
  storedDtype: string;
  hasTokenizerJson: boolean;
}

type Family = 'llama' | 'mistral' | 'qwen2' | 'gpt2';

const ARCHITECTURES: Record<string, Family> = {
  LlamaForCausalLM: 'llama',
  MistralForCausalLM: 'mistral',
  Qwen2ForCausalLM: 'qwen2',
  GPT2LMHeadModel: 'gpt2',
};
const MODEL_TYPES: readonly Family[] = ['llama', 'mistral', 'qwen2', 'gpt2'];

export function loadHfFolder(dir: string): HfFolder {
  if (!existsSync(dir)) throw new UserError(`${dir}: no such file or directory`);
  if (!statSync(dir).isDirectory()) throw new UserError(`${dir}: not a directory`);
  const configPath = path.join(dir, 'config.json');
  const json = readJsonObject(configPath, 'a Hugging Face model folder needs config.json');
  const family = detectFamily(configPath, json);
  const stored = readCheckpoint(dir);

  const built = family === 'gpt2' ? gpt2Model(configPath, json, stored) : llamaModel(configPath, json, family, stored);
  const tensors = pickTensors(dir, stored, built.wants, built.ignore);
  return {
    config: built.config,
    tensors,
    storedDtype: dominantDtype([...tensors.values()]),
    hasTokenizerJson: existsSync(path.join(dir, 'tokenizer.json')),
  };
}

function detectFamily(configPath: string, json: Record<string, unknown>): Family {
  const arch = Array.isArray(json.architectures) ? json.architectures[0] : undefined;
  if (typeof arch === 'string' && Object.hasOwn(ARCHITECTURES, arch)) return ARCHITECTURES[arch]!;
  const modelType = json.model_type;
  if (MODEL_TYPES.includes(modelType as Family)) return modelType as Family;
  const named = typeof arch === 'string' ? arch : typeof modelType === 'string' ? modelType : '(none given)';
  throw new UserError(`${configPath}: architecture ${named} is not supported (supported: llama, mistral, qwen2, gpt2)`);
}

// ---------------------------------------------------------------------------------------------------------------
// Reading the safetensors file(s)

/** Stored tensors by HF name. */
type Stored = Map<string, StoredTensor>;

function readCheckpoint(dir: string): Stored {
  // Same precedence as transformers: a single model.safetensors wins over an index.
  const single = path.join(dir, 'model.safetensors');
  if (existsSync(single)) return collectShards(dir, [single]);
  const index = path.join(dir, 'model.safetensors.index.json');
  if (existsSync(index)) return readShardedCheckpoint(dir, index);
  throw new UserError(`${dir}: no model.safetensors or model.safetensors.index.json (PyTorch .bin checkpoints are not supported)`);
}

function readShardedCheckpoint(dir: string, indexPath: string): Stored {
  const weightMap = readJsonObject(indexPath).weight_map;
  if (typeof weightMap !== 'object' || weightMap === null || Array.isArray(weightMap)) {
    throw new UserError(`${indexPath}: weight_map is missing or not an object`);
  }
  const entries = Object.entries(weightMap as Record<string, unknown>);
  // Sorted so that reading order, and so any error message, does not depend on the index's key order.
  const shardNames = [...new Set(entries.map(([name, file]) => checkShardName(indexPath, name, file)))].sort();
  for (const file of shardNames) {
    // existsSync follows symlinks, so a snapshot link to a blob that was never downloaded counts as missing.
    if (!existsSync(path.join(dir, file))) throw new UserError(`${indexPath}: lists shard ${file}, which does not exist`);
  }
  const stored = collectShards(
    dir,
    shardNames.map((f) => path.join(dir, f)),
  );
  for (const [name, file] of entries) {
    const t = stored.get(name);
    if (!t || t.file !== path.resolve(dir, file as string)) {
      throw new UserError(`${indexPath}: lists tensor ${name} in ${file}, but ${file} does not contain it`);
    }
  }
  return stored;
}

/** Shard names come from a downloaded file: keep them inside the folder. */
function checkShardName(indexPath: string, tensor: string, file: unknown): string {
  if (typeof file !== 'string' || file === '' || path.isAbsolute(file) || file.split(/[\\/]/).includes('..')) {
    throw new UserError(`${indexPath}: tensor ${tensor} maps to ${JSON.stringify(file)}, not a file name inside the folder`);
  }
  return file;
}

/** Every tensor of every shard by name; a name in two shards is ambiguous, so refuse it. */
function collectShards(dir: string, files: string[]): Stored {
  const stored: Stored = new Map();
  for (const file of files) {
    for (const t of readSafetensors(file)) {
      const other = stored.get(t.name);
      if (other) {
        throw new UserError(`${dir}: tensor ${t.name} is stored twice, in ${path.basename(other.file)} and ${path.basename(t.file)}`);
      }
      stored.set(t.name, t);
    }
  }
  return stored;
}

// ---------------------------------------------------------------------------------------------------------------
// Architectures: config.json → ModelConfig, and the tensors that config implies

/** One tensor the block code needs: its HF name, the name the block code uses, and the shape the config implies. */
interface Want {
  hf: string;
  name: string;
  shape: number[];
}

interface Built {
  config: ModelConfig;
  wants: Want[];
  /** Stored tensors that are deliberately unused (buffers, a tied head); any other unexpected tensor is an error. */
  ignore: (hfName: string) => boolean;
}

/**
 * Every layer stores several tensors, so a layer count above the number of stored tensors is corrupt; refusing it
 * here keeps the per-layer loops from running (and allocating) 2^32 times on a bogus value.
 */
function layerCount(configPath: string, key: string, n: number, stored: Stored): number {
  if (n > stored.size) throw new UserError(`${configPath}: ${key} is ${n}, but the checkpoint holds only ${stored.size} tensors`);
  return n;
}

function llamaModel(configPath: string, json: Record<string, unknown>, family: Family, stored: Stored): Built {
  const c = new ConfigReader(configPath, json);
  const act = c.string('hidden_act', 'silu');
  if (act !== 'silu') throw new UserError(`${configPath}: hidden_act ${act} is not supported for ${family} (only silu)`);
  const dim = c.int('hidden_size');
  const nHeads = c.int('num_attention_heads');
  const nKvHeads = c.int('num_key_value_heads', nHeads);
  const headDim = json.head_dim == null ? c.divide('hidden_size', dim, 'num_attention_heads', nHeads) : c.int('head_dim');
  if (nHeads % nKvHeads !== 0) throw new UserError(`${configPath}: ${nHeads} attention heads are not divisible by ${nKvHeads} KV heads`);
  if (headDim % 2 !== 0) throw new UserError(`${configPath}: head size ${headDim} is odd; RoPE needs pairs`);
  const tied = c.bool('tie_word_embeddings', false);
  const config: ModelConfig = {
    arch: 'llama',
    dim,
    nLayers: layerCount(configPath, 'num_hidden_layers', c.int('num_hidden_layers'), stored),
    nHeads,
    nKvHeads,
    headDim,
    ffnDim: c.int('intermediate_size'),
    vocabSize: c.int('vocab_size'),
    normEps: c.positive('rms_norm_eps', 1e-6),
    maxSeqLen: c.int('max_position_embeddings', 2048),
    tiedHead: tied,
    ropeTheta: c.positive('rope_theta', 10000),
    // Hugging Face keeps q/k in rotate-half order (pairs i and i + d/2); GGUF converters permute them, we do not.
    ropePairing: 'half',
    ropeScaling: ropeScaling(configPath, json.rope_scaling),
    qkvBias: family === 'qwen2' || stored.has('model.layers.0.self_attn.q_proj.bias'),
  };
  if (!tied && !stored.has('lm_head.weight')) {
    throw new UserError(`${configPath}: tie_word_embeddings is false but the checkpoint has no lm_head.weight`);
  }
  return {
    config,
    wants: llamaWants(config),
    // Old checkpoints store RoPE's inv_freq buffer; a tied model may still carry a copy of the head, which
    // transformers ignores too (it uses the embeddings).
    ignore: (n) => n.endsWith('.rotary_emb.inv_freq') || (tied && n === 'lm_head.weight'),
  };
}

function llamaWants(c: ModelConfig): Want[] {
  const q = c.nHeads * c.headDim;
  const kv = c.nKvHeads * c.headDim;
  const wants: Want[] = [
    { hf: 'model.embed_tokens.weight', name: 'token_embd.weight', shape: [c.vocabSize, c.dim] },
    { hf: 'model.norm.weight', name: 'output_norm.weight', shape: [c.dim] },
  ];
  if (!c.tiedHead) wants.push({ hf: 'lm_head.weight', name: 'output.weight', shape: [c.vocabSize, c.dim] });
  for (let i = 0; i < c.nLayers; i++) {
    const layer = (hf: string, name: string, shape: number[]) => wants.push({ hf: `model.layers.${i}.${hf}`, name: `blk.${i}.${name}`, shape });
    layer('input_layernorm.weight', 'attn_norm.weight', [c.dim]);
    layer('self_attn.q_proj.weight', 'attn_q.weight', [q, c.dim]);
    layer('self_attn.k_proj.weight', 'attn_k.weight', [kv, c.dim]);
    layer('self_attn.v_proj.weight', 'attn_v.weight', [kv, c.dim]);
    if (c.qkvBias) {
      layer('self_attn.q_proj.bias', 'attn_q.bias', [q]);
      layer('self_attn.k_proj.bias', 'attn_k.bias', [kv]);
      layer('self_attn.v_proj.bias', 'attn_v.bias', [kv]);
    }
    layer('self_attn.o_proj.weight', 'attn_output.weight', [c.dim, q]);
    layer('post_attention_layernorm.weight', 'ffn_norm.weight', [c.dim]);
    layer('mlp.gate_proj.weight', 'ffn_gate.weight', [c.ffnDim, c.dim]);
    layer('mlp.up_proj.weight', 'ffn_up.weight', [c.ffnDim, c.dim]);
    layer('mlp.down_proj.weight', 'ffn_down.weight', [c.dim, c.ffnDim]);
  }
  return wants;
}

/** `rope_scaling`: absent/null/"default" means none; Llama 3.1's "llama3" is supported; anything else would be wrong. */
function ropeScaling(configPath: string, v: unknown): Llama3RopeScaling | null {
  if (v == null) return null;
  if (typeof v !== 'object' || Array.isArray(v)) throw new UserError(`${configPath}: rope_scaling is not an object`);
  const json = v as Record<string, unknown>;
  const type = json.rope_type ?? json.type;
  if (type === 'default') return null;
  if (type !== 'llama3') throw new UserError(`${configPath}: rope_scaling type ${JSON.stringify(type)} is not supported (only llama3 is)`);
  const c = new ConfigReader(configPath, json, 'rope_scaling.');
  const s: Llama3RopeScaling = {
    factor: c.positive('factor'),
    lowFreqFactor: c.positive('low_freq_factor'),
    highFreqFactor: c.positive('high_freq_factor'),
    originalMaxPositionEmbeddings: c.int('original_max_position_embeddings'),
  };
  // ropeFrequencies interpolates between the two; equal factors would divide by zero.
  if (s.highFreqFactor <= s.lowFreqFactor) {
    throw new UserError(`${configPath}: rope_scaling.high_freq_factor (${s.highFreqFactor}) must exceed low_freq_factor (${s.lowFreqFactor})`);
  }
  return s;
}

function gpt2Model(configPath: string, json: Record<string, unknown>, stored: Stored): Built {
  const c = new ConfigReader(configPath, json);
  const act = c.string('activation_function', 'gelu_new');
  if (act !== 'gelu_new') throw new UserError(`${configPath}: activation_function ${act} is not supported for gpt2 (only gelu_new)`);
  const dim = c.int('n_embd');
  const nHeads = c.int('n_head');
  const config: ModelConfig = {
    arch: 'gpt2',
    dim,
    nLayers: layerCount(configPath, 'n_layer', c.int('n_layer'), stored),
    nHeads,
    nKvHeads: nHeads,
    headDim: c.divide('n_embd', dim, 'n_head', nHeads),
    ffnDim: c.int('n_inner', 4 * dim),
    vocabSize: c.int('vocab_size'),
    normEps: c.positive('layer_norm_epsilon', 1e-5),
    maxSeqLen: c.int('n_positions'),
    tiedHead: true,
    ropeTheta: 0,
    ropePairing: 'half',
    ropeScaling: null,
    qkvBias: true,
  };
  // Fine-tuned checkpoints prefix every name with "transformer."; the official ones do not. Accept both.
  const prefix = stored.has('transformer.wte.weight') ? 'transformer.' : '';
  return {
    config,
    wants: gpt2Wants(config).map((w) => ({ ...w, hf: prefix + w.hf })),
    // attn.bias / attn.masked_bias are the causal-mask buffers; lm_head is tied to wte.
    ignore: (n) => /(^|\.)h\.\d+\.attn\.(masked_)?bias$/.test(n) || n === 'lm_head.weight',
  };
}

/** GPT-2 keeps its own names (without "transformer."); Conv1D weights are stored [in, out]. */
function gpt2Wants(c: ModelConfig): Want[] {
  const d = c.dim;
  const f = c.ffnDim;
  const wants: Want[] = [];
  const add = (name: string, shape: number[]) => wants.push({ hf: name, name, shape });
  add('wte.weight', [c.vocabSize, d]);
  add('wpe.weight', [c.maxSeqLen, d]);
  for (let i = 0; i < c.nLayers; i++) {
    const h = `h.${i}.`;
    add(h + 'ln_1.weight', [d]);
    add(h + 'ln_1.bias', [d]);
    add(h + 'attn.c_attn.weight', [d, 3 * d]);
    add(h + 'attn.c_attn.bias', [3 * d]);
    add(h + 'attn.c_proj.weight', [d, d]);
    add(h + 'attn.c_proj.bias', [d]);
    add(h + 'ln_2.weight', [d]);
    add(h + 'ln_2.bias', [d]);
    add(h + 'mlp.c_fc.weight', [d, f]);
    add(h + 'mlp.c_fc.bias', [f]);
    add(h + 'mlp.c_proj.weight', [f, d]);
    add(h + 'mlp.c_proj.bias', [d]);
  }
  add('ln_f.weight', [d]);
  add('ln_f.bias', [d]);
  return wants;
}

/**
 * Renames the wanted tensors, checking each exists with the shape config.json implies. Stored tensors nobody wants
 * (and not deliberately ignored) mean the checkpoint has parts this architecture would silently drop — e.g. Llama
 * `attention_bias` / `mlp_bias` variants — so they are refused rather than producing wrong activations.
 */
function pickTensors(dir: string, stored: Stored, wants: Want[], ignore: (hfName: string) => boolean): Map<string, StoredTensor> {
  const tensors = new Map<string, StoredTensor>();
  for (const w of wants) {
    const t = stored.get(w.hf);
    if (!t) throw new UserError(`${dir}: tensor ${w.hf} is missing (config.json implies shape [${w.shape}])`);
    if (t.shape.length !== w.shape.length || t.shape.some((n, i) => n !== w.shape[i])) {
      throw new UserError(`${dir}: tensor ${w.hf} in ${path.basename(t.file)} has shape [${t.shape}], config.json implies [${w.shape}]`);
    }
    tensors.set(w.name, t);
  }
  const wanted = new Set(wants.map((w) => w.hf));
  for (const [name, t] of stored) {
    if (!wanted.has(name) && !ignore(name)) {
      throw new UserError(`${dir}: tensor ${name} in ${path.basename(t.file)} is not part of the architecture config.json describes`);
    }
  }
  return tensors;
}

// ---------------------------------------------------------------------------------------------------------------
// Small helpers

/** Typed access to config.json values; `null` counts as absent (GPT-2 writes "n_inner": null). */
class ConfigReader {
  constructor(
    private readonly file: string,
    private readonly json: Record<string, unknown>,
    private readonly prefix = '',
  ) {}

  private get(key: string, fallback: unknown): unknown {
    const v = this.json[key];
    if (v != null) return v;
    if (fallback === undefined) throw new UserError(`${this.file}: ${this.prefix}${key} is missing`);
    return fallback;
  }

  int(key: string, fallback?: number): number {
    const v = this.get(key, fallback);
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
      throw new UserError(`${this.file}: ${this.prefix}${key} must be a positive integer, got ${JSON.stringify(v)}`);
    }
    return v;
  }

  positive(key: string, fallback?: number): number {
    const v = this.get(key, fallback);
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      throw new UserError(`${this.file}: ${this.prefix}${key} must be a positive number, got ${JSON.stringify(v)}`);
    }
    return v;
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.get(key, fallback);
    if (typeof v !== 'boolean') throw new UserError(`${this.file}: ${this.prefix}${key} must be true or false, got ${JSON.stringify(v)}`);
    return v;
  }

  string(key: string, fallback: string): string {
    const v = this.get(key, fallback);
    if (typeof v !== 'string') throw new UserError(`${this.file}: ${this.prefix}${key} must be a string, got ${JSON.stringify(v)}`);
    return v;
  }

  divide(aKey: string, a: number, bKey: string, b: number): number {
    if (a % b !== 0) throw new UserError(`${this.file}: ${aKey} ${a} is not divisible by ${bKey} ${b}`);
    return a / b;
  }
}

function readJsonObject(file: string, why?: string): Record<string, unknown> {
  let text: string;
  try {
    text = readSmallText(file, 'JSON file');
  } catch (e) {
    if (!(e instanceof UserError)) throw e;
    throw new UserError(`${e.message}${why ? `; ${why}` : ''}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new UserError(`${file}: not valid JSON (${String((e as Error).message).replace(/\s+/g, ' ')})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new UserError(`${file}: not a JSON object`);
  return json as Record<string, unknown>;
}

function dominantDtype(tensors: StoredTensor[]): string {
  const bytes = new Map<string, number>();
  for (const t of tensors) bytes.set(t.dtype, (bytes.get(t.dtype) ?? 0) + t.nbytes);
  return [...bytes.entries()].sort((a, b) => b[1] - a[1])[0]?.[0] ?? 'F32';
}
