/**
 * llama2.c's tokenizer.bin: i32 max_token_length, then per token f32 score, i32 byte length, UTF-8 bytes.
 *
 * The file is written by llama2.c's tokenizer.py, which stores spaces as ' ' instead of SentencePiece's '▁', BOS and
 * EOS as "\n<s>\n" and "\n</s>\n", and byte-fallback pieces as the literal strings "<0x0A>" etc. We normalise to
 * SentencePiece spelling so that a tokenizer.bin and the GGUF of the same vocabulary behave identically.
 */
import { BinaryReader } from '../formats/binary.js';
import { SentencePieceTokenizer } from './sentencepiece.js';

const BOS_ID = 1;
const EOS_ID = 2;
/** A token record is at least a 4-byte score and a 4-byte length. */
const MIN_TOKEN_BYTES = 8;

/**
 * Reads a tokenizer.bin. With `vocabSize` (the model's), exactly that many tokens must be present and nothing after
 * them: a longer file is the wrong tokenizer for the model. Without it, tokens are read until the end of the file.
 */
export function readLlama2cTokenizer(path: string, vocabSize?: number): SentencePieceTokenizer {
  const r = BinaryReader.open(path);
  try {
    const { pieces, scores } = parse(r, vocabSize);
    return new SentencePieceTokenizer('llama2c-tokenizer.bin', pieces, scores, undefined, BOS_ID, EOS_ID, path);
  } finally {
    r.close();
  }
}

function parse(r: BinaryReader, vocabSize: number | undefined): { pieces: string[]; scores: number[] } {
  if (r.size === 0) throw r.error('empty file, expected a llama2.c tokenizer.bin');
  const maxLen = r.i32('max_token_length');
  if (maxLen <= 0 || maxLen > 1 << 16) {
    throw r.error(`max_token_length is ${maxLen}; not a llama2.c tokenizer.bin?`);
  }
  if (vocabSize !== undefined) r.checkCount(vocabSize, MIN_TOKEN_BYTES, 'vocabulary size');
  const pieces: string[] = [];
  const scores: number[] = [];
  while (vocabSize === undefined ? r.remaining() > 0 : pieces.length < vocabSize) {
    const i = pieces.length;
    scores.push(r.f32(`score of token ${i}`));
    const len = r.i32(`length of token ${i}`);
    if (len < 0) throw r.error(`token ${i} has negative length ${len}`);
    pieces.push(normalise(r.utf8(len, `token ${i}`), i));
  }
  if (r.remaining() > 0) {
    throw r.error(`has data after token ${vocabSize! - 1}: more tokens than the model's vocabulary of ${vocabSize}; wrong tokenizer for this model?`);
  }
  if (pieces.length <= EOS_ID) throw r.error(`only ${pieces.length} tokens; a SentencePiece vocabulary has at least <unk>, <s>, </s>`);
  return { pieces, scores };
}

/** tokenizer.py spelling → SentencePiece spelling. */
function normalise(piece: string, id: number): string {
  if (id === BOS_ID && piece === '\n<s>\n') return '<s>';
  if (id === EOS_ID && piece === '\n</s>\n') return '</s>';
  return piece.replaceAll(' ', '\u2581');
}
