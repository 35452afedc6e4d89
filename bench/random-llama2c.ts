/** Writes a llama2.c (legacy v0) checkpoint with random weights, for benchmarks at sizes no real model here has. */
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

export function writeRandomLlama2c(path: string, s: RandomLlamaSpec, seed = 0): void {
  const fd = openSync(path, 'w');
  const normal = normalStream(seed);
  const header = Int32Array.of(s.dim, s.hiddenDim, s.nLayers, s.nHeads, s.nKvHeads, s.vocabSize, s.seqLen);
  writeSync(fd, new Uint8Array(header.buffer));
  const kv = (s.dim * s.nKvHeads) / s.nHeads;
  const write = (n: number, fill: () => number) => {
    const chunk = new Float32Array(Math.min(n, 1 << 20));
    for (let done = 0; done < n; done += chunk.length) {
      const k = Math.min(chunk.length, n - done);
      for (let i = 0; i < k; i++) chunk[i] = fill();
      writeSync(fd, new Uint8Array(chunk.buffer, 0, k * 4));
    }
  };
  const w = () => 0.02 * normal();
  const L = s.nLayers;
  write(s.vocabSize * s.dim, normal); // token embeddings
  write(L * s.dim, () => 1); // attention norms
  write(L * s.dim * s.dim, w); // wq
  write(L * kv * s.dim, w); // wk
  write(L * kv * s.dim, w); // wv
  write(L * s.dim * s.dim, w); // wo
  write(L * s.dim, () => 1); // ffn norms
  write(L * s.hiddenDim * s.dim, w); // w1
  write(L * s.dim * s.hiddenDim, w); // w2
  write(L * s.hiddenDim * s.dim, w); // w3
  write(s.dim, () => 1); // final norm
  write((s.seqLen * s.dim) / s.nHeads / 2, () => 0); // freq_cis_real (unused: RoPE is computed)
  write((s.seqLen * s.dim) / s.nHeads / 2, () => 0); // freq_cis_imag
  closeSync(fd);
}
