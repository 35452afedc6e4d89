// tokenizer.json (Hugging Face) support: a GPT-2 tokenizer.json built at run time from OpenAI's encoder.json + vocab.bpe,
// checked against known ids, an independent reference BPE, round trips and error messages.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { UserError } from '../src/errors.js';
import { gpt2TokenizerJson } from '../src/tokenizers/gpt2-json.js';
import { readTokenizerJson } from '../src/tokenizers/hf.js';
import { modelPath } from './helpers.js';

const encoderJson = modelPath('gpt2-tokenizer/encoder.json');
const vocabBpe = modelPath('gpt2-tokenizer/vocab.bpe');

const dir = mkdtempSync(path.join(tmpdir(), 'llmf-hf-tok-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const built = gpt2TokenizerJson(encoderJson, vocabBpe);
const tokPath = path.join(dir, 'tokenizer.json');
writeFileSync(tokPath, JSON.stringify(built));
const tok = readTokenizerJson(tokPath);

/** Writes `content` to a file in the temp folder and returns its path. */
function tempFile(name: string, content: string): string {
  const p = path.join(dir, name);
  writeFileSync(p, content);
  return p;
}

/** Asserts that `fn` throws a one-line UserError whose message starts with `file` and matches `re`. */
function assertUserError(fn: () => unknown, file: string, re: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof UserError, `expected UserError, got ${String(e)}`);
    assert.ok(e.message.startsWith(`${file}: `), e.message);
    assert.match(e.message, re);
    assert.ok(!e.message.includes('\n'), `message is one line: ${JSON.stringify(e.message)}`);
    return true;
  });
}

// ---- An independent GPT-2 BPE, after OpenAI's encoder.py, to check the library's merges against. ----

const encoder: Record<string, number> = JSON.parse(readFileSync(encoderJson, 'utf8'));
const ranks = new Map<string, number>();
readFileSync(vocabBpe, 'utf8')
  .split('\n')
  .slice(1)
  .filter((l) => l !== '')
  .forEach((l, i) => ranks.set(l, i));
const byteChar: string[] = [];
{
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    byteChar[b] = String.fromCharCode(printable ? b : 256 + n++);
  }
}
const GPT2_PATTERN = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

function referenceBpe(word: string[]): string[] {
  for (;;) {
    let best = -1;
    let bestRank = Infinity;
    for (let i = 0; i + 1 < word.length; i++) {
      const r = ranks.get(`${word[i]} ${word[i + 1]}`);
      if (r !== undefined && r < bestRank) [best, bestRank] = [i, r];
    }
    if (best < 0) return word;
    const [a, b] = [word[best]!, word[best + 1]!];
    const merged: string[] = [];
    for (let i = 0; i < word.length; ) {
      if (i + 1 < word.length && word[i] === a && word[i + 1] === b) {
        merged.push(a + b);
        i += 2;
      } else merged.push(word[i++]!);
    }
    word = merged;
  }
}

function referenceEncode(text: string): number[] {
  const ids: number[] = [];
  for (const m of text.match(GPT2_PATTERN) ?? []) {
    const chars = [...new TextEncoder().encode(m)].map((b) => byteChar[b]!);
    for (const t of referenceBpe(chars)) ids.push(encoder[t]!);
  }
  return ids;
}

// ---- Tests ----

const TRICKY = [
  '',
  ' ',
  '   ',
  ' leading space',
  '  two leading spaces',
  'trailing space ',
  'multiple   spaces  inside',
  'line\nbreaks\n\nand\r\nCRLF\n',
  '\n',
  '\n\n\n',
  '\ttabs\tand\tmore\t',
  '"double" \'single\' `back` «guillemets» “curly” ‘quotes’',
  "Lily's mom",
  'Lily\'s mom said, "Lily, let\'s go to the park!"',
  "we'll they're I'm you've he'd don't",
  'emoji 🎉👩‍👩‍👧 and flags 🇫🇷',
  '中文字符和日本語のテキスト',
  '한국어 텍스트',
  'accents: café naïve Ångström résumé',
  'combining: e\u0301 a\u0308',
  'hair\u200aspace and nbsp\u00a0here',
  'numbers 1234567890 3.14159 -42',
  'code: if (x) { return y[0]; } // done',
  'x',
];

test('GPT-2 tokenizer.json: metadata', () => {
  assert.equal(tok.kind, 'tokenizer.json');
  assert.equal(tok.vocabSize, 50257);
  assert.equal(tok.bosId, 50256);
  assert.equal(tok.eosId, 50256);
});

test('GPT-2 tokenizer.json: known ids', () => {
  assert.deepEqual(tok.encode('Hello world'), [15496, 995]);
  assert.deepEqual(tok.encode('Hello world', { bos: true }), [50256, 15496, 995]);
  assert.deepEqual(tok.encode('Hello world', { bos: false }), [15496, 995]);
  assert.deepEqual(tok.encode(''), []);
  assert.deepEqual(tok.encode('', { bos: true }), [50256]);
  // The special token is matched in text, as Hugging Face does, and dropped again by decode.
  assert.deepEqual(tok.encode('<|endoftext|>'), [50256]);
  assert.equal(tok.decode([50256, 15496, 995, 50256]), 'Hello world');
});

test('GPT-2 tokenizer.json: ids agree with a reference BPE', () => {
  const corpus = [...TRICKY, 'Once upon a time, there was a little girl named Lily. She loved to play outside in the park.'];
  for (const text of corpus) assert.deepEqual(tok.encode(text), referenceEncode(text), JSON.stringify(text));
});

test('GPT-2 tokenizer.json: decode(encode(x)) === x', () => {
  for (const text of TRICKY) {
    const ids = tok.encode(text);
    assert.equal(tok.decode(ids), text, JSON.stringify(text));
    assert.equal(tok.decode(tok.encode(text, { bos: true })), text, `with BOS: ${JSON.stringify(text)}`);
  }
});

test('GPT-2 tokenizer.json: pieces', () => {
  assert.equal(tok.piece(15496), 'Hello');
  assert.equal(tok.piece(995), ' world');
  assert.equal(tok.piece(50256), '<|endoftext|>');
  assert.equal(tok.piece(198), '\n');
  // Pieces concatenate to the text when every piece is whole characters.
  const ids = tok.encode("Lily's mom said, \"hi\"");
  assert.equal(ids.map((id) => tok.piece(id)).join(''), "Lily's mom said, \"hi\"");
  // A piece holding only part of a character shows the odd bytes as <0xNN>.
  const partial = encoder['\u00f0\u0141']; // bytes F0 9F: the start of many emoji
  assert.ok(partial !== undefined);
  assert.equal(tok.piece(partial), '<0xF0><0x9F>');
  const mixed = encoder['\u0120\u00f0\u0141']; // " " + F0 9F
  if (mixed !== undefined) assert.equal(tok.piece(mixed), ' <0xF0><0x9F>');
});

test('GPT-2 tokenizer.json: bad ids', () => {
  for (const bad of [-1, 50257, 1.5, NaN]) {
    assertUserError(() => tok.decode([bad]), tokPath, /token id .* is outside the vocabulary \(0\.\.50256\)/);
    assertUserError(() => tok.piece(bad), tokPath, /outside the vocabulary/);
  }
  assert.equal(tok.decode([]), '');
});

test('tokenizer.json errors: missing file, corrupt JSON, not a tokenizer, unsupported model', () => {
  const missing = path.join(dir, 'nope', 'tokenizer.json');
  assertUserError(() => readTokenizerJson(missing), missing, /no such file/);
  assertUserError(() => readTokenizerJson(dir), dir, /is a directory/);

  const text = readFileSync(tokPath, 'utf8');
  const truncated = tempFile('truncated.json', text.slice(0, 1000));
  assertUserError(() => readTokenizerJson(truncated), truncated, /invalid JSON/);
  const garbage = tempFile('garbage.json', '{"model": {"type": "BPE",, }');
  assertUserError(() => readTokenizerJson(garbage), garbage, /invalid JSON/);
  const empty = tempFile('empty.json', '');
  assertUserError(() => readTokenizerJson(empty), empty, /invalid JSON/);

  const array = tempFile('array.json', '[1, 2, 3]');
  assertUserError(() => readTokenizerJson(array), array, /not a tokenizer\.json: expected a JSON object/);
  const noModel = tempFile('no-model.json', '{"version": "1.0"}');
  assertUserError(() => readTokenizerJson(noModel), noModel, /no "model" object/);
  const wordLevel = tempFile('wordlevel.json', JSON.stringify({ model: { type: 'WordLevel', vocab: { a: 0 }, unk_token: 'a' } }));
  assertUserError(() => readTokenizerJson(wordLevel), wordLevel, /unsupported model type "WordLevel" \(supported: BPE, WordPiece, Unigram\)/);
  const badPre = tempFile('bad-pre.json', JSON.stringify({ ...built, pre_tokenizer: { type: 'NoSuchPreTokenizer' } }));
  assertUserError(() => readTokenizerJson(badPre), badPre, /unsupported or malformed tokenizer\.json: .*NoSuchPreTokenizer/);
});

test('gpt2TokenizerJson errors', () => {
  const missing = path.join(dir, 'encoder-missing.json');
  assertUserError(() => gpt2TokenizerJson(missing, vocabBpe), missing, /no such file/);
  const corrupt = tempFile('encoder-corrupt.json', '{"a": 0,');
  assertUserError(() => gpt2TokenizerJson(corrupt, vocabBpe), corrupt, /invalid JSON/);
  const small = tempFile('encoder-small.json', JSON.stringify({ a: 0, b: 1 }));
  assertUserError(() => gpt2TokenizerJson(small, vocabBpe), vocabBpe, /not in the vocabulary/);
});

test('tokenizer.json BOS detection: template post-processor and well-known names', () => {
  const vocab = { '<s>': 0, '</s>': 1, a: 2, b: 3, ab: 4 };
  const base = {
    added_tokens: [
      { id: 0, content: '<s>', special: true },
      { id: 1, content: '</s>', special: true },
    ],
    model: { type: 'BPE', vocab, merges: ['a b'] },
  };
  const plain = readTokenizerJson(tempFile('names.json', JSON.stringify(base)));
  assert.equal(plain.bosId, 0);
  assert.equal(plain.eosId, 1);
  assert.deepEqual(plain.encode('ab', { bos: true }), [0, 4]);
  assert.deepEqual(plain.encode('ab'), [4]);
  assert.equal(plain.decode([0, 4, 1]), 'ab');

  const template = {
    ...base,
    added_tokens: [...base.added_tokens, { id: 5, content: '<|begin_of_text|>', special: true }],
    model: { ...base.model, vocab: { ...vocab, '<|begin_of_text|>': 5 } },
    post_processor: {
      type: 'Sequence',
      processors: [
        { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
        {
          type: 'TemplateProcessing',
          single: [{ SpecialToken: { id: '<|begin_of_text|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
          pair: [],
          special_tokens: { '<|begin_of_text|>': { id: '<|begin_of_text|>', ids: [5], tokens: ['<|begin_of_text|>'] } },
        },
      ],
    },
  };
  const templ = readTokenizerJson(tempFile('template.json', JSON.stringify(template)));
  assert.equal(templ.bosId, 5);
  // The post-processor's BOS is added only when asked.
  assert.deepEqual(templ.encode('ab'), [4]);
  assert.deepEqual(templ.encode('ab', { bos: true }), [5, 4]);
});
