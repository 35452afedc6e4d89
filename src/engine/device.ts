/**
 * Where the graphs run: onnxruntime-node's CPU provider, or the WebGPU provider bundled in its npm package (Dawn inside
 * libonnxruntime; on Linux it reaches the GPU through Vulkan). The binding exposes no adapter API, so what this module
 * can honestly say about a device is: whether a tiny probe session runs on it and agrees with the CPU, and which Vulkan
 * drivers the loader would be pointed at.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { UserError } from '../errors.js';
import { Graph } from '../graph/graph.js';
import { matmul, softmax } from '../graph/ops.js';
import { uniformStream } from '../util/random.js';

export const DEVICES = ['cpu', 'webgpu'] as const;
export type Device = (typeof DEVICES)[number];

/** `--device` when given, else LLMF_DEVICE, else cpu; anything else is a one-line error naming where it came from. */
export function resolveDevice(flag?: string): Device {
  const [value, from] = flag !== undefined ? [flag, '--device'] : [process.env.LLMF_DEVICE, 'LLMF_DEVICE'];
  if (value === undefined || value === '') return 'cpu';
  if (!(DEVICES as readonly string[]).includes(value)) throw new UserError(`${from}: unknown device "${value}" (expected ${DEVICES.join(', ')})`);
  return value as Device;
}

/** The session options that put a session on a device. */
export function providerOptions(device: Device): Pick<ort.InferenceSession.SessionOptions, 'executionProviders'> {
  return { executionProviders: device === 'webgpu' ? ['webgpu'] : ['cpu'] };
}

/**
 * onnxruntime's message when Dawn finds no adapter is a C++ assertion with a source path; turn it (and the other
 * provider start-up failures) into one line that says what to do.
 */
export function deviceError(device: Device, err: unknown): Error {
  const msg = err instanceof Error ? err.message : String(err);
  if (device !== 'webgpu' || !/webgpu|adapter|Dawn|Vulkan/i.test(msg)) return err instanceof Error ? err : new Error(msg);
  const reason = /No supported adapters/i.test(msg) ? 'no WebGPU adapter found' : msg.split('\n')[0]!.replace(/^.*?(?=[A-Z][a-z]+ to get|Failed)/, '');
  const icds = vulkanDrivers();
  const hint = icds.length === 0
    ? 'no Vulkan driver (ICD) is installed or named by VK_ICD_FILENAMES / VK_DRIVER_FILES'
    : `Vulkan drivers tried: ${icds.map((d) => d.file).join(', ')}`;
  return new UserError(`--device webgpu: ${reason} (${hint}); without a GPU, a software one works: VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json`);
}

export interface VulkanDriver {
  /** The ICD manifest (JSON) the Vulkan loader reads. */
  file: string;
  /** The driver library it names. */
  library?: string;
  apiVersion?: string;
}

/** The Vulkan ICD manifests the loader will use: those named by VK_DRIVER_FILES / VK_ICD_FILENAMES, else the standard folders. */
export function vulkanDrivers(env: NodeJS.ProcessEnv = process.env): VulkanDriver[] {
  const named = env.VK_DRIVER_FILES ?? env.VK_ICD_FILENAMES;
  let files: string[];
  if (named) files = named.split(':').filter((f) => f !== '');
  else {
    files = [];
    for (const dir of ['/etc/vulkan/icd.d', '/usr/local/share/vulkan/icd.d', '/usr/share/vulkan/icd.d']) {
      try {
        for (const f of readdirSync(dir).sort()) if (f.endsWith('.json')) files.push(path.join(dir, f));
      } catch {
        // folder absent
      }
    }
  }
  return files.map((file) => {
    try {
      const icd = JSON.parse(readFileSync(file, 'utf8')) as { ICD?: { library_path?: string; api_version?: string } };
      return { file, library: icd.ICD?.library_path, apiVersion: icd.ICD?.api_version };
    } catch {
      return { file };
    }
  });
}

export interface DeviceReport {
  device: Device;
  available: boolean;
  /** Why not, when not available. */
  reason?: string;
  onnxruntime: string;
  /** For webgpu: the Vulkan drivers the loader is pointed at, and what the driver libraries look like. */
  vulkan?: (VulkanDriver & { software: boolean; present: boolean })[];
  /** Wall time to create and run the probe session (the first call starts the device). */
  probeMs?: number;
  /** The probe's max |webgpu − cpu| over a 64×64 matrix product with softmax. */
  probeMaxAbsDiff?: number;
}

/**
 * Probe a device: build a 64×64 MatMul + Softmax, run it there and on the CPU, compare. A probe that cannot create
 * its session reports the reason instead of throwing.
 */
export async function probeDevice(device: Device): Promise<DeviceReport> {
  const version = ort.env.versions.common ?? 'unknown';
  const base: DeviceReport = { device, available: false, onnxruntime: version };
  if (device === 'webgpu') {
    base.vulkan = vulkanDrivers().map((d) => ({
      ...d,
      // SwiftShader and lavapipe run on the CPU: fine for tests, useless for speed.
      software: /swiftshader|lvp|lavapipe/i.test(`${d.file} ${d.library ?? ''}`),
      present: d.library === undefined ? false : path.isAbsolute(d.library) ? existsSync(d.library) : true,
    }));
  }
  const { bytes, a, b } = probeGraph();
  const t0 = performance.now();
  try {
    const run = async (d: Device) => {
      const s = await ort.InferenceSession.create(bytes, { ...providerOptions(d), logSeverityLevel: 3 });
      const out = await s.run({ a: new ort.Tensor('float32', a, [64, 64]), b: new ort.Tensor('float32', b, [64, 64]) });
      await s.release();
      return out.y!.data as Float32Array;
    };
    const got = await run(device);
    const probeMs = performance.now() - t0;
    const ref = await run('cpu');
    let diff = 0;
    for (let i = 0; i < ref.length; i++) diff = Math.max(diff, Math.abs(got[i]! - ref[i]!));
    return { ...base, available: true, probeMs, probeMaxAbsDiff: diff };
  } catch (err) {
    const e = deviceError(device, err);
    return { ...base, reason: e.message.replace(/^--device webgpu: /, '') };
  }
}

function probeGraph(): { bytes: Uint8Array; a: Float32Array; b: Float32Array } {
  const g = new Graph({ float: 'float32', target: 'webgpu' });
  g.output(softmax(matmul(g.input('a', [64, 64]), g.input('b', [64, 64])), -1), 'y');
  const r = uniformStream(7);
  const fill = () => Float32Array.from({ length: 64 * 64 }, () => 2 * r() - 1);
  return { bytes: g.serialize(), a: fill(), b: fill() };
}
