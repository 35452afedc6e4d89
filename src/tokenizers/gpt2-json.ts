/**
 * Builds a Hugging Face tokenizer.json for a GPT-2 style byte-level BPE vocabulary from OpenAI's original files,
 * encoder.json (token string → id) and vocab.bpe (the merges, one "left right" pair a line after a "#version" line).
 *
 * The result has the shape Hugging Face writes for GPT-2 (model BPE with vocab and merges, ByteLevel pre-tokenizer
 * with add_prefix_space false, ByteLevel post-processor and decoder, <|endoftext|> as a special added token), so
 * `JSON.stringify` of it is a tokenizer.json that `readTokenizerJson` and Hugging Face's own libraries both read.
 */
import fs from 'node:fs';
import { UserError } from '../errors.js';

export const GPT2_SPECIAL_TOKEN = '<|endoftext|>';

export function gpt2TokenizerJson(encoderJsonPath: string, vocabBpePath: string): object {
  const vocab = readEncoder(encoderJsonPath);
  const merges = readMerges(vocabBpePath, vocab);
  const eot = vocab[GPT2_SPECIAL_TOKEN];
  const addedTokens =
    eot === undefined
      ? []
      : [{ id: eot, content: GPT2_SPECIAL_TOKEN, single_word: false, lstrip: false, rstrip: false, normalized: true, special: true }];
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens,
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges,
    },
  };
}

function readText(path: string, what: string): string {
  try {
    return fs.readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UserError(`${path}: no such file (expected ${what})`);
    if (code === 'EISDIR') throw new UserError(`${path}: is a directory (expected ${what})`);
    throw new UserError(`${path}: cannot read: ${(e as Error).message}`);
  }
}

function readEncoder(path: string): Record<string, number> {
  const text = readText(path, "GPT-2's encoder.json");
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new UserError(`${path}: invalid JSON: ${(e as Error).message}`);
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new UserError(`${path}: expected a JSON object mapping token strings to ids (GPT-2's encoder.json)`);
  }
  const vocab = data as Record<string, unknown>;
  const seen = new Map<number, string>();
  for (const [token, id] of Object.entries(vocab)) {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) {
      throw new UserError(`${path}: token ${JSON.stringify(token)} has id ${JSON.stringify(id)}, expected a non-negative integer`);
    }
    const other = seen.get(id);
    if (other !== undefined) {
      throw new UserError(`${path}: id ${id} is used by both ${JSON.stringify(other)} and ${JSON.stringify(token)}`);
    }
    seen.set(id, token);
  }
  if (seen.size === 0) throw new UserError(`${path}: empty vocabulary`);
  return vocab as Record<string, number>;
}

function readMerges(path: string, vocab: Record<string, number>): string[] {
  const lines = readText(path, "GPT-2's vocab.bpe").split('\n');
  const merges: string[] = [];
  lines.forEach((raw, i) => {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line === '' || (i === 0 && line.startsWith('#version'))) return;
    const parts = line.split(' ');
    if (parts.length !== 2 || parts[0] === '' || parts[1] === '') {
      throw new UserError(`${path}: line ${i + 1}: expected a merge "left right", got ${JSON.stringify(line)}`);
    }
    if (!Object.hasOwn(vocab, parts[0]! + parts[1]!)) {
      throw new UserError(`${path}: line ${i + 1}: merge ${JSON.stringify(line)} makes a token that is not in the vocabulary; encoder.json and vocab.bpe do not belong together?`);
    }
    merges.push(line);
  });
  if (merges.length === 0) throw new UserError(`${path}: no merges found (expected GPT-2's vocab.bpe)`);
  return merges;
}
