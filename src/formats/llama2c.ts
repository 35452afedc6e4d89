/**
 * llama2.c legacy (v0) checkpoint reader. The file is a 7 × int32 header followed by f32 arrays in a fixed order,
 * each per-layer array stacked over layers. We expose every layer's slice as its own StoredTensor under the GGUF
 * name, so the rest of the code sees one naming scheme.
 *
 * Header: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len. A negative vocab_size means the
 * classifier is not tied to the embedding and is stored at the very end.
 */
import { BinaryReader } from './binary.js';
import type { StoredTensor } from './types.js';

export interface Llama2cHeader {
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  /** Always positive (the sign that marks an untied classifier is in `tied`). */
  vocabSize: number;
  seqLen: number;
}

export interface Llama2cFile {
  path: string;
  header: Llama2cHeader;
  /** True when the output classifier reuses token_embd.weight (no output.weight tensor). */
  tied: boolean;
  tensors: StoredTensor[];
}

const HEADER_BYTES = 7 * 4;
const F32 = 4;

/**
 * Upper bounds far above any real llama2.c model; they keep size arithmetic exact and turn a misidentified file
 * (e.g. a GGUF or safetensors renamed .bin) into a clear error instead of a nonsense "truncated".
 */
const LIMITS: Record<keyof Llama2cHeader, number> = {
  dim: 1 << 16,
  hiddenDim: 1 << 18,
  nLayers: 1024,
  nHeads: 1024,
  nKvHeads: 1024,
  vocabSize: 1 << 22,
  seqLen: 1 << 22,
};

/** "ak42" as a little-endian int32: the magic of llama2.c's newer (v1/v2) export formats. */
const AK42_MAGIC = 0x616b3432;

export function readLlama2c(path: string): Llama2cFile {
  const r = BinaryReader.open(path);
  try {
    return parse(r);
  } finally {
    r.close();
  }
}

function parse(r: BinaryReader): Llama2cFile {
  if (r.size === 0) throw r.error('empty file, expected a llama2.c checkpoint');
  r.need(HEADER_BYTES, 'llama2.c header');
  const raw = [0, 0, 0, 0, 0, 0, 0].map((_, i) => r.i32(`llama2.c header field ${i}`));
  if (raw[0] === AK42_MAGIC) {
    throw r.error('llama2.c version 1/2 export ("ak42" magic) is not supported; export with the legacy (v0) format');
  }
  const [dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabRaw, seqLen] = raw as [number, number, number, number, number, number, number];
  const header: Llama2cHeader = { dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize: Math.abs(vocabRaw), seqLen };
  const tied = vocabRaw > 0;
  validateHeader(r, header);
  const { tensors, end } = layout(r.path, header, tied);
  checkSize(r, header, end);
  return { path: r.path, header, tied, tensors };
}

/** Header fields as llama2.c's Config spells them, for messages. */
const FIELD_NAMES: Record<keyof Llama2cHeader, string> = {
  dim: 'dim',
  hiddenDim: 'hidden_dim',
  nLayers: 'n_layers',
  nHeads: 'n_heads',
  nKvHeads: 'n_kv_heads',
  vocabSize: 'vocab_size',
  seqLen: 'seq_len',
};

function validateHeader(r: BinaryReader, h: Llama2cHeader): void {
  for (const [key, limit] of Object.entries(LIMITS) as [keyof Llama2cHeader, number][]) {
    const v = h[key];
    const name = FIELD_NAMES[key];
    if (v <= 0) throw r.error(`llama2.c header: ${name} is ${v}, must be positive (not a llama2.c checkpoint?)`);
    if (v > limit) throw r.error(`llama2.c header: ${name} is ${v}, above the sane limit ${limit} (not a llama2.c checkpoint?)`);
  }
  if (h.dim % h.nHeads !== 0) throw r.error(`llama2.c header: dim ${h.dim} is not divisible by n_heads ${h.nHeads}`);
  if (h.nHeads % h.nKvHeads !== 0) {
    throw r.error(`llama2.c header: n_heads ${h.nHeads} is not divisible by n_kv_heads ${h.nKvHeads}`);
  }
  const headDim = h.dim / h.nHeads;
  if (headDim % 2 !== 0) throw r.error(`llama2.c header: head size ${headDim} (dim / n_heads) is odd; RoPE needs pairs`);
}

/** Walks the fixed array order, handing out one StoredTensor per layer slice; `end` is where the last array ends. */
function layout(file: string, h: Llama2cHeader, tied: boolean): { tensors: StoredTensor[]; end: number } {
  const { dim, hiddenDim: hid, nLayers: L, vocabSize: V } = h;
  const headDim = dim / h.nHeads;
  const kvDim = (dim * h.nKvHeads) / h.nHeads;
  const tensors: StoredTensor[] = [];
  let offset = HEADER_BYTES;

  const single = (name: string, shape: number[]): void => {
    const nbytes = shape.reduce((a, b) => a * b, 1) * F32;
    tensors.push({ name, shape, dtype: 'F32', file, offset, nbytes });
    offset += nbytes;
  };
  const stacked = (suffix: string, shape: number[]): void => {
    for (let i = 0; i < L; i++) single(`blk.${i}.${suffix}`, shape);
  };
  const skip = (count: number): void => {
    offset += count * F32;
  };

  single('token_embd.weight', [V, dim]);
  stacked('attn_norm.weight', [dim]);
  stacked('attn_q.weight', [dim, dim]);
  stacked('attn_k.weight', [kvDim, dim]);
  stacked('attn_v.weight', [kvDim, dim]);
  stacked('attn_output.weight', [dim, dim]);
  stacked('ffn_norm.weight', [dim]);
  stacked('ffn_gate.weight', [hid, dim]); // w1
  stacked('ffn_down.weight', [dim, hid]); // w2
  stacked('ffn_up.weight', [hid, dim]); // w3
  single('output_norm.weight', [dim]);
  // freq_cis_real and freq_cis_imag: precomputed RoPE tables that the engine recomputes; not exposed.
  skip(2 * h.seqLen * (headDim / 2));
  if (!tied) single('output.weight', [V, dim]);
  return { tensors, end: offset };
}

/** The limits above keep `expected` far below 2^53, so this comparison is exact. */
function checkSize(r: BinaryReader, h: Llama2cHeader, expected: number): void {
  if (expected > r.size) {
    throw r.error(
      `truncated: llama2.c header (dim ${h.dim}, ${h.nLayers} layers, vocab ${h.vocabSize}) implies ${expected} bytes, file has ${r.size}`,
    );
  }
  if (expected < r.size) {
    // Extra bytes mean the header was misread (a different format, or a v1/v2 export): the weights would be garbage.
    throw r.error(
      `llama2.c header implies ${expected} bytes but the file has ${r.size}; not a legacy (v0) llama2.c checkpoint?`,
    );
  }
}
