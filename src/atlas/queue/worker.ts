/**
 * A queue worker: takes build jobs from Redis and runs each with the same function a local `atlas build` uses
 * (runFeatureBatch), returning the batch's RunResults for the collector to store.
 *
 * The worker opens its own copy of the model (by the job's path hint, or its basename under `modelsDir`) and checks its
 * content hash, keeping sessions per model between jobs. A job it cannot serve here (another version, a missing or
 * different file) is refused with an error that starts with REFUSED: it is retried (perhaps by another worker) up to the
 * job's attempts, and the collector never records a refusal as a result. An error in the job itself (a UserError:
 * bad settings for this model) fails at once, without retries: it would fail the same way everywhere.
 */
import { VERSION } from '../../version.js';
import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import { ModelRunner } from '../../engine/runner.js';
import { UserError } from '../../errors.js';
import { decoderFor } from '../../features/embeddings.js';
import { Visualizer } from '../../features/visualize.js';
import { loadModel } from '../../models/load.js';
import { runFeatureBatch } from '../build.js';
import { modelHash, type FileHashCache } from '../hash.js';
import { redisClient, type QueueUrl } from './connection.js';
import { fromWire, QUEUE_NAME, type JobData, type JobResult, type ModelRef } from './jobs.js';

/** Prefix of a worker's refusal (this worker cannot serve the job; another might). */
export const REFUSED = 'refused:';

export interface WorkerOptions {
  queue: QueueUrl;
  concurrency?: number;
  threads?: number;
  lowMemory?: boolean;
  /** A folder holding the models (and tokenizers) under the same basenames as on the enqueueing machine. */
  modelsDir?: string;
  /** How long a job's lock lasts without renewal: after a worker dies, its job is retried once the lock expires. */
  lockMs?: number;
  onEvent?: (e: WorkerEvent) => void;
}

export type WorkerEvent =
  | { type: 'start'; job: string; model: string; blocks: [number, number]; features: number }
  | { type: 'done'; job: string; ms: number }
  | { type: 'failed'; job: string; reason: string; attempt: number };

interface Slot {
  key: string;
  runner: ModelRunner;
  visualizer: Visualizer;
  busy: boolean;
}

/** Hashes remembered for this process's lifetime (by path, size and mtime, as the atlas remembers them). */
class MemoryHashCache implements FileHashCache {
  private m = new Map<string, string>();
  cachedFileHash(file: string, size: number, mtimeNs: string): string | undefined {
    return this.m.get(`${file}\0${size}\0${mtimeNs}`);
  }
  rememberFileHash(file: string, size: number, mtimeNs: string, hash: string): void {
    this.m.set(`${file}\0${size}\0${mtimeNs}`, hash);
  }
}

export class QueueWorker {
  readonly worker: Worker<JobData, JobResult>;
  private slots: Slot[] = [];
  private hashes = new MemoryHashCache();
  private connection;
  readonly name = `${hostname()}-${process.pid}`;

  constructor(private opts: WorkerOptions) {
    this.connection = redisClient(opts.queue);
    const lockMs = opts.lockMs ?? 30_000;
    this.worker = new Worker<JobData, JobResult>(QUEUE_NAME, (job) => this.process(job), {
      connection: this.connection,
      concurrency: opts.concurrency ?? 1,
      lockDuration: lockMs,
      stalledInterval: lockMs,
      // A job whose worker died twice still gets a third chance before it counts as failed.
      maxStalledCount: 2,
      name: this.name,
    });
    this.worker.on('failed', (job, err) => {
      if (job) opts.onEvent?.({ type: 'failed', job: job.id ?? '?', reason: err.message, attempt: job.attemptsMade });
    });
    // Connection errors are retried by the client; the worker only reports them.
    this.worker.on('error', () => {});
  }

  private resolve(hint: string, what: string): string {
    const file = this.opts.modelsDir ? path.join(this.opts.modelsDir, path.basename(hint)) : hint;
    if (!existsSync(file)) throw new Error(`${REFUSED} ${what} ${file} not found on ${this.name}`);
    return file;
  }

  /** A free session set for this model, opened and hash-checked on first use; idle ones of other models are closed. */
  private async take(ref: ModelRef): Promise<Slot> {
    const key = `${ref.hash}\0${ref.tokenizer ?? ''}`;
    const free = this.slots.find((s) => s.key === key && !s.busy);
    if (free) {
      free.busy = true;
      return free;
    }
    for (const s of this.slots.filter((s) => s.key !== key && !s.busy)) {
      this.slots.splice(this.slots.indexOf(s), 1);
      await s.runner.close();
    }
    const file = this.resolve(ref.path, 'model');
    const tokenizer = ref.tokenizer === undefined ? undefined : this.resolve(ref.tokenizer, 'tokenizer');
    let model;
    try {
      model = loadModel(file, { tokenizer });
    } catch (err) {
      throw new Error(`${REFUSED} cannot open ${file}: ${(err as Error).message}`);
    }
    const hash = modelHash(model, this.hashes);
    if (hash !== ref.hash) throw new Error(`${REFUSED} ${file} has hash ${hash.slice(0, 12)}, the job wants ${ref.hash.slice(0, 12)} (${ref.name})`);
    const runner = new ModelRunner(model, { threads: this.opts.threads ?? 2, lowMemory: this.opts.lowMemory === true });
    const slot: Slot = { key, runner, visualizer: new Visualizer(runner, model.tokenizer, decoderFor(model)), busy: true };
    this.slots.push(slot);
    return slot;
  }

  private async process(job: Job<JobData, JobResult>): Promise<JobResult> {
    const d = job.data;
    if (d.version !== VERSION) throw new Error(`${REFUSED} the job was written by llm-features ${d.version}, this worker is ${VERSION}`);
    if (d.kind !== 'build') throw new Error(`${REFUSED} unknown job kind "${String((d as { kind: unknown }).kind)}"`);
    const slot = await this.take(d.model);
    this.opts.onEvent?.({ type: 'start', job: job.id ?? '?', model: d.model.name, blocks: d.blocks, features: d.features.length });
    try {
      const t0 = performance.now();
      const settings = fromWire(d.settings, d.blocks, d.hook);
      const runOptions = { threads: this.opts.threads ?? 2, lowMemory: this.opts.lowMemory === true, batch: settings.batch, worker: this.name };
      const results = await runFeatureBatch(slot.visualizer, settings, d.features, runOptions);
      const run_ms = performance.now() - t0;
      this.opts.onEvent?.({ type: 'done', job: job.id ?? '?', ms: run_ms });
      return { kind: 'build', results, run_ms, worker: this.name };
    } catch (err) {
      // The same settings fail the same way on every worker: no retries.
      if (err instanceof UserError) throw new UnrecoverableError(err.message);
      throw err;
    } finally {
      slot.busy = false;
    }
  }

  /** Wait until the worker is connected and taking jobs. */
  async ready(): Promise<void> {
    await this.worker.waitUntilReady();
  }

  /**
   * Stop taking jobs. Graceful: the jobs in flight finish and are handed in. Forced: they are abandoned (their locks
   * expire and another worker retries them).
   */
  async close(force = false): Promise<void> {
    await this.worker.close(force);
    for (const s of this.slots.splice(0)) await s.runner.close();
    this.connection.disconnect();
  }
}
