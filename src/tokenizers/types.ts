/** The one interface every tokenizer implements: SentencePiece-style vocabularies (GGUF, tokenizer.bin) and tokenizer.json. */
export interface Tokenizer {
  /** e.g. "sentencepiece-gguf", "llama2c-tokenizer.bin", "tokenizer.json". */
  readonly kind: string;
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosId: number | null;
  /** Text → ids, without BOS unless asked. */
  encode(text: string, opts?: { bos?: boolean }): number[];
  /** Ids → text as a reader sees it (leading dummy-prefix space of the first piece removed, byte tokens joined into UTF-8). */
  decode(ids: number[]): string;
  /** One token as a string for display (its piece, with '▁' shown as a space and byte tokens as "<0xNN>"). */
  piece(id: number): string;
}
