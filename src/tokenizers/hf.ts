/**
 * Hugging Face tokenizer.json, run by @huggingface/tokenizers (a pure JS port of the `tokenizers` pipeline:
 * normalizer → pre-tokenizer → model → post-processor, and the decoder back).
 *
 * encode() never lets the file's post-processor add its special tokens; BOS is prepended by us when asked. BOS is the
 * special token the post-processor puts first (TemplateProcessing, RobertaProcessing, BertProcessing), else an added
 * token with a well-known name ("<|begin_of_text|>", "<s>", "<bos>", ...). GPT-2 style vocabularies have no BOS of
 * their own: when none is found and EOS is "<|endoftext|>", that token is both (as GPT-2 was trained).
 */
import { Tokenizer as HfTokenizerClass } from '@huggingface/tokenizers';
import { UserError } from '../errors.js';
import { readSmallText } from '../formats/files.js';
import { checkEncodeLength } from './limits.js';
import type { Tokenizer } from './types.js';

/**
 * The part of @huggingface/tokenizers' Tokenizer used here. Its own .d.ts files import each other without file
 * extensions, which NodeNext resolution rejects, so under this project's settings the package's types are `any`.
 */
interface HfTokenizer {
  model: { vocab: string[] } | null;
  encode(text: string, options?: { add_special_tokens?: boolean }): { ids: (number | undefined)[]; tokens: string[] };
  decode(ids: number[], options?: { skip_special_tokens?: boolean; clean_up_tokenization_spaces?: boolean }): string;
  token_to_id(token: string): number | undefined;
  get_added_tokens_decoder(): Map<number, { content: string; special: boolean }>;
}
const HfTokenizer = HfTokenizerClass as new (tokenizerJson: object, config: object) => HfTokenizer;

const SUPPORTED_MODELS = ['BPE', 'WordPiece', 'Unigram'];
const BOS_NAMES = ['<|begin_of_text|>', '<s>', '<bos>', '<|startoftext|>', '<|bos|>', '[BOS]'];
const EOS_NAMES = ['<|end_of_text|>', '</s>', '<eos>', '<|endoftext|>', '<|eos|>', '[EOS]'];
const GPT2_EOT = '<|endoftext|>';
const BYTE_PIECE = /^<0x[0-9A-Fa-f]{2}>$/;
const REPLACEMENT_CHAR = '\uFFFD';
const SPACE_MARK = '\u2581';

type Json = Record<string, unknown>;

export function readTokenizerJson(path: string): Tokenizer {
  return new HfJsonTokenizer(path, parseTokenizerJson(path));
}

export class HfJsonTokenizer implements Tokenizer {
  readonly kind = 'tokenizer.json';
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosId: number | null;
  private readonly hf: HfTokenizer;
  private readonly vocab: string[];
  /** Added tokens marked special, by id: shown by piece(), dropped by decode(). */
  private readonly special = new Map<number, string>();
  /** The decoder maps characters to bytes (GPT-2's byte-level alphabet), so a piece may be part of a character. */
  private readonly byteLevel: boolean;

  /** `json` is a parsed tokenizer.json; `source` names it in error messages. */
  constructor(
    private readonly source: string,
    json: Json,
  ) {
    const model = json.model as Json;
    try {
      // clean_up_tokenization_spaces would turn "Lily 's" into "Lily's": decode must give back the text exactly.
      this.hf = new HfTokenizer(json, { clean_up_tokenization_spaces: false });
    } catch (e) {
      throw new UserError(`${source}: unsupported or malformed tokenizer.json: ${oneLine((e as Error).message)}`);
    }
    this.vocab = this.hf.model!.vocab;
    this.vocabSize = this.vocab.length;
    if (this.vocabSize === 0) throw new UserError(`${source}: the vocabulary is empty`);
    for (const [id, t] of this.hf.get_added_tokens_decoder()) if (t.special) this.special.set(id, t.content);

    const idOf = (token: string): number | null => this.hf.token_to_id(token) ?? null;
    this.eosId = firstKnown(EOS_NAMES, idOf);
    let bos = bosFromPostProcessor(json.post_processor, idOf) ?? firstKnown(BOS_NAMES, idOf);
    if (bos === null && this.eosId !== null && this.vocab[this.eosId] === GPT2_EOT) bos = this.eosId;
    if (bos !== null && !this.isKnownId(bos)) {
      throw new UserError(`${source}: the post-processor's first special token has id ${bos}, outside the vocabulary (0..${this.vocabSize - 1})`);
    }
    this.bosId = bos;
    // The library checks a malformed pipeline (a "single" template that is not a list, say) only when it first
    // encodes: encode once now, so such a file fails when it is loaded, as a UserError naming it.
    this.runHf('a b');
    this.byteLevel = hasType(json.decoder, 'ByteLevel') || (model.type === 'BPE' && hasType(json.pre_tokenizer, 'ByteLevel'));
  }

  encode(text: string, opts: { bos?: boolean } = {}): number[] {
    checkEncodeLength(this.source, text);
    const { ids, tokens } = this.runHf(text);
    const out: number[] = opts.bos && this.bosId !== null ? [this.bosId] : [];
    ids.forEach((id, i) => {
      if (typeof id !== 'number') {
        throw new UserError(`${this.source}: cannot encode ${JSON.stringify(tokens[i])}: not in the vocabulary and the model has no unknown token`);
      }
      out.push(id);
    });
    return out;
  }

  decode(ids: number[]): string {
    ids.forEach((id) => this.checkId(id));
    if (ids.length === 0) return '';
    return this.hf.decode(ids, { skip_special_tokens: true, clean_up_tokenization_spaces: false });
  }

  piece(tokenId: number): string {
    this.checkId(tokenId);
    const special = this.special.get(tokenId);
    if (special !== undefined) return special;
    const token = this.vocab[tokenId]!;
    let text = this.hf.decode([tokenId], { skip_special_tokens: false, clean_up_tokenization_spaces: false });
    if (text.includes(REPLACEMENT_CHAR) && !token.includes(REPLACEMENT_CHAR)) {
      // Part of a multi-byte character: show the bytes that are not a whole character as <0xNN>.
      if (BYTE_PIECE.test(token)) return token;
      if (this.byteLevel) {
        const bytes = byteLevelBytes(token);
        if (bytes) return showBytes(bytes);
      }
    }
    // A Metaspace decoder drops the first piece's leading space (the dummy prefix); a lone piece should keep it.
    if (token.startsWith(SPACE_MARK) && !text.startsWith(' ')) text = ' ' + text;
    return text;
  }

  /** The library's encode; its own exceptions come from the file's pipeline definition, so they name the file. */
  private runHf(text: string): { ids: (number | undefined)[]; tokens: string[] } {
    try {
      return this.hf.encode(text, { add_special_tokens: false });
    } catch (e) {
      throw new UserError(`${this.source}: malformed tokenizer.json pipeline: ${oneLine(String((e as Error).message ?? e))}`);
    }
  }

  private isKnownId(id: number): boolean {
    return Number.isInteger(id) && id >= 0 && id < this.vocabSize && this.vocab[id] !== undefined;
  }

  private checkId(tokenId: number): void {
    if (!this.isKnownId(tokenId)) {
      throw new UserError(`${this.source}: token id ${tokenId} is outside the vocabulary (0..${this.vocabSize - 1})`);
    }
  }
}

/** Reads and checks a tokenizer.json; problems the user can fix are UserErrors naming the file. */
function parseTokenizerJson(path: string): Json {
  const fail = (problem: string): never => {
    throw new UserError(`${path}: ${problem}`);
  };
  const text = readSmallText(path, 'tokenizer.json file');
  let json: unknown;
  try {
    json = JSON.parse(text!);
  } catch (e) {
    fail(`invalid JSON: ${oneLine((e as Error).message)}`);
  }
  if (!isObject(json)) return fail('not a tokenizer.json: expected a JSON object');
  const model = json.model;
  if (!isObject(model)) return fail('not a tokenizer.json: no "model" object');
  // Files written by old versions of `tokenizers` may lack model.type; infer it as `tokenizers` does.
  const type = model.type ?? (Array.isArray(model.vocab) ? 'Unigram' : 'merges' in model ? 'BPE' : isObject(model.vocab) ? 'WordPiece' : undefined);
  if (typeof type !== 'string' || !SUPPORTED_MODELS.includes(type)) {
    fail(`unsupported model type ${JSON.stringify(type ?? null)} (supported: ${SUPPORTED_MODELS.join(', ')})`);
  }
  if (type === 'BPE' && (!isObject(model.vocab) || !Array.isArray(model.merges))) fail('BPE model needs a "vocab" object and a "merges" array');
  if (type === 'WordPiece' && !isObject(model.vocab)) fail('WordPiece model needs a "vocab" object');
  if (type === 'Unigram' && !Array.isArray(model.vocab)) fail('Unigram model needs a "vocab" array of [piece, score]');
  if (json.added_tokens !== undefined && !Array.isArray(json.added_tokens)) fail('"added_tokens" is not an array');
  if (isObject(model.vocab)) checkVocabIds(model.vocab, fail);
  if (Array.isArray(json.added_tokens)) {
    json.added_tokens.forEach((t, i) => {
      if (!isObject(t) || typeof t.content !== 'string' || !isTokenId(t.id)) fail(`added_tokens[${i}] needs a string "content" and an integer "id" from 0`);
    });
  }
  if (Array.isArray(model.vocab)) {
    model.vocab.forEach((e, i) => {
      if (!Array.isArray(e) || typeof e[0] !== 'string' || typeof e[1] !== 'number' || !Number.isFinite(e[1])) fail(`Unigram vocab entry ${i} is not [piece, finite score]`);
    });
  }
  checkPrepend(json.normalizer, fail);
  // The library wants every stage present (null when absent).
  return {
    ...json,
    model: { ...model, type },
    added_tokens: json.added_tokens ?? [],
    normalizer: json.normalizer ?? null,
    pre_tokenizer: json.pre_tokenizer ?? null,
    post_processor: json.post_processor ?? null,
    decoder: json.decoder ?? null,
  };
}

/** Ids index arrays: the library trusts them, so -1, 0.5 or 1e308 would come back out of encode() as "ids". */
const MAX_TOKEN_ID = 2 ** 31 - 1;

function isTokenId(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= MAX_TOKEN_ID;
}

function checkVocabIds(vocab: Json, fail: (p: string) => never): void {
  const seen = new Map<number, string>();
  for (const [token, id] of Object.entries(vocab)) {
    if (!isTokenId(id)) fail(`vocab token ${JSON.stringify(token)} has id ${JSON.stringify(id)}, expected an integer from 0 to ${MAX_TOKEN_ID}`);
    const other = seen.get(id);
    if (other !== undefined) fail(`vocab id ${id} is used by both ${JSON.stringify(other)} and ${JSON.stringify(token)}`);
    seen.set(id, token);
  }
}

/**
 * Real Prepend normalizers add one marker ("▁"). A long one makes every text one giant word whose BPE merge is
 * quadratic (100,000 characters: over 30 s per encode), so a prepend beyond this is refused as corrupt.
 */
const MAX_PREPEND_CHARS = 256;

function checkPrepend(stage: unknown, fail: (p: string) => never): void {
  if (!isObject(stage)) return;
  if (stage.type === 'Prepend' && typeof stage.prepend === 'string' && stage.prepend.length > MAX_PREPEND_CHARS) {
    fail(`normalizer Prepend adds ${stage.prepend.length} characters (at most ${MAX_PREPEND_CHARS} accepted)`);
  }
  if (Array.isArray(stage.normalizers)) for (const s of stage.normalizers) checkPrepend(s, fail);
}

/** The special token a post-processor puts before a single sequence, if any. */
function bosFromPostProcessor(pp: unknown, idOf: (t: string) => number | null): number | null {
  if (!isObject(pp)) return null;
  switch (pp.type) {
    case 'TemplateProcessing': {
      const first = Array.isArray(pp.single) ? pp.single[0] : undefined;
      if (!isObject(first) || !isObject(first.SpecialToken)) return null;
      const name = first.SpecialToken.id;
      if (typeof name !== 'string') return null;
      const entry = isObject(pp.special_tokens) ? pp.special_tokens[name] : undefined;
      const ids = isObject(entry) && Array.isArray(entry.ids) ? entry.ids : [];
      return typeof ids[0] === 'number' ? ids[0] : idOf(name);
    }
    case 'RobertaProcessing':
    case 'BertProcessing': {
      const cls = pp.cls;
      if (Array.isArray(cls) && typeof cls[1] === 'number') return cls[1];
      return Array.isArray(cls) && typeof cls[0] === 'string' ? idOf(cls[0]) : null;
    }
    case 'Sequence': {
      for (const p of Array.isArray(pp.processors) ? pp.processors : []) {
        const id = bosFromPostProcessor(p, idOf);
        if (id !== null) return id;
      }
      return null;
    }
    default:
      return null;
  }
}

function firstKnown(names: string[], idOf: (t: string) => number | null): number | null {
  for (const name of names) {
    const id = idOf(name);
    if (id !== null) return id;
  }
  return null;
}

/** Whether a pipeline stage is `type` or a Sequence containing it. */
function hasType(stage: unknown, type: string): boolean {
  if (!isObject(stage)) return false;
  if (stage.type === type) return true;
  const inner = stage.decoders ?? stage.pretokenizers ?? stage.processors;
  return Array.isArray(inner) && inner.some((s) => hasType(s, type));
}

let unicodeToByte: Map<string, number> | undefined;

/** GPT-2's byte-level alphabet: printable bytes stand for themselves, the others are shifted to U+0100 and up. */
function byteLevelBytes(token: string): number[] | null {
  if (!unicodeToByte) {
    unicodeToByte = new Map();
    let n = 0;
    for (let b = 0; b < 256; b++) {
      const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
      unicodeToByte.set(String.fromCharCode(printable ? b : 256 + n++), b);
    }
  }
  const bytes: number[] = [];
  for (const ch of token) {
    const b = unicodeToByte.get(ch);
    if (b === undefined) return null;
    bytes.push(b);
  }
  return bytes;
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** Bytes as text where they form whole UTF-8 characters, "<0xNN>" where they do not. */
function showBytes(bytes: number[]): string {
  let out = '';
  for (let i = 0; i < bytes.length; ) {
    const b = bytes[i]!;
    const len = b < 0x80 ? 1 : b >> 5 === 0b110 ? 2 : b >> 4 === 0b1110 ? 3 : b >> 3 === 0b11110 ? 4 : 0;
    if (len > 0 && i + len <= bytes.length) {
      try {
        out += strictUtf8.decode(Uint8Array.from(bytes.slice(i, i + len)));
        i += len;
        continue;
      } catch {
        // not a valid character: fall through to the byte display
      }
    }
    out += `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;
    i++;
  }
  return out;
}

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ');
}
