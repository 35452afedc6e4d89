/**
 * What one architecture family is, in one place: how its config.json (and GGUF metadata, where the format has the
 * family) maps onto a ModelConfig, the complete tensor list a config implies, and the graph pieces — embedding, block,
 * head — with the hooks it exposes. Loading (hf.ts, load.ts), `random-model`, the memory estimate and the weight
 * binding all derive from the spec; a family is one file exporting one (llama.ts, gpt2.ts), listed in registry.ts.
 */
import { UserError } from '../errors.js';
import type { Graph } from '../graph/graph.js';
import { gather } from '../graph/ops.js';
import type { Value } from '../graph/value.js';
import type { Family, Hook, ModelConfig } from './config.js';

/** Looks up a weight by its block-code name (e.g. `blk.0.attn_q.weight`); `optional` gives `null` when absent. */
export type WeightFn = (name: string) => Value;
export type OptionalWeightFn = (name: string) => Value | null;

export interface Weights {
  get: WeightFn;
  optional: OptionalWeightFn;
}

/** How `random-model` initialises a tensor: N(0, std²) with the control's std, or a constant. */
export type TensorInit = 'normal' | 'ones' | 'zeros';

/** One tensor of the architecture, under every name a format gives it. */
export interface TensorSpec {
  /** The name the block code reads (GGUF's for Llama, GPT-2's own for GPT-2). */
  name: string;
  /** Its name in a Hugging Face checkpoint (before any prefix the checkpoint adds, see HfReading.prefix). */
  hf: string;
  /** Its name in a GGUF file, for families GGUF has (then it equals `name`). */
  gguf?: string;
  shape: number[];
  init: TensorInit;
  /**
   * Where it is used: -1 before the blocks (embeddings, positions), 0..nLayers-1 its block, nLayers after them (final
   * norm, head). The memory estimate and the hub download (only the shards a request's blocks need) read this.
   */
  layer: number;
}

/** Everything config.json is read with: its path (for messages), the parsed object, and which tensors are stored. */
export interface HfConfigInput {
  path: string;
  json: Record<string, unknown>;
  /** Whether the checkpoint stores a tensor of this (full, as stored) Hugging Face name. */
  has(hfName: string): boolean;
  /** How many tensors the checkpoint stores (and, for a partial snapshot, would store): bounds the layer count. */
  tensorCount: number;
}

/**
 * Every layer stores several tensors, so a layer count above the number of stored tensors is corrupt; refusing it
 * keeps the per-layer loops from running (and allocating) 2^32 times on a bogus value.
 */
export function layerCount(input: HfConfigInput, key: string, n: number): number {
  if (n > input.tensorCount) throw new UserError(`${input.path}: ${key} is ${n}, but the checkpoint holds only ${input.tensorCount} tensors`);
  return n;
}

export interface HfReading {
  config: ModelConfig;
  /** A prefix every stored name carries (fine-tuned GPT-2 checkpoints write "transformer."); '' for none. */
  prefix: string;
  /** Stored tensors that are deliberately unused (buffers, a tied copy of the head); anything else unnamed is refused. */
  ignore(hfName: string): boolean;
}

/** GGUF metadata access with the project's messages (load.ts implements it over a GgufFile). */
export interface GgufMeta {
  path: string;
  number(key: string, fallback?: number): number;
  int(key: string, fallback?: number): number;
  has(key: string): boolean;
  /** Shape of a stored tensor, or null. */
  tensorShape(name: string): readonly number[] | null;
  /** A number that must be > 0 (norm epsilon, rope base): a corrupt or negative value is refused. */
  positive(key: string, fallback: number): number;
  /** How many tensors the file holds: bounds the block count. */
  tensorCount: number;
}

/** The block function of one graph: block `layer` on x, computing hooks up to `upTo` and leaving later ones out. */
export type BlockFn = (x: Value, layer: number, w: Weights, upTo: Hook) => Partial<Record<Hook, Value>>;

export interface ArchitectureSpec {
  family: Family;
  /** config.json `architectures[0]` classes this spec reads. */
  hfClasses: readonly string[];
  /** config.json `model_type`s this spec reads (when `architectures` names no known class). */
  modelTypes: readonly string[];
  /** GGUF `general.architecture`, for families GGUF files carry. */
  ggufArch?: string;

  /** config.json → ModelConfig, with the family's defaults and refusals (one-line UserErrors). */
  fromHfConfig(input: HfConfigInput): HfReading;
  /** GGUF metadata → ModelConfig, for families with `ggufArch`. */
  fromGguf?(meta: GgufMeta): ModelConfig;
  /** ModelConfig → the config.json `random-model` writes (fromHfConfig reads it back to the same config). */
  toHfConfig(cfg: ModelConfig, special: { bos_token_id: number | null; eos_token_id: number | null }, std: number): Record<string, unknown>;
  /** Every tensor the config implies, in checkpoint order. The single list every reader and writer uses. */
  tensors(cfg: ModelConfig): TensorSpec[];

  /**
   * Whether the family's models saw a BOS token at the start of every training text (Llama: yes; GPT-2: no — its
   * <|endoftext|> only separates documents). Corpus scans start each story with BOS when this is true and the
   * tokenizer has one, as visualize's --bos does for a run.
   */
  expectsBos: boolean;
  /** The hooks its blocks expose (all of HOOKS for the current families). */
  hooks: readonly Hook[];
  /** Block-code name of the token embedding table [V, D] (the decoder's table). */
  embeddingTable: string;
  /** Per-graph constants (positions, masks) and a block function closed over them. */
  blocks(g: Graph, cfg: ModelConfig, length: number): BlockFn;
  /** Token embeddings for int64 ids [B, T] → [B, T, D] (GPT-2 adds learned positions here). */
  embed(ids: Value, cfg: ModelConfig, w: Weights): Value;
  /** Embeddings given directly → what the blocks receive (identity for Llama; GPT-2 adds positions). */
  inputFromEmbeddings(e: Value, cfg: ModelConfig, w: Weights): Value;
  /** Final norm + head: [..., D] → [..., V]. */
  head(x: Value, cfg: ModelConfig, w: Weights): Value;
  /**
   * MLP activations [..., ffn] of block `layer` (0-based) → what they add to the residual stream, without the
   * down-projection's bias: for a one-hot activation, neuron j's output direction (the down-projection column).
   */
  mlpDown(a: Value, layer: number, cfg: ModelConfig, w: Weights): Value;
  /**
   * A bare residual-space direction [..., D] → logits [..., V] through the final norm's direction-dependent linear
   * part and the head (no 1/σ scale, no norm bias; features/logit-effects.ts states why).
   */
  directionLogits(v: Value, cfg: ModelConfig, w: Weights): Value;
  /**
   * An `attn` direction [..., D] of block `layer` → what it adds to the residual stream, for families whose attention
   * branch has an output norm (Gemma-2, OLMo-2: its gain, by the same linear-part rule as directionLogits). Absent:
   * `attn` is already a residual-space vector.
   */
  attnDirection?(v: Value, layer: number, cfg: ModelConfig, w: Weights): Value;
}

/**
 * The input side of a family whose blocks read the token embeddings as they are (no scale, no positions): the table's
 * name, the lookup, and the identity from given embeddings. Spread into a spec.
 */
export function plainEmbedding(table: string): Pick<ArchitectureSpec, 'embeddingTable' | 'embed' | 'inputFromEmbeddings'> {
  return { embeddingTable: table, embed: (ids, _cfg, w) => gather(w.get(table), ids, 0), inputFromEmbeddings: (e) => e };
}

/**
 * A tensor list whose block code reads the Hugging Face names themselves (GPT-2, GPT-NeoX, Phi, Phi-3): `add` appends
 * one tensor under that name (layer −1: outside the blocks), `out` is the list in checkpoint order.
 */
export function hfNamedTensors(): { out: TensorSpec[]; add: (name: string, shape: number[], init: TensorInit, layer?: number) => void } {
  const out: TensorSpec[] = [];
  return { out, add: (name, shape, init, layer = -1) => out.push({ name, hf: name, shape, init, layer }) };
}
