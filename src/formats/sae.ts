/**
 * Sparse autoencoder files, read and checked (what they mean — the encoder graph, statistics — is
 * src/features/sae.ts's). Two layouts:
 *
 * - **SAELens**: a folder with `cfg.json` and `sae_weights.safetensors` (optional `sparsity.safetensors`), as
 *   `SAE.save_model` writes it. Accepted cfg.json: SAELens 3.x–6.x, i.e. `hook_name` (2.x's `hook_point` is refused
 *   with a hint), `d_in`, `d_sae`, `architecture` `standard` | `jumprelu` | `topk` (absent = `standard`, as before
 *   3.x had the field), TopK's `k` (6.x) or `activation_fn_str: "topk"` with `activation_fn_kwargs.k` (4.x–5.x),
 *   `apply_b_dec_to_input` (absent = true, SAELens's default) and `normalize_activations` `"none"` (or absent / null).
 *   Refused, each with its reason: `gated` and other architectures, activation functions other than ReLU/TopK,
 *   `normalize_activations` `expected_average_only_in` / `constant_norm_rescale` / `layer_norm` (their scale is not
 *   in the weights: SAELens folds it in before publishing), a `hook_head_index`, `finetuning_scaling_factor: true`.
 * - **Gemma Scope**: `params.npz` (or a folder holding one) with `W_enc`, `b_enc`, `W_dec`, `b_dec`, `threshold`:
 *   JumpReLU without `b_dec` subtracted from the input; no cfg, so the hook comes from `--hook`.
 *
 * Tensors: W_enc [d_in, d_sae], b_enc [d_sae], W_dec [d_sae, d_in], b_dec [d_in], threshold [d_sae] (JumpReLU),
 * float32 (safetensors F32; npz f4 or f8). Every problem — a missing file or key, a wrong shape, a NaN — is one
 * UserError naming the parameter and the file.
 */
import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { UserError } from '../errors.js';
import { readTensorF32 } from './binary.js';
import { readSmallText } from './files.js';
import { findDuplicateKey } from './json-keys.js';
import { parseNpyArray } from './npy.js';
import { readSafetensors } from './safetensors.js';
import { readZipMember, zipMembers } from './zip.js';

export const SAE_ARCHITECTURES = ['standard', 'jumprelu', 'topk'] as const;
export type SaeArchitecture = (typeof SAE_ARCHITECTURES)[number];

export interface SaeFile {
  /** The folder (or params.npz) it was read from. */
  path: string;
  format: 'saelens' | 'gemma-scope-npz';
  architecture: SaeArchitecture;
  /** TopK's k; null for the others. */
  k: number | null;
  /** The cfg's TransformerLens hook name; null for a format without a cfg (take --hook). */
  hookName: string | null;
  applyBDecToInput: boolean;
  dIn: number;
  dSae: number;
  /** [d_in, d_sae] row-major. */
  W_enc: Float32Array;
  b_enc: Float32Array;
  /** [d_sae, d_in] row-major: row i is latent i's decoder direction. */
  W_dec: Float32Array;
  b_dec: Float32Array;
  /** JumpReLU's per-latent threshold; null for the others. */
  threshold: Float32Array | null;
  /** SAELens's log10 feature density per latent (sparsity.safetensors), when present. */
  sparsity: Float32Array | null;
  /** The SAELens version the cfg names, if any (informational). */
  version: string | null;
  /** SHA-256 of what decides the latents (architecture, k, b_dec use, sizes, hook, tensor bytes): the recorded identity. */
  hash: string;
}

type Fail = (problem: string) => never;

export function readSae(p: string, param = 'sae'): SaeFile {
  const fail: Fail = (problem) => {
    throw new UserError(`${param}: ${p}: ${problem}`, undefined, param);
  };
  let st;
  try {
    st = statSync(p);
  } catch {
    fail('no such file or folder');
  }
  if (st!.isFile()) {
    if (!p.endsWith('.npz')) fail('expected an SAELens folder (cfg.json + sae_weights.safetensors) or a params.npz');
    return readNpz(p, p, fail);
  }
  if (!st!.isDirectory()) fail('not a file or folder');
  const cfgFile = path.join(p, 'cfg.json');
  const npz = path.join(p, 'params.npz');
  if (existsSync(cfgFile)) return readSaeLens(p, cfgFile, fail);
  if (existsSync(npz)) return readNpz(p, npz, fail);
  return fail('has neither cfg.json (SAELens) nor params.npz (Gemma Scope)');
}

function readSaeLens(dir: string, cfgFile: string, fail: Fail): SaeFile {
  let text: string;
  try {
    text = readSmallText(cfgFile, 'SAE cfg.json', 16 * 1024 * 1024);
  } catch (e) {
    return fail(e instanceof Error ? e.message : String(e));
  }
  let cfg: Record<string, unknown>;
  try {
    cfg = JSON.parse(text) as Record<string, unknown>;
  } catch {
    return fail('cfg.json is not valid JSON');
  }
  if (cfg === null || typeof cfg !== 'object' || Array.isArray(cfg)) fail('cfg.json is not a JSON object');
  const dup = findDuplicateKey(text);
  if (dup) fail(`cfg.json has the key "${dup}" twice`);
  const posInt = (key: string): number => {
    const v = cfg[key];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) fail(`cfg.json: "${key}" must be a positive integer, got ${JSON.stringify(v)}`);
    return v as number;
  };
  const dIn = posInt('d_in');
  const dSae = posInt('d_sae');
  if (typeof cfg.hook_name !== 'string') {
    if (typeof cfg.hook_point === 'string') fail('cfg.json is an SAELens 2.x config ("hook_point"); accepted are SAELens 3.x-6.x configs with "hook_name" (load and save it with a newer SAELens)');
    fail('cfg.json: "hook_name" (a TransformerLens hook name such as blocks.3.hook_resid_post) is missing');
  }
  const archRaw = cfg.architecture ?? 'standard';
  const act = cfg.activation_fn_str ?? 'relu';
  const kwargs = (cfg.activation_fn_kwargs ?? {}) as Record<string, unknown>;
  let architecture: SaeArchitecture;
  let k: number | null = null;
  if (archRaw === 'standard' && act === 'topk') {
    architecture = 'topk'; // SAELens 4.x-5.x: a standard SAE with a TopK activation function
    k = kwargs.k as number;
  } else if ((SAE_ARCHITECTURES as readonly unknown[]).includes(archRaw)) {
    architecture = archRaw as SaeArchitecture;
    if (architecture === 'topk') k = (cfg.k ?? kwargs.k) as number;
    else if (act !== 'relu') fail(`cfg.json: activation_fn_str "${String(act)}" is not supported (relu, or topk)`);
  } else {
    return fail(`cfg.json: architecture "${String(archRaw)}" is not supported (supported: ${SAE_ARCHITECTURES.join(', ')})`);
  }
  if (architecture === 'topk' && (typeof k !== 'number' || !Number.isSafeInteger(k) || k < 1 || k > dSae)) {
    fail(`cfg.json: a topk SAE needs an integer "k" in 1-${dSae}, got ${JSON.stringify(k)}`);
  }
  const norm = cfg.normalize_activations ?? 'none';
  if (norm !== 'none') {
    fail(`cfg.json: normalize_activations "${String(norm)}" is not supported (only "none": the scale of expected_average_only_in, constant_norm_rescale and layer_norm is not in the weights)`);
  }
  if (cfg.hook_head_index !== undefined && cfg.hook_head_index !== null) fail('cfg.json: hook_head_index (an SAE on one attention head) is not supported');
  if (cfg.finetuning_scaling_factor === true) fail('cfg.json: finetuning_scaling_factor is not supported');
  const apply = cfg.apply_b_dec_to_input ?? true;
  if (typeof apply !== 'boolean') fail(`cfg.json: apply_b_dec_to_input must be true or false, got ${JSON.stringify(apply)}`);

  const weightsFile = path.join(dir, 'sae_weights.safetensors');
  if (!existsSync(weightsFile)) fail('sae_weights.safetensors is missing');
  const tensors = new Map(safe(() => readSafetensors(weightsFile), fail).map((t) => [t.name, t]));
  const get = (name: string, shape: number[]): Float32Array => {
    const t = tensors.get(name);
    if (!t) return fail(`sae_weights.safetensors has no tensor "${name}" (it has ${[...tensors.keys()].join(', ') || 'none'})`);
    checkShape(`sae_weights.safetensors: ${name}`, t.shape, shape, fail);
    return checkFinite(`sae_weights.safetensors: ${name}`, safe(() => readTensorF32(t), fail), fail);
  };
  const w = readTensors(get, dIn, dSae, architecture);
  let sparsity: Float32Array | null = null;
  const sparsityFile = path.join(dir, 'sparsity.safetensors');
  if (existsSync(sparsityFile)) {
    const s = safe(() => readSafetensors(sparsityFile), fail).find((t) => t.name === 'sparsity');
    if (s && s.shape.length === 1 && s.shape[0] === dSae) sparsity = safe(() => readTensorF32(s), fail);
  }
  const version = typeof cfg.sae_lens_version === 'string' ? cfg.sae_lens_version : typeof cfg.sae_lens_training_version === 'string' ? cfg.sae_lens_training_version : null;
  return finish({ path: dir, format: 'saelens', architecture, k, hookName: cfg.hook_name as string, applyBDecToInput: apply as boolean, dIn, dSae, ...w, sparsity, version });
}

function readNpz(where: string, file: string, fail: Fail): SaeFile {
  const members = safe(() => zipMembers(file), fail);
  const arrays = new Map<string, { shape: number[]; data: Float32Array }>();
  const load = (name: string) => {
    const m = members.get(`${name}.npy`);
    if (!m) return null;
    const bytes = safe(() => readZipMember(file, m), fail);
    return parseNpyArray(bytes, (problem) => fail(`${name}: ${problem}`));
  };
  for (const name of ['W_enc', 'b_enc', 'W_dec', 'b_dec', 'threshold']) {
    const a = load(name);
    if (a) arrays.set(name, a);
  }
  const enc = arrays.get('W_enc');
  if (!enc) fail(`params.npz has no "W_enc" (it has ${[...members.keys()].map((n) => n.replace(/\.npy$/, '')).join(', ') || 'nothing'})`);
  if (enc!.shape.length !== 2) fail(`W_enc has shape [${enc!.shape}], expected [d_in, d_sae]`);
  const [dIn, dSae] = enc!.shape as [number, number];
  const architecture: SaeArchitecture = arrays.has('threshold') ? 'jumprelu' : 'standard';
  const get = (name: string, shape: number[]): Float32Array => {
    const a = arrays.get(name);
    if (!a) return fail(`params.npz has no "${name}"`);
    checkShape(name, a.shape, shape, fail);
    return checkFinite(name, a.data, fail);
  };
  const w = readTensors(get, dIn, dSae, architecture);
  return finish({ path: where, format: 'gemma-scope-npz', architecture, k: null, hookName: null, applyBDecToInput: false, dIn, dSae, ...w, sparsity: null, version: null });
}

function readTensors(get: (name: string, shape: number[]) => Float32Array, dIn: number, dSae: number, architecture: SaeArchitecture) {
  return {
    W_enc: get('W_enc', [dIn, dSae]),
    b_enc: get('b_enc', [dSae]),
    W_dec: get('W_dec', [dSae, dIn]),
    b_dec: get('b_dec', [dIn]),
    threshold: architecture === 'jumprelu' ? get('threshold', [dSae]) : null,
  };
}

function checkShape(what: string, got: number[], want: number[], fail: Fail): void {
  if (got.length !== want.length || got.some((d, i) => d !== want[i])) fail(`${what} has shape [${got.join(', ')}], expected [${want.join(', ')}] (d_in, d_sae from the cfg / W_enc)`);
}

function checkFinite(what: string, x: Float32Array, fail: Fail): Float32Array {
  for (let i = 0; i < x.length; i++) if (!Number.isFinite(x[i]!)) fail(`${what} element ${i} is ${x[i]}; SAE weights must be finite`);
  return x;
}

/** Another reader's UserError, re-worded under this parameter (one line naming the flag and the file). */
function safe<T>(f: () => T, fail: Fail): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof UserError) return fail(e.message);
    throw e;
  }
}

function finish(s: Omit<SaeFile, 'hash'>): SaeFile {
  const h = createHash('sha256');
  h.update(JSON.stringify({ architecture: s.architecture, k: s.k, apply_b_dec_to_input: s.applyBDecToInput, d_in: s.dIn, d_sae: s.dSae, hook_name: s.hookName }));
  for (const t of [s.W_enc, s.b_enc, s.W_dec, s.b_dec, s.threshold]) if (t) h.update(new Uint8Array(t.buffer, t.byteOffset, t.byteLength));
  return { ...s, hash: h.digest('hex') };
}
