/**
 * Writes a random Llama-2-shaped checkpoint as a Hugging Face folder (config.json, one F32 model.safetensors, and the
 * real Llama-2 tokenizer as tokenizer.bin), for bench/gpu.sh. F32 directly, so neither llm-features nor PyTorch needs
 * a conversion step or cache.
 *
 *   node dist/bench/gpu-checkpoint.js --size tiny|7b|13b|30b --out DIR --tokenizer tokenizer.bin
 *
 * Speed is the point (7B is 27 GB and the GPU lease is 15 minutes): a 64 MiB pool of seeded N(0, 1) draws is made
 * once (and once scaled by 0.02) and each tensor is a window of it from a per-tensor offset, wrapping (matrices 0.02,
 * embeddings 1, norms ones), written straight from the pool. Values repeat with a period of 16 M within a tensor, which is immaterial for timing and for checking
 * two implementations against each other on the same file.
 */
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { writeSafetensors, type TensorSource } from '../src/formats/safetensors-write.js';
import { normalStream } from '../src/util/random.js';

export interface LlamaShape {
  dim: number;
  ffn: number;
  layers: number;
  heads: number;
  vocab: number;
}

/** Llama-2 7B and 13B, and LLaMA 30B (the original paper's sizes); `tiny` is for the dry run on SwiftShader. */
export const SHAPES: Record<string, LlamaShape> = {
  tiny: { dim: 64, ffn: 172, layers: 2, heads: 4, vocab: 32000 },
  '7b': { dim: 4096, ffn: 11008, layers: 32, heads: 32, vocab: 32000 },
  '13b': { dim: 5120, ffn: 13824, layers: 40, heads: 40, vocab: 32000 },
  '30b': { dim: 6656, ffn: 17920, layers: 60, heads: 52, vocab: 32000 },
};

const POOL = 1 << 24;

export function writeLlamaCheckpoint(dir: string, s: LlamaShape, tokenizer: string, seed = 0): { bytes: number; parameters: number } {
  mkdirSync(dir, { recursive: true });
  const normal = normalStream(seed);
  const unit = Float32Array.from({ length: POOL }, () => normal());
  // Pre-scaled pools: a tensor's chunks are then views of a pool, written without copying.
  const pools = new Map<number, Float32Array>([[1, unit], [0.02, unit.map((v) => 0.02 * v)]]);
  const ones = new Float32Array(1 << 16).fill(1);
  let offsetSeed = seed >>> 0;
  const tensor = (name: string, shape: number[], scale: 1 | 0.02 | null): TensorSource => ({
    name,
    dtype: 'F32',
    shape,
    *chunks() {
      const n = shape.reduce((a, b) => a * b, 1);
      if (scale === null) {
        for (let done = 0; done < n; done += ones.length) yield new Uint8Array(ones.buffer, 0, 4 * Math.min(ones.length, n - done));
        return;
      }
      const pool = pools.get(scale)!;
      offsetSeed = (Math.imul(offsetSeed ^ (offsetSeed >>> 15), 0x2c1b3c6d) + 0x9e3779b9) >>> 0;
      let at = offsetSeed % POOL;
      for (let done = 0; done < n; ) {
        const k = Math.min(POOL - at, n - done);
        yield new Uint8Array(pool.buffer, 4 * at, 4 * k);
        done += k;
        at = (at + k) % POOL;
      }
    },
  });
  const { dim: D, ffn: F, vocab: V } = s;
  const tensors: TensorSource[] = [tensor('model.embed_tokens.weight', [V, D], 1)];
  for (let l = 0; l < s.layers; l++) {
    const p = `model.layers.${l}.`;
    tensors.push(
      tensor(`${p}input_layernorm.weight`, [D], null),
      tensor(`${p}self_attn.q_proj.weight`, [D, D], 0.02),
      tensor(`${p}self_attn.k_proj.weight`, [D, D], 0.02),
      tensor(`${p}self_attn.v_proj.weight`, [D, D], 0.02),
      tensor(`${p}self_attn.o_proj.weight`, [D, D], 0.02),
      tensor(`${p}post_attention_layernorm.weight`, [D], null),
      tensor(`${p}mlp.gate_proj.weight`, [F, D], 0.02),
      tensor(`${p}mlp.up_proj.weight`, [F, D], 0.02),
      tensor(`${p}mlp.down_proj.weight`, [D, F], 0.02),
    );
  }
  tensors.push(tensor('model.norm.weight', [D], null), tensor('lm_head.weight', [V, D], 0.02));
  const config = {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: D,
    intermediate_size: F,
    num_hidden_layers: s.layers,
    num_attention_heads: s.heads,
    num_key_value_heads: s.heads,
    vocab_size: V,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    max_position_embeddings: 4096,
    hidden_act: 'silu',
    tie_word_embeddings: false,
    torch_dtype: 'float32',
  };
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2) + '\n');
  copyFileSync(tokenizer, path.join(dir, 'tokenizer.bin'));
  const { bytes } = writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
  const parameters = tensors.reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0);
  return { bytes, parameters };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const arg = (name: string) => {
    const i = process.argv.indexOf(`--${name}`);
    if (i < 0 || i + 1 >= process.argv.length) throw new Error(`gpu-checkpoint: --${name} is required`);
    return process.argv[i + 1]!;
  };
  const size = arg('size');
  const shape = SHAPES[size];
  if (!shape) throw new Error(`gpu-checkpoint: --size must be one of ${Object.keys(SHAPES).join(', ')}`);
  const t0 = performance.now();
  const r = writeLlamaCheckpoint(arg('out'), shape, arg('tokenizer'));
  process.stdout.write(JSON.stringify({ size, ...shape, ...r, write_s: (performance.now() - t0) / 1000 }) + '\n');
}
