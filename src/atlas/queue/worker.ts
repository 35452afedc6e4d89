/**
 * A queue worker: takes jobs from Redis and runs each with the same functions a local build or scan uses
 * (runFeatureBatch for `atlas build`, scanGroup for `atlas scan`), returning the results for the collector to store.
 *
 * The worker opens its own copy of the model, its tokenizer and a job's corpus (by the job's path hints, or their
 * basenames under `modelsDir`) and checks each one's content hash, keeping sessions per model between jobs. A job it
 * cannot serve here (another version, a missing or different file) is refused with an error that starts with REFUSED:
 * it is retried (perhaps by another worker) up to the job's attempts, and the collector never records a refusal as a
 * result. An error in the job itself (a UserError:
 * bad settings for this model) fails at once, without retries: it would fail the same way everywhere.
 */
import { VERSION } from '../../version.js';
import { existsSync, realpathSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import { ModelRunner } from '../../engine/runner.js';
import { UserError } from '../../errors.js';
import { decoderFor } from '../../features/embeddings.js';
import { Visualizer } from '../../features/visualize.js';
import { loadModel } from '../../models/load.js';
import { corpusReference } from '../../features/calibrate.js';
import { readCorpus } from '../../features/corpus.js';
import type { FeatureScan } from '../../features/scan.js';
import { runFeatureBatch } from '../build.js';
import { fileHash, modelHash, tokenizerHash, type FileHashCache } from '../hash.js';
import { directionHash, scanGroup, scanWindows } from '../scan-build.js';
import { redisClient, type QueueUrl } from './connection.js';
import {
  fromWire,
  gridToWire,
  QUEUE_NAME,
  type BuildJobData,
  type BuildJobResult,
  type CorpusRef,
  type JobCost,
  type JobData,
  type JobResult,
  type ModelRef,
  type ScanJobData,
  type ScanJobResult,
  type WireCalibration,
} from './jobs.js';

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

/** A direction that arrives other than it left (the job's JSON was altered) fails the job: it would fail everywhere. */
function checkDirection(direction: Float32Array | undefined, hash: string | undefined): void {
  if (!direction && !hash) return;
  if (!direction || !hash || directionHash(direction) !== hash) throw new UserError(`--direction: the job's vector does not match its hash ${hash?.slice(0, 12) ?? '(none)'}`);
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

  /** The job's corpus, here: found by its hint and byte for byte the one it names. */
  private corpusFile(ref: CorpusRef): string {
    const file = this.resolve(ref.path, 'corpus');
    const hash = fileHash(realpathSync(file), this.hashes);
    if (hash !== ref.hash) throw new Error(`${REFUSED} corpus ${file} has hash ${hash.slice(0, 12)}, the job wants ${ref.hash.slice(0, 12)} (${ref.name})`);
    return file;
  }

  /**
   * A free session set for this model and tokenizer, opened and hash-checked on first use; idle ones of other models
   * are closed. `opened` is the time this took (0 when a cached set served the job).
   */
  private async take(ref: ModelRef): Promise<{ slot: Slot; openMs: number }> {
    const key = `${ref.hash}\0${ref.tokenizer ?? ''}\0${ref.tokenizer_hash ?? ''}`;
    const free = this.slots.find((s) => s.key === key && !s.busy);
    if (free) {
      free.busy = true;
      return { slot: free, openMs: 0 };
    }
    const t0 = performance.now();
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
    // The tokenizer decides every decoded text and a corpus's token ids: a worker that found another one beside the
    // same weights would store other records under the same key.
    const tokHash = tokenizerHash(model, this.hashes);
    if (tokHash !== ref.tokenizer_hash) {
      const have = tokHash === null ? 'no tokenizer file' : `tokenizer ${model.tokenizerPath} with hash ${tokHash.slice(0, 12)}`;
      const want = ref.tokenizer_hash === null ? 'none' : ref.tokenizer_hash.slice(0, 12);
      throw new Error(`${REFUSED} ${file} opened with ${have}, the job wants tokenizer ${want} (${ref.name})`);
    }
    const runner = new ModelRunner(model, { threads: this.opts.threads ?? 2, lowMemory: this.opts.lowMemory === true });
    const slot: Slot = { key, runner, visualizer: new Visualizer(runner, model.tokenizer, decoderFor(model)), busy: true };
    this.slots.push(slot);
    return { slot, openMs: performance.now() - t0 };
  }

  private async process(job: Job<JobData, JobResult>): Promise<JobResult> {
    const d = job.data;
    if (d.version !== VERSION) throw new Error(`${REFUSED} the job was written by llm-features ${d.version}, this worker is ${VERSION}`);
    if (d.kind !== 'build' && d.kind !== 'scan') throw new Error(`${REFUSED} unknown job kind "${String((d as { kind: unknown }).kind)}"`);
    // Files are checked before the sessions are opened: a job this worker cannot serve costs it no model load.
    const corpus = d.kind === 'scan' || d.corpus ? this.corpusFile(d.corpus!) : undefined;
    const { slot, openMs } = await this.take(d.model);
    this.opts.onEvent?.({ type: 'start', job: job.id ?? '?', model: d.model.name, blocks: d.blocks, features: d.features.length });
    try {
      const t0 = performance.now();
      const cpu0 = process.cpuUsage();
      const s0 = { ...slot.runner.sessionStats };
      const out = d.kind === 'build' ? await this.build(slot, d, corpus) : await this.scan(slot, d, corpus!);
      const run_ms = performance.now() - t0;
      const cpu = process.cpuUsage(cpu0);
      const s1 = slot.runner.sessionStats;
      this.opts.onEvent?.({ type: 'done', job: job.id ?? '?', ms: run_ms });
      return { ...out, run_ms, cpu_ms: (cpu.user + cpu.system) / 1000, open_ms: openMs, sessions: s1.created - s0.created, session_ms: s1.ms - s0.ms, worker: this.name };
    } catch (err) {
      // The same settings fail the same way on every worker: no retries.
      if (err instanceof UserError) throw new UnrecoverableError(err.message);
      throw err;
    } finally {
      slot.busy = false;
    }
  }

  private async build(slot: Slot, d: BuildJobData, corpus: string | undefined): Promise<Omit<BuildJobResult, keyof JobCost>> {
    const settings = fromWire(d.settings, d.blocks, d.hook);
    checkDirection(settings.objective.direction, d.direction_hash);
    const runOptions = { threads: this.opts.threads ?? 2, lowMemory: this.opts.lowMemory === true, batch: settings.batch, worker: this.name };
    const runner = slot.runner;
    const reference = corpus === undefined ? undefined : corpusReference(runner, runner.model.tokenizer, { file: corpus });
    const results = await runFeatureBatch(slot.visualizer, settings, d.features, runOptions, reference);
    // Records name the corpus as it was given where the sweep was enqueued, as a local build's do.
    for (const r of results) if (r.calibration && d.corpus) r.calibration.corpus = d.corpus.name;
    return { kind: 'build', results };
  }

  private async scan(slot: Slot, d: ScanJobData, corpusPath: string): Promise<Omit<ScanJobResult, keyof JobCost>> {
    const runner = slot.runner;
    const tokenizer = runner.model.tokenizer;
    if (!tokenizer) throw new UserError(`${runner.model.path}: no tokenizer found; a corpus scan tokenises text`);
    const direction = d.direction ? Float32Array.from(d.direction) : null;
    checkDirection(direction ?? undefined, d.direction_hash);
    const windows = scanWindows(tokenizer, readCorpus(corpusPath), d.window, d.max_tokens, d.bos);
    const features: FeatureScan[] = [];
    const calibration: WireCalibration[] = [];
    const req = { runner, blocks: d.blocks, hook: d.hook, corpus: corpusPath, direction, batch: d.batch, calibrateTokens: d.calibrate_tokens, calibrateBos: d.calibrate_bos, topk: d.topk, binExamples: d.bin_examples };
    await scanGroup(req, windows, d.features, (chunk, grids) => {
      features.push(...chunk);
      for (const f of chunk) {
        const c = grids?.get(f.feature);
        if (c) calibration.push({ feature: f.feature, windows: c.windows, grid: gridToWire(c.grid) });
      }
    });
    return { kind: 'scan', features, calibration: d.calibrate_tokens ? calibration : null };
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
