/**
 * Memory estimate before a session is created, so an oversized request is refused with advice instead of running the
 * machine out of memory. The weights a graph binds are memory-mapped (file pages, shared and reclaimable, but still
 * resident while used); with prepacking onnxruntime also keeps packed copies of each matrix for the forward and the
 * backward product (~2 × their f32 bytes of anonymous memory, measured in ../shared/docs/engine-notes.md).
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { UserError } from '../errors.js';
import type { ModelConfig } from '../models/config.js';

export interface MemoryEstimate {
  weightBytes: number;
  packedBytes: number;
  activationBytes: number;
  total: number;
}

/** Memory the OS says is available (MemAvailable), or LLMF_MEMORY_LIMIT bytes when set (a cap for shared machines). */
export function availableMemory(): number {
  const limit = process.env.LLMF_MEMORY_LIMIT;
  if (limit !== undefined) {
    const n = Number(limit);
    if (!Number.isFinite(n) || n <= 0) throw new UserError(`LLMF_MEMORY_LIMIT: expected a positive number of bytes, got "${limit}"`);
    return n;
  }
  try {
    const m = /MemAvailable:\s+(\d+) kB/.exec(readFileSync('/proc/meminfo', 'utf8'));
    if (m) return Number(m[1]) * 1024;
  } catch {
    // not Linux: fall through
  }
  return os.freemem();
}

/** Rough activation memory of blocks for B × T inputs, forward and backward (float32). */
export function activationBytes(cfg: ModelConfig, blocks: number, B: number, T: number): number {
  const perBlock = B * T * (cfg.dim * 16 + cfg.ffnDim * 6) + B * cfg.nHeads * T * T * 4;
  return 4 * perBlock * blocks;
}

export function estimate(weightBytes: number, matrixBytes: number, activation: number, prepack: boolean): MemoryEstimate {
  const packedBytes = prepack ? 2 * matrixBytes : 0;
  return { weightBytes, packedBytes, activationBytes: activation, total: weightBytes + packedBytes + activation };
}

/** Bytes for people: 1.25 GiB, 300.0 MiB, 12.0 KiB. */
export function human(b: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (b >= 1024 && i < units.length - 1) {
    b /= 1024;
    i++;
  }
  return `${i === 0 ? b : b.toFixed(i >= 3 ? 2 : 1)} ${units[i]}`;
}
const gib = human;

/**
 * Refuse a request whose estimate exceeds the available memory. `fitsWith(n)` estimates the same request with only the
 * first n blocks of its range, to suggest one that fits.
 */
/**
 * `what` starts with `param` when the request is about a parameter (the block range), so the CLI can name its flag;
 * `offered`: the memory of the device the request runs on (the host's available memory for the CPU).
 */
export function checkMemory(
  what: string,
  est: MemoryEstimate,
  range: readonly [number, number] | null,
  fitsWith?: (blocks: number) => number,
  offered: { bytes: number; source: string } = { bytes: availableMemory(), source: 'available' },
  param?: string,
): void {
  const available = offered.bytes;
  if (est.total <= available) return;
  let advice = '';
  if (range && fitsWith) {
    let best = 0;
    for (let n = 1; n <= range[1] - range[0] + 1; n++) if (fitsWith(n) <= available) best = n;
    advice = best > 0 ? `; blocks ${range[0]}-${range[0] + best - 1} would fit` : '; even one block does not fit';
  }
  const packed = est.packedBytes > 0 ? ` + ${gib(est.packedBytes)} prepacked (--low-memory drops it)` : '';
  throw new UserError(
    `${what}: needs about ${gib(est.total)} of memory (weights ${gib(est.weightBytes)}${packed} + activations ${gib(est.activationBytes)}), ${gib(available)} ${offered.source}${advice}`,
    undefined,
    param,
  );
}
