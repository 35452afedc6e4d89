import * as ort from 'onnxruntime-node';
import type { Graph } from '../graph/graph.js';
import type { ElemType } from '../graph/value.js';
import { deviceError, providerOptions, type Device } from './device.js';

export interface SessionSettings {
  /** Intra-op threads (default 2: this project's machines have 2 cores, and more threads only contend). */
  threads?: number;
  /** Folder that external-data `location`s are relative to (absolute; symlinks already resolved by the caller). */
  externalFolder?: string;
  /** Turn weight prepacking off: weights stay file-backed and shareable between processes, slower at batch 1. */
  lowMemory?: boolean;
  /** Execution provider (default cpu). The graph must have been built for it (`new Graph({ target })`). */
  device?: Device;
  /** onnxruntime's log severity (0 = verbose, lists each node's provider; default 2 = warnings). */
  logSeverity?: 0 | 1 | 2 | 3 | 4;
}

/** A typed array for each element type the graphs use. */
export type HostArray = Float32Array | Float64Array | BigInt64Array;

const ORT_TYPE: Record<ElemType, 'float32' | 'float64' | 'int64'> = { float32: 'float32', float64: 'float64', int64: 'int64' };

/**
 * An onnxruntime session over a graph built by the builder. The model bytes are passed as a buffer, and weights
 * referenced as external data are memory-mapped by onnxruntime from `externalFolder` (no copy in JS).
 */
export class GraphSession {
  private constructor(
    private readonly session: ort.InferenceSession,
    readonly inputs: { name: string; shape: readonly number[]; dtype: ElemType }[],
    readonly outputs: { name: string; shape: readonly number[]; dtype: ElemType }[],
  ) {}

  static async create(graph: Graph, settings: SessionSettings = {}): Promise<GraphSession> {
    const bytes = graph.serialize();
    const device = settings.device ?? 'cpu';
    // A WebGPU-form graph is valid ONNX anywhere (the tests run it on the CPU); a CPU-form one would fall back there.
    if (device === 'webgpu' && graph.target !== 'webgpu') throw new Error('GraphSession.create: a graph built for the cpu cannot run on webgpu');
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(bytes, sessionOptions(settings));
    } catch (err) {
      throw deviceError(device, err);
    }
    return new GraphSession(
      session,
      graph.inputs.map((v) => ({ name: v.name, shape: v.shape, dtype: v.dtype })),
      graph.outputs.map((o) => ({ name: o.name, shape: o.value.shape, dtype: o.value.dtype })),
    );
  }

  /** Run with every graph input given by name; returns every output by name as a host array. */
  async run(feeds: Record<string, HostArray>): Promise<Record<string, HostArray>> {
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const inp of this.inputs) {
      const data = feeds[inp.name];
      if (!data) throw new Error(`GraphSession.run: missing input ${inp.name}`);
      const size = inp.shape.reduce((a, b) => a * b, 1);
      if (data.length !== size) throw new Error(`GraphSession.run: input ${inp.name} has ${data.length} elements, expected ${size}`);
      ortFeeds[inp.name] = new ort.Tensor(ORT_TYPE[inp.dtype], data, [...inp.shape]);
    }
    const result = await this.session.run(ortFeeds);
    const out: Record<string, HostArray> = {};
    for (const o of this.outputs) out[o.name] = result[o.name]!.data as HostArray;
    return out;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

export function sessionOptions(settings: SessionSettings): ort.InferenceSession.SessionOptions {
  const session: Record<string, string> = {};
  if (settings.externalFolder) session['model_external_initializers_file_folder_path'] = settings.externalFolder;
  if (settings.lowMemory) session['disable_prepacking'] = '1';
  return {
    ...providerOptions(settings.device ?? 'cpu'),
    ...(settings.logSeverity !== undefined ? { logSeverityLevel: settings.logSeverity, logVerbosityLevel: 0 } : {}),
    intraOpNumThreads: settings.threads ?? 2,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    extra: { session },
  };
}
