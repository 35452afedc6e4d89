/**
 * Writes a llama2.c (legacy v0) checkpoint with random weights, for benchmarks at sizes no real model here has.
 *
 * Speed matters (config B is 271 M floats): values are drawn from a table of 65,536 standard-normal draws (seeded
 * Box–Muller) indexed by a seeded 32-bit stream, ~4 ns per value instead of ~40 for fresh Box–Muller draws. For
 * timing and for checking two implementations against each other on the same file this is as good as fresh normals.
 * Matrices are N(0, 0.02²), norms 1, token embeddings N(0, 1).
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { normalStream } from '../src/util/random.js';

export interface RandomLlamaSpec {
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  vocabSize: number;
  seqLen: number;
}

const TABLE_BITS = 16;

/** f32 values in the file: the header's arrays in llama2.c order (tied classifier). */
export function llama2cFloats(s: RandomLlamaSpec): number {
  const kv = (s.dim * s.nKvHeads) / s.nHeads;
  const L = s.nLayers;
  return s.vocabSize * s.dim + L * (2 * s.dim + 2 * s.dim * s.dim + 2 * kv * s.dim + 3 * s.hiddenDim * s.dim) + s.dim + s.seqLen * (s.dim / s.nHeads);
}

export function writeRandomLlama2c(path: string, s: RandomLlamaSpec, seed = 0): void {
  const fd = openSync(path, 'w');
  try {
    const normal = normalStream(seed);
    const table = Float32Array.from({ length: 1 << TABLE_BITS }, () => normal());
    let state = (seed ^ 0x9e3779b9) >>> 0;
    const header = Int32Array.of(s.dim, s.hiddenDim, s.nLayers, s.nHeads, s.nKvHeads, s.vocabSize, s.seqLen);
    writeSync(fd, new Uint8Array(header.buffer));
    const kv = (s.dim * s.nKvHeads) / s.nHeads;
    const chunk = new Float32Array(1 << 20);
    /** n values: scale × table draws, or the constant `fill` when scale is null. */
    const write = (n: number, scale: number | null, fill = 0) => {
      for (let done = 0; done < n; done += chunk.length) {
        const k = Math.min(chunk.length, n - done);
        if (scale === null) chunk.fill(fill, 0, k);
        else {
          for (let i = 0; i < k; i++) {
            // mulberry32, inlined
            state = (state + 0x6d2b79f5) >>> 0;
            let t = state;
            t = Math.imul(t ^ (t >>> 15), t | 1);
            t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
            chunk[i] = scale * table[(t ^ (t >>> 14)) >>> (32 - TABLE_BITS)]!;
          }
        }
        writeSync(fd, new Uint8Array(chunk.buffer, 0, k * 4));
      }
    };
    const L = s.nLayers;
    write(s.vocabSize * s.dim, 1); // token embeddings
    write(L * s.dim, null, 1); // attention norms
    write(L * s.dim * s.dim, 0.02); // wq
    write(L * kv * s.dim, 0.02); // wk
    write(L * kv * s.dim, 0.02); // wv
    write(L * s.dim * s.dim, 0.02); // wo
    write(L * s.dim, null, 1); // ffn norms
    write(L * s.hiddenDim * s.dim, 0.02); // w1
    write(L * s.dim * s.hiddenDim, 0.02); // w2
    write(L * s.hiddenDim * s.dim, 0.02); // w3
    write(s.dim, null, 1); // final norm
    write((s.seqLen * s.dim) / s.nHeads / 2, null, 0); // freq_cis_real (unused: RoPE is computed)
    write((s.seqLen * s.dim) / s.nHeads / 2, null, 0); // freq_cis_imag
  } finally {
    closeSync(fd);
  }
}
