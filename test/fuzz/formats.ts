/**
 * The fuzzed formats: for each, how a seeded case is written (a mutation of a real file), how the in-process tier
 * reads it (the library's readers and parsers; a result must pass the format's invariants), and which CLI command the
 * subprocess tier runs on it.
 */
import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { Atlas } from '../../src/atlas/store.js';
import { UserError } from '../../src/errors.js';
import { MAX_VISUALIZE_RUNS, expandSelection } from '../../src/features/selection.js';
import { readGguf } from '../../src/formats/gguf.js';
import { readLlama2c } from '../../src/formats/llama2c.js';
import { readSafetensors } from '../../src/formats/safetensors.js';
import type { StoredTensor } from '../../src/formats/types.js';
import { loadModel } from '../../src/models/load.js';
import { gpt2TokenizerJson } from '../../src/tokenizers/gpt2-json.js';
import { readTokenizerJson } from '../../src/tokenizers/hf.js';
import { readLlama2cTokenizer } from '../../src/tokenizers/llama2c.js';
import type { Tokenizer } from '../../src/tokenizers/types.js';
import { fixturePath, modelPath } from '../helpers.js';
import { ggufDataStart, ggufLayout } from './layout.js';
import { mutateBytes, mutateJson, type Rng } from './mutate.js';

export interface Case {
  /** What the reader / the CLI opens: a file or a folder. */
  target: string;
  /** The mutation, for reproducing a failure. */
  label: string;
}

export interface Format {
  name: string;
  make(rng: Rng, dir: string): Case;
  /** Reads the case in-process: returns on success (after checking invariants) or throws. */
  read(c: Case): void;
  /** The CLI arguments of the subprocess tier (the model files the command needs are in the case). */
  cli(c: Case, rng: Rng): string[];
}

/** Base files, read once. */
export interface Bases {
  gguf: Buffer;
  bin: Buffer;
  tok: Buffer;
  /** An atlas built by the CLI (atlas build on stories260K), with its path. */
  atlas: string;
  /** A ~500-token byte-level BPE tokenizer.json cut from GPT-2's vocabulary. */
  tokenizerJson: string;
}

const TEXT = 'Once upon a time, Lily saw a cat. "Hi!" she said 123 — é 😀';

/** Checks every located tensor lies inside its file, as the readers promise. */
function checkTensors(tensors: Iterable<StoredTensor>): void {
  for (const t of tensors) {
    const size = readFileSync(t.file).length;
    if (!(t.offset >= 0 && t.offset + t.nbytes <= size)) throw new Error(`invariant: tensor ${t.name} [${t.offset}, +${t.nbytes}) outside its file (${size})`);
  }
}

/** A tokenizer that loaded must encode, decode and show pieces without anything but a UserError. */
function exercise(tok: Tokenizer): void {
  const ids = tok.encode(TEXT, { bos: true });
  for (const id of ids) if (!Number.isInteger(id) || id < 0 || id >= tok.vocabSize) throw new Error(`invariant: encode gave id ${id} outside 0..${tok.vocabSize - 1}`);
  tok.decode(ids);
  for (let id = 0; id < Math.min(tok.vocabSize, 64); id++) tok.piece(id);
}

function writeCase(dir: string, name: string, bytes: Buffer | string): string {
  mkdirSync(dir, { recursive: true });
  const p = path.join(dir, name);
  writeFileSync(p, bytes);
  return p;
}

const gguf = (b: Bases): Format => {
  const l = ggufLayout(b.gguf);
  const data = ggufDataStart(l);
  return {
    name: 'gguf',
    make(rng, dir) {
      // Half the cases hit a structural field (a metadata value, a tensor's type, offset or dimension) with an
      // interesting value; the rest are byte mutations, mostly in the header.
      const src = Buffer.from(b.gguf);
      if (rng.chance(0.4)) {
        const info = rng.pick(l.infos);
        const field = rng.int(3);
        const pos = field === 0 ? info.typePos : field === 1 ? info.offsetPos : info.typePos - 8 * (1 + rng.int(info.ne.length));
        const m = mutateBytes(rng, src, { start: pos, end: pos + (field === 0 ? 4 : 8) });
        return { target: writeCase(dir, 'm.gguf', m.bytes), label: `tensor ${info.name} field ${field}: ${m.label}` };
      }
      if (rng.chance(0.3)) {
        const kv = rng.pick(l.kvs);
        const m = mutateBytes(rng, src, { start: kv.valuePos - 4, end: kv.valuePos + 8 });
        return { target: writeCase(dir, 'm.gguf', m.bytes), label: `metadata ${kv.key}: ${m.label}` };
      }
      const m = mutateBytes(rng, src, { start: 0, end: data }, { start: data, end: src.length });
      return { target: writeCase(dir, 'm.gguf', m.bytes), label: m.label };
    },
    read(c) {
      checkTensors(readGguf(c.target).tensors);
      const model = loadModel(c.target);
      checkTensors(model.tensors.values());
      if (model.tokenizer) exercise(model.tokenizer);
    },
    cli: (c, rng) => (rng.chance(0.5) ? ['inspect', '--model', c.target] : ['forward', '--model', c.target, '--text', 'Once upon a time', '--blocks', '1-2']),
  };
};

const llama2c = (b: Bases): Format => ({
  name: 'llama2c',
  make(rng, dir) {
    const m = mutateBytes(rng, b.bin, { start: 0, end: 28 }, { start: 28, end: b.bin.length });
    writeCase(dir, 'tok512.bin', b.tok);
    return { target: writeCase(dir, 'm.bin', m.bytes), label: m.label };
  },
  read(c) {
    checkTensors(readLlama2c(c.target).tensors);
    const model = loadModel(c.target);
    if (model.tokenizer) exercise(model.tokenizer);
  },
  cli: (c, rng) => (rng.chance(0.5) ? ['generate', '--model', c.target, '--max-tokens', '4'] : ['forward', '--model', c.target, '--ids', '1,2,3']),
});

const tokenizerBin = (b: Bases): Format => ({
  name: 'tokenizer.bin',
  make(rng, dir) {
    const m = mutateBytes(rng, b.tok);
    return { target: writeCase(dir, 'tok.bin', m.bytes), label: m.label };
  },
  read(c) {
    exercise(readLlama2cTokenizer(c.target, 512));
    exercise(readLlama2cTokenizer(c.target));
  },
  cli: (c) => ['tokenize', '--model', modelPath('stories260K.bin'), '--tokenizer', c.target, '--text', TEXT],
});

/** A copy of an HF fixture folder with one file replaced. */
function hfCase(dir: string, fixture: string, file: string, bytes: Buffer | string): string {
  const folder = path.join(dir, 'model');
  cpSync(fixturePath(`hf/${fixture}`), folder, { recursive: true });
  writeFileSync(path.join(folder, file), bytes);
  return folder;
}

function readHf(c: Case): void {
  const model = loadModel(c.target);
  checkTensors(model.tensors.values());
}

const hfCli = (c: Case): string[] => ['forward', '--model', c.target, '--ids', '1,2,3', '--blocks', '1'];

const safetensorsHeader: Format = {
  name: 'safetensors-header',
  make(rng, dir) {
    const src = readFileSync(fixturePath('hf/qwen2-tied/model.safetensors'));
    const n = Number(src.readBigUInt64LE(0));
    if (rng.chance(0.25)) {
      // The 8-byte length and the header's edges, as bytes.
      const m = mutateBytes(rng, src, { start: 0, end: 16 });
      return { target: hfCase(dir, 'qwen2-tied', 'model.safetensors', m.bytes), label: m.label };
    }
    const m = mutateJson(rng, src.subarray(8, 8 + n).toString('utf8'), ['data_offsets', 'shape', 'dtype']);
    const json = Buffer.from(m.text);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    return { target: hfCase(dir, 'qwen2-tied', 'model.safetensors', Buffer.concat([len, json, src.subarray(8 + n)])), label: m.label };
  },
  read(c) {
    checkTensors(readSafetensors(path.join(c.target, 'model.safetensors')));
    readHf(c);
  },
  cli: hfCli,
};

const safetensorsData: Format = {
  name: 'safetensors-data',
  make(rng, dir) {
    const src = readFileSync(fixturePath('hf/qwen2-tied/model.safetensors'));
    const start = 8 + Number(src.readBigUInt64LE(0));
    const m = mutateBytes(rng, src, { start, end: src.length }, { start, end: src.length });
    return { target: hfCase(dir, 'qwen2-tied', 'model.safetensors', m.bytes), label: m.label };
  },
  read: readHf,
  cli: hfCli,
};

const shardIndex: Format = {
  name: 'sharded-index',
  make(rng, dir) {
    const m = mutateJson(rng, readFileSync(fixturePath('hf/llama-gqa-bf16/model.safetensors.index.json'), 'utf8'), ['weight_map']);
    return { target: hfCase(dir, 'llama-gqa-bf16', 'model.safetensors.index.json', m.text), label: m.label };
  },
  read: readHf,
  cli: hfCli,
};

const configJson: Format = {
  name: 'config.json',
  make(rng, dir) {
    const fixture = rng.pick(['qwen2-tied', 'gpt2-f16', 'llama3-rope-scaling']);
    const m = mutateJson(rng, readFileSync(fixturePath(`hf/${fixture}/config.json`), 'utf8'));
    return { target: hfCase(dir, fixture, 'config.json', m.text), label: `${fixture}: ${m.label}` };
  },
  read: readHf,
  cli: hfCli,
};

const tokenizerJson = (b: Bases): Format => ({
  name: 'tokenizer.json',
  make(rng, dir) {
    const m = mutateJson(rng, b.tokenizerJson, ['post_processor', 'normalizer', 'pre_tokenizer', 'decoder', 'added_tokens', 'type', 'merges']);
    return { target: writeCase(dir, 'tokenizer.json', m.text), label: m.label };
  },
  read(c) {
    exercise(readTokenizerJson(c.target));
  },
  cli: (c) => ['tokenize', '--model', modelPath('stories260K.gguf'), '--tokenizer', c.target, '--text', TEXT],
});

const ATLAS_SQL = [
  "UPDATE records SET result_json = '{bad' WHERE id = 1",
  "UPDATE records SET result_json = '[]'",
  "UPDATE records SET result_json = 'null'",
  "UPDATE settings SET json = '{'",
  "UPDATE records SET block_a = -1",
  "UPDATE records SET feature = NULL",
  "UPDATE records SET status = 'weird'",
  "UPDATE records SET select_text = '[:, :, 99999999]' WHERE id = 1",
  'DELETE FROM settings',
  'DELETE FROM models',
  'DROP TABLE records',
  'DROP TABLE meta',
  "UPDATE meta SET value = 'other' WHERE key = 'format'",
  'PRAGMA user_version = 0',
  'PRAGMA user_version = 1',
  'PRAGMA user_version = 99',
  "UPDATE records SET result_json = json_set(result_json, '$.topk_ids', 'x')",
  "UPDATE records SET result_json = json_remove(result_json, '$.activation')",
];

const atlas = (b: Bases): Format => ({
  name: 'atlas',
  make(rng, dir) {
    mkdirSync(dir, { recursive: true });
    const target = path.join(dir, 'a.db');
    if (rng.chance(0.5)) {
      const sql = rng.pick(ATLAS_SQL);
      cpSync(b.atlas, target);
      const db = new Database(target);
      try {
        db.pragma('foreign_keys = OFF'); // damage as a careless tool would do it, constraints and all
        db.pragma('ignore_check_constraints = ON');
        db.exec(sql);
      } finally {
        db.close();
      }
      return { target, label: sql };
    }
    const src = readFileSync(b.atlas);
    const m = mutateBytes(rng, src, { start: 0, end: Math.min(src.length, 4096 * 4) });
    writeFileSync(target, m.bytes);
    return { target, label: m.label };
  },
  read(c) {
    const a = Atlas.open(c.target, { readonly: true });
    try {
      a.models();
      a.groups();
      a.count();
      for (const r of a.records()) void r.select;
    } finally {
      a.close();
    }
  },
  cli: (c, rng) =>
    rng.pick([
      ['atlas', 'ls', '--db', c.target],
      ['atlas', 'export', '--db', c.target],
      ['atlas', 'export', '--db', c.target, '--format', 'csv'],
      ['atlas', 'compare', '--db', c.target, '--a', 'blocks=1', '--b', 'blocks=1'],
    ]),
});

// ---------------------------------------------------------------------------------------------------------------
// CLI flags and selections

const SEL_PIECES = [':', '0', '1', '3', '63', '64', '-1', '2-4', '4-2', '0:3', '3:3', '(0,2)', '(', ')', ',', ' ', '99999999999999999999', '1e3', 'x', '0-63', '::', '[', ']'];

/** A selection built from the notation's pieces, sometimes well-formed, sometimes not. */
export function randomSelection(rng: Rng): string {
  if (rng.chance(0.4)) {
    // Well-formed, with indices that may or may not fit 5 positions × 64 features.
    const pos = rng.pick([':', '0', '4', '5', '0-4', '1:3', '(0,2)', '(1,3,4)', '2-2', '0:5']);
    const feat = Array.from({ length: 1 + rng.int(3) }, () => rng.pick(['0', '7', '63', '64', '0-3', '10:20', '0:64', ':', '5-5'])).join(',');
    return `[${rng.pick([':', '0'])}, ${pos}, ${feat}]`;
  }
  if (rng.chance(0.5)) {
    const axis = () => Array.from({ length: 1 + rng.int(2) }, () => rng.pick(SEL_PIECES)).join('');
    return `[${rng.pick([':', '0', '1', ''])}, ${axis()}, ${axis()}]`;
  }
  return Array.from({ length: 1 + rng.int(10) }, () => rng.pick([...SEL_PIECES, '[', ']', ', '])).join('');
}

const selection: Format = {
  name: 'selection',
  make(rng) {
    const s = randomSelection(rng);
    return { target: s, label: JSON.stringify(s) };
  },
  read(c) {
    const runs = expandSelection(c.target, 5, 64, { maxRuns: MAX_VISUALIZE_RUNS, hint: 'x' });
    for (const r of runs) {
      for (const [pick, size] of [[r.positions, 5], [r.features, 64]] as const) {
        if (!pick.all && pick.indices.some((i) => !Number.isInteger(i) || i < 0 || i >= size)) throw new Error(`invariant: index outside 0..${size - 1} in ${r.label}`);
      }
    }
  },
  cli: (c, rng) => ['visualize', '--model', modelPath('stories260K.bin'), '--blocks', rng.pick(['1', '1-2', '5']), '--select', c.target, '--steps', '1', '--tokens', '3'],
};

/** Flags with valid and invalid values; values that would make a run slow (many steps, draws, candidates) are left out. */
const FLAG_VALUES: Record<string, string[]> = {
  '--blocks': ['1', '2-3', '0', '6', '3-1', 'a', '1-5', '-1', ''],
  '--hook': ['resid', 'mlp', 'attn', 'logits', ''],
  '--tokens': ['1', '3', '0', '-2', 'x', '100000', '2.5'],
  '--lr': ['0.5', '0', '-1', 'nan', 'Infinity', '1e308'],
  '--lr-end': ['0.1', '-0.1', 'x'],
  '--optimizer': ['sgd', 'adam', 'rmsprop'],
  '--objective': ['l1', 'sum', 'max', 'mean'],
  '--C': ['100', '0', '-5', 'inf'],
  '--topk': ['1', '5', '0', '101', 'x'],
  '--decode': ['pinv', 'nearest-cosine', 'nearest-l2', 'argmax'],
  '--init': ['randn', 'random-tokens', 'tokens:Once upon', 'tokens:', 'zeros'],
  '--seed': ['0', '1', '-1', '4294967296', 'x'],
  '--batch': ['1', '2', '0', '2000'],
  '--random-draws': ['0', '2', '-1', '5000'],
  '--prefix': ['Once', '', 'x'.repeat(2000)],
  '--baseline': ['skip-connection', 'exhaustive', 'none'],
  '--threads': ['1', '0', '300'],
  '--direction': ['/nonexistent.npy', '/dev/null', '/'],
  '--bogus': ['1'],
};

const flags: Format = {
  name: 'cli-flags',
  make(rng) {
    const names = Object.keys(FLAG_VALUES);
    const args: string[] = [];
    for (let k = 0, n = 1 + rng.int(4); k < n; k++) {
      const f = rng.pick(names);
      args.push(f, rng.pick(FLAG_VALUES[f]!));
    }
    return { target: JSON.stringify(args), label: args.join(' ') };
  },
  read() {
    // Flags are parsed by the CLI; this format runs in the subprocess tier only.
  },
  cli(c) {
    const extra = JSON.parse(c.target) as string[];
    const base = ['visualize', '--model', modelPath('stories260K.bin'), '--select', '[:, :, 0]', '--steps', '1'];
    if (!extra.includes('--blocks')) base.push('--blocks', '1');
    return [...base, ...extra];
  },
};

/** A byte-level BPE tokenizer.json of GPT-2's first 500 ids (all bytes plus the earliest merges), written once. */
export function smallTokenizerJson(): string {
  const dir = modelPath('gpt2-tokenizer');
  const full = gpt2TokenizerJson(path.join(dir, 'encoder.json'), path.join(dir, 'vocab.bpe')) as { model: { vocab: Record<string, number>; merges: string[] }; added_tokens: unknown[] };
  const vocab = Object.fromEntries(Object.entries(full.model.vocab).filter(([, id]) => id < 500));
  full.model.vocab = vocab;
  full.model.merges = full.model.merges.filter((m) => {
    const [a, b] = m.split(' ');
    return a! in vocab && b! in vocab && a! + b! in vocab;
  });
  full.added_tokens = [];
  return JSON.stringify(full);
}

export function formats(b: Bases): Format[] {
  return [gguf(b), llama2c(b), tokenizerBin(b), safetensorsHeader, safetensorsData, shardIndex, configJson, tokenizerJson(b), atlas(b), selection, flags];
}

/** In-process outcome: a result, a UserError (one line), or a failure (anything else). */
export function isCleanUserError(e: unknown): boolean {
  return e instanceof UserError && !e.message.includes('\n');
}
