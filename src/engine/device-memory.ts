/**
 * How much memory a device offers a request. onnxruntime-node exposes no adapter API (no limits, no memory size), so
 * for WebGPU the figure comes from, in order: LLMF_DEVICE_MEMORY (bytes, a cap or an override), the NVIDIA driver's
 * own report (`nvidia-smi`, free memory of GPU 0) when present, and otherwise the host's available memory — right for
 * software adapters (SwiftShader allocates "GPU" buffers in host memory), an upper bound elsewhere.
 */
import { execFileSync } from 'node:child_process';
import { UserError } from '../errors.js';
import type { Device } from './device.js';
import { availableMemory } from './memory.js';

export interface DeviceMemory {
  bytes: number;
  /** What the number is, for the refusal message. */
  source: string;
}

let nvidiaCache: number | null | undefined;

/** Free memory of the first NVIDIA GPU as its driver reports it, or null without one (cached per process). */
function nvidiaFreeBytes(): number | null {
  if (nvidiaCache !== undefined) return nvidiaCache;
  nvidiaCache = null;
  try {
    const out = execFileSync('nvidia-smi', ['--query-gpu=memory.free', '--format=csv,noheader,nounits'], { encoding: 'utf8', timeout: 5000, stdio: ['ignore', 'pipe', 'ignore'] });
    const mib = Number(out.trim().split('\n')[0]);
    if (Number.isFinite(mib) && mib > 0) nvidiaCache = mib * 2 ** 20;
  } catch {
    // no NVIDIA driver tools
  }
  return nvidiaCache;
}

export function deviceMemory(device: Device): DeviceMemory {
  if (device === 'cpu') return { bytes: availableMemory(), source: 'available' };
  const limit = process.env.LLMF_DEVICE_MEMORY;
  if (limit !== undefined) {
    const n = Number(limit);
    if (!Number.isFinite(n) || n <= 0) throw new UserError(`LLMF_DEVICE_MEMORY: expected a positive number of bytes, got "${limit}"`);
    return { bytes: n, source: 'available on the device (LLMF_DEVICE_MEMORY)' };
  }
  const nvidia = nvidiaFreeBytes();
  if (nvidia !== null) return { bytes: nvidia, source: 'free on the GPU (nvidia-smi)' };
  return { bytes: availableMemory(), source: 'available (host memory: no GPU memory report)' };
}
