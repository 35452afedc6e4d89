/**
 * SentencePiece-style BPE tokenizer for Llama vocabularies (from GGUF metadata or llama2.c's tokenizer.bin),
 * encoding the way llama2.c does: a dummy-prefix space, spaces as '▁', one piece per Unicode code point (else
 * byte-fallback pieces <0xNN> per UTF-8 byte), then repeatedly merge the adjacent pair whose concatenation is a
 * piece with the highest score, leftmost on ties.
 */
import { UserError } from '../errors.js';
import { checkEncodeLength } from './limits.js';
import type { GgufFile } from '../formats/gguf.js';
import type { Tokenizer } from './types.js';

/** GGUF / SentencePiece token types. */
export const TokenType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

/** U+2581 LOWER ONE EIGHTH BLOCK: SentencePiece's visible stand-in for a space. */
const SPACE_MARK = '\u2581';
const BYTE_PIECE = /^<0x([0-9A-Fa-f]{2})>$/;

export class SentencePieceTokenizer implements Tokenizer {
  readonly kind: string;
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosId: number | null;
  /** Where the vocabulary came from (a file path), for error messages. */
  readonly source: string;
  private readonly pieces: string[];
  private readonly scores: Float32Array;
  private readonly types: Uint8Array;
  /** Pieces that text can produce (normal and user-defined), by string. Control, unknown and byte pieces are excluded. */
  private readonly textIds = new Map<string, number>();
  /** Byte value → id of its <0xNN> piece, or -1. */
  private readonly byteIds = new Int32Array(256).fill(-1);
  /** id → byte value for byte pieces, or -1. */
  private readonly byteOf: Int16Array;
  private readonly unkId: number;
  private readonly utf8 = new TextEncoder();

  constructor(
    kind: string,
    pieces: string[],
    scores: ArrayLike<number>,
    types?: ArrayLike<number>,
    bosId: number | null = null,
    eosId: number | null = null,
    source: string = kind,
  ) {
    const fail = (problem: string): never => {
      throw new UserError(`${source}: ${problem}`);
    };
    const V = pieces.length;
    if (V === 0) fail('tokenizer vocabulary is empty');
    if (scores.length !== V) fail(`tokenizer has ${V} pieces but ${scores.length} scores`);
    // A NaN score compares false with everything, so merges would silently depend on heap order: refuse it.
    for (let id = 0; id < V; id++) if (Number.isNaN(scores[id])) fail(`score of token ${id} is NaN`);
    if (types && types.length !== V) fail(`tokenizer has ${V} pieces but ${types.length} token types`);
    for (const [name, id] of [['BOS', bosId], ['EOS', eosId]] as const) {
      if (id !== null && !(Number.isInteger(id) && id >= 0 && id < V)) fail(`${name} id ${id} is outside the vocabulary (${V} tokens)`);
    }
    this.kind = kind;
    this.source = source;
    this.vocabSize = V;
    this.bosId = bosId;
    this.eosId = eosId;
    this.pieces = pieces;
    this.scores = Float32Array.from(scores);
    this.types = types ? Uint8Array.from(types) : inferTypes(pieces, bosId, eosId);
    this.byteOf = new Int16Array(V).fill(-1);
    let unk = -1;
    for (let id = 0; id < V; id++) {
      const p = pieces[id]!;
      const t = this.types[id]!;
      if (t === TokenType.BYTE) {
        const m = BYTE_PIECE.exec(p);
        if (!m) fail(`token ${id} is typed as a byte token but its piece is ${JSON.stringify(p)}`);
        const b = parseInt(m![1]!, 16);
        this.byteOf[id] = b;
        if (this.byteIds[b] === -1) this.byteIds[b] = id;
      } else if (t === TokenType.NORMAL || t === TokenType.USER_DEFINED) {
        // On duplicate pieces the lowest id wins, as in SentencePiece's own lookup.
        if (!this.textIds.has(p)) this.textIds.set(p, id);
      } else if (t === TokenType.UNKNOWN && unk === -1) {
        unk = id;
      }
    }
    this.unkId = unk;
  }

  encode(text: string, opts: { bos?: boolean } = {}): number[] {
    checkEncodeLength(this.source, text);
    const ids: number[] = [];
    if (opts.bos && this.bosId !== null) ids.push(this.bosId);
    if (text === '') return ids; // no dummy prefix for empty text, as in llama2.c and SentencePiece
    const normalized = SPACE_MARK + text.replaceAll(' ', SPACE_MARK);
    const symbols = this.initialSymbols(normalized);
    for (const id of this.merge(symbols)) ids.push(id);
    return ids;
  }

  /** One id per code point that is a piece; otherwise one byte-fallback id per UTF-8 byte (or <unk>). */
  private initialSymbols(text: string): number[] {
    const out: number[] = [];
    for (const ch of text) {
      const id = this.textIds.get(ch);
      if (id !== undefined) {
        out.push(id);
        continue;
      }
      for (const b of this.utf8.encode(ch)) {
        const byteId = this.byteIds[b]!;
        if (byteId >= 0) out.push(byteId);
        else if (this.unkId >= 0) out.push(this.unkId);
        else throw new UserError(`${this.source}: cannot encode ${JSON.stringify(ch)}: no piece, byte token or <unk> for it`);
      }
    }
    return out;
  }

  /**
   * BPE merges with a max-heap of candidate pairs instead of llama2.c's rescan per merge (O(n log n), not O(n²)).
   * Same result: the heap orders by score, then by the left symbol's position, which is what "first best pair in a
   * left-to-right scan" means. Stale entries (a side already merged into something else) are skipped when popped.
   */
  private merge(initial: number[]): number[] {
    const n = initial.length;
    const id = Int32Array.from(initial);
    const text = initial.map((i) => this.pieces[i]!);
    const prev = new Int32Array(n);
    const next = new Int32Array(n);
    const alive = new Uint8Array(n).fill(1);
    for (let i = 0; i < n; i++) {
      prev[i] = i - 1;
      next[i] = i + 1 < n ? i + 1 : -1;
    }
    const heap = new PairHeap();
    const consider = (left: number): void => {
      const right = next[left]!;
      if (left < 0 || right < 0) return;
      const joined = text[left]! + text[right]!;
      const merged = this.textIds.get(joined);
      if (merged !== undefined) heap.push({ score: this.scores[merged]!, left, right, joined, merged });
    };
    for (let i = 0; i + 1 < n; i++) consider(i);

    for (let top = heap.pop(); top; top = heap.pop()) {
      const { left, right } = top;
      // Stale if either side is gone, they are no longer neighbours, or either grew since the entry was made.
      if (!alive[left] || !alive[right] || next[left] !== right || text[left]! + text[right]! !== top.joined) continue;
      id[left] = top.merged;
      text[left] = top.joined;
      alive[right] = 0;
      next[left] = next[right]!;
      if (next[left]! >= 0) prev[next[left]!] = left;
      if (prev[left]! >= 0) consider(prev[left]!);
      consider(left);
    }
    const out: number[] = [];
    for (let i = n > 0 ? 0 : -1; i >= 0; i = next[i]!) out.push(id[i]!);
    return out;
  }

  decode(ids: number[]): string {
    const parts: string[] = [];
    let bytes: number[] = [];
    // Byte pieces of one character arrive as several tokens: collect them, then decode together.
    const flush = (): void => {
      if (bytes.length) parts.push(new TextDecoder().decode(Uint8Array.from(bytes)));
      bytes = [];
    };
    for (const tokenId of ids) {
      this.checkId(tokenId);
      const type = this.types[tokenId]!;
      if (type === TokenType.CONTROL || type === TokenType.UNUSED) continue; // BOS/EOS are not text
      const b = this.byteOf[tokenId]!;
      if (b >= 0) {
        bytes.push(b);
        continue;
      }
      flush();
      // SentencePiece renders <unk> as " ⁇ ".
      parts.push(type === TokenType.UNKNOWN ? ' \u2047 ' : this.pieces[tokenId]!.replaceAll(SPACE_MARK, ' '));
    }
    flush();
    const out = parts.join('');
    // Exactly one leading space is the dummy prefix added by encode; any further spaces were in the text.
    return out.startsWith(' ') ? out.slice(1) : out;
  }

  piece(tokenId: number): string {
    this.checkId(tokenId);
    return this.pieces[tokenId]!.replaceAll(SPACE_MARK, ' ');
  }

  /** The raw piece (with '▁'), score and type, for inspection and tests. */
  info(tokenId: number): { piece: string; score: number; type: number } {
    this.checkId(tokenId);
    return { piece: this.pieces[tokenId]!, score: this.scores[tokenId]!, type: this.types[tokenId]! };
  }

  private checkId(tokenId: number): void {
    if (!Number.isInteger(tokenId) || tokenId < 0 || tokenId >= this.vocabSize) {
      throw new UserError(`${this.source}: token id ${tokenId} is outside the vocabulary (0..${this.vocabSize - 1})`);
    }
  }
}

/** Token types for vocabularies that do not store them (tokenizer.bin): byte pieces, <unk>, BOS/EOS, the rest normal. */
function inferTypes(pieces: string[], bosId: number | null, eosId: number | null): Uint8Array {
  return Uint8Array.from(pieces, (p, id) => {
    if (id === bosId || id === eosId) return TokenType.CONTROL;
    if (p === '<unk>') return TokenType.UNKNOWN;
    if (BYTE_PIECE.test(p)) return TokenType.BYTE;
    return TokenType.NORMAL;
  });
}

interface PairEntry {
  score: number;
  left: number;
  right: number;
  joined: string;
  merged: number;
}

/** Binary max-heap on (score desc, left asc). */
class PairHeap {
  private items: PairEntry[] = [];

  push(e: PairEntry): void {
    const a = this.items;
    a.push(e);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(a[i]!, a[p]!)) break;
      [a[i], a[p]] = [a[p]!, a[i]!];
      i = p;
    }
  }

  pop(): PairEntry | undefined {
    const a = this.items;
    if (a.length === 0) return undefined;
    const top = a[0]!;
    const last = a.pop()!;
    if (a.length > 0) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let best = i;
        if (l < a.length && before(a[l]!, a[best]!)) best = l;
        if (r < a.length && before(a[r]!, a[best]!)) best = r;
        if (best === i) break;
        [a[i], a[best]] = [a[best]!, a[i]!];
        i = best;
      }
    }
    return top;
  }
}

function before(x: PairEntry, y: PairEntry): boolean {
  return x.score > y.score || (x.score === y.score && x.left < y.left);
}

// ---------------------------------------------------------------------------------------------------------------
// From GGUF metadata

export function tokenizerFromGguf(file: GgufFile): SentencePieceTokenizer {
  const m = file.metadata;
  const fail = (problem: string): never => {
    throw new UserError(`${file.path}: ${problem}`);
  };
  const model = m.get('tokenizer.ggml.model');
  if (model !== 'llama') {
    fail(`tokenizer.ggml.model is ${JSON.stringify(model ?? null)}; only "llama" (SentencePiece) vocabularies are supported`);
  }
  const tokens = m.get('tokenizer.ggml.tokens');
  if (!Array.isArray(tokens) || tokens.length === 0 || !tokens.every((t) => typeof t === 'string')) {
    fail('tokenizer.ggml.tokens is missing or not an array of strings');
  }
  const pieces = tokens as string[];
  const scores = numberArray(m.get('tokenizer.ggml.scores'), 'tokenizer.ggml.scores', fail) ?? new Float32Array(pieces.length);
  const types = numberArray(m.get('tokenizer.ggml.token_type'), 'tokenizer.ggml.token_type', fail);
  // llama.cpp's defaults for SentencePiece vocabularies when the ids are not stored.
  const bos = optionalId(m.get('tokenizer.ggml.bos_token_id'), 1, pieces.length);
  const eos = optionalId(m.get('tokenizer.ggml.eos_token_id'), 2, pieces.length);
  return new SentencePieceTokenizer('sentencepiece-gguf', pieces, scores, types, bos, eos, file.path);
}

/** A numeric metadata array, as a plain array or a typed array (the GGUF reader may return either). */
function numberArray(v: unknown, key: string, fail: (p: string) => never): ArrayLike<number> | undefined {
  if (v === undefined) return undefined;
  if (ArrayBuffer.isView(v) && !(v instanceof DataView) && !(v instanceof BigInt64Array) && !(v instanceof BigUint64Array)) {
    return v as unknown as ArrayLike<number>;
  }
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'number')) fail(`${key} is not an array of numbers`);
  return v as number[];
}

function optionalId(v: unknown, fallback: number, vocabSize: number): number | null {
  if (typeof v === 'number') return v;
  return fallback < vocabSize ? fallback : null;
}
