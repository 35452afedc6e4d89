// SentencePiece tokenizers: GGUF metadata vs llama2.c tokenizer.bin, round trips, and the Llama 2 vocabulary.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { readGguf } from '../src/formats/gguf.js';
import { readLlama2cTokenizer } from '../src/tokenizers/llama2c.js';
import { SentencePieceTokenizer, tokenizerFromGguf } from '../src/tokenizers/sentencepiece.js';
import { modelPath } from './helpers.js';

const fromGguf = tokenizerFromGguf(readGguf(modelPath('stories260K.gguf')));
const fromBin = readLlama2cTokenizer(modelPath('tok512.bin'), 512);
const llama2 = readLlama2cTokenizer(modelPath('llama2-tokenizer/tokenizer.bin'));

const TEXTS = [
  'Once upon a time, there was a little girl named Lily.',
  'Lily\'s mom said, "Lily, let\'s go to the park!"',
  'The quick brown fox jumps over the lazy dog. 1234567890',
  'She was happy.\nThe end.',
];

const TRICKY = [
  '',
  ' ',
  '   ',
  ' leading space',
  'trailing space ',
  'multiple   spaces  inside',
  'line\nbreaks\n\nand\r\nCRLF\n',
  '\ttabs\tand\tmore\t',
  '"double" \'single\' `back` «guillemets» “curly”',
  'emoji 🎉👩‍👩‍👧 and flags 🇫🇷',
  '中文字符和日本語のテキスト',
  'accents: café naïve Ångström résumé',
  'combining: e\u0301 a\u0308',
  'hair\u200aspace and nbsp\u00a0here',
  '\n',
  'x',
];

test('GGUF vocabulary and tok512.bin agree piece by piece', () => {
  assert.equal(fromGguf.vocabSize, 512);
  assert.equal(fromBin.vocabSize, 512);
  for (let id = 0; id < 512; id++) assert.deepEqual(fromGguf.info(id), fromBin.info(id), `token ${id}`);
  assert.equal(fromGguf.bosId, 1);
  assert.equal(fromGguf.eosId, 2);
  assert.equal(fromBin.bosId, 1);
  assert.equal(fromBin.eosId, 2);
});

test('GGUF vocabulary and tok512.bin give identical ids', () => {
  for (const text of [...TEXTS, ...TRICKY]) {
    assert.deepEqual(fromGguf.encode(text), fromBin.encode(text), JSON.stringify(text));
  }
});

test('encoding matches a direct port of llama2.c encode() on tok512.bin', () => {
  const ref = llama2cReference(modelPath('tok512.bin'));
  for (const text of [...TEXTS, ...TRICKY]) assert.deepEqual(fromBin.encode(text), ref(text), JSON.stringify(text));
});

test('decode(encode(x)) === x for tricky strings', () => {
  for (const tok of [fromGguf, fromBin, llama2]) {
    for (const text of [...TEXTS, ...TRICKY]) {
      assert.equal(tok.decode(tok.encode(text)), text, `${tok.kind}: ${JSON.stringify(text)}`);
      assert.equal(tok.decode(tok.encode(text, { bos: true })), text, `${tok.kind} with BOS: ${JSON.stringify(text)}`);
    }
  }
});

test('BOS only when asked; empty text is no tokens; control tokens decode to nothing', () => {
  assert.deepEqual(fromGguf.encode(''), []);
  assert.deepEqual(fromGguf.encode('', { bos: true }), [1]);
  const ids = fromGguf.encode('Lily', { bos: true });
  assert.equal(ids[0], 1);
  assert.deepEqual(ids.slice(1), fromGguf.encode('Lily'));
  assert.equal(fromGguf.decode([1, ...fromGguf.encode('Lily'), 2]), 'Lily');
});

test('byte fallback: characters outside the vocabulary become <0xNN> pieces', () => {
  const ids = fromGguf.encode('🎉'); // F0 9F 8E 89, none of them in tok512 as text
  assert.deepEqual(ids.slice(-4).map((id) => fromGguf.piece(id)), ['<0xF0>', '<0x9F>', '<0x8E>', '<0x89>']);
  assert.equal(fromGguf.piece(13), '<0x0A>');
});

test('piece() shows the SentencePiece space mark as a space', () => {
  assert.equal(fromGguf.piece(259), ' t');
  assert.equal(fromBin.piece(259), ' t');
  assert.equal(fromGguf.piece(1), '<s>');
  assert.equal(llama2.piece(15043), ' Hello');
  assert.throws(() => fromGguf.piece(512), /outside the vocabulary/);
});

test('Llama 2 tokenizer.bin: 32000 tokens, "Hello world" → [15043, 3186]', () => {
  assert.equal(llama2.vocabSize, 32000);
  assert.deepEqual(llama2.encode('Hello world'), [15043, 3186]);
  assert.deepEqual(llama2.encode('Hello world', { bos: true }), [1, 15043, 3186]);
  // A piece holding only U+FEFF must survive reading (a default TextDecoder strips a leading byte-order mark).
  assert.equal(llama2.piece(30143), '\uFEFF');
  assert.equal(llama2.decode([1, 15043, 3186, 2]), 'Hello world');
});

test('a long text encodes in reasonable time and round-trips', () => {
  const text = TEXTS.join(' ').repeat(200);
  const t0 = performance.now();
  const ids = llama2.encode(text);
  assert.ok(performance.now() - t0 < 5000);
  assert.equal(llama2.decode(ids), text);
});

test('constructor rejects inconsistent vocabularies', () => {
  assert.throws(() => new SentencePieceTokenizer('t', ['a', 'b'], [0], undefined, null, null, 'vocab.x'), /^UserError: vocab\.x: .*2 pieces but 1 scores/);
  assert.throws(() => new SentencePieceTokenizer('t', ['a'], [0], undefined, 5, null, 'vocab.x'), /BOS id 5 is outside/);
});

/**
 * llama2.c's run.c encode(), ported literally: vocabulary strings as stored in tokenizer.bin (spaces as ' '), a
 * dummy ' ' prefix, code-point lookup with byte fallback id = byte + 3, then rescan for the best pair each round.
 */
function llama2cReference(path: string): (text: string) => number[] {
  const buf = readFileSync(path);
  const vocab: string[] = [];
  const scores: number[] = [];
  for (let o = 4; o < buf.length; ) {
    scores.push(buf.readFloatLE(o));
    const len = buf.readInt32LE(o + 4);
    vocab.push(buf.toString('utf8', o + 8, o + 8 + len));
    o += 8 + len;
  }
  const lookup = new Map<string, number>();
  vocab.forEach((p, i) => {
    if (!lookup.has(p)) lookup.set(p, i);
  });
  return (text) => {
    if (text === '') return [];
    const tokens: number[] = [lookup.get(' ')!];
    for (const ch of text) {
      const id = lookup.get(ch);
      if (id !== undefined) tokens.push(id);
      else for (const b of Buffer.from(ch, 'utf8')) tokens.push(b + 3);
    }
    for (;;) {
      let best = -1e10;
      let bestId = -1;
      let bestIdx = -1;
      for (let i = 0; i + 1 < tokens.length; i++) {
        const id = lookup.get(vocab[tokens[i]!]! + vocab[tokens[i + 1]!]!);
        if (id !== undefined && scores[id]! > best) {
          best = scores[id]!;
          bestId = id;
          bestIdx = i;
        }
      }
      if (bestIdx === -1) break;
      tokens.splice(bestIdx, 2, bestId);
    }
    return tokens;
  };
}
