/** How a tensor is stored on disk. Only F32 can be memory-mapped straight into the engine; the rest are converted. */
export type StoredDType = 'F32' | 'F16' | 'BF16' | 'Q8_0' | 'F64' | 'I32' | 'I64';

/**
 * One tensor inside a checkpoint file, located but not read. Every field has been checked against the file's size
 * by the reader that produced it, so `offset + nbytes <= file size` always holds.
 */
export interface StoredTensor {
  /** Name as the checkpoint spells it (GGUF names for GGUF and llama2.c; the HF name for safetensors). */
  name: string;
  /** Row-major shape, outermost dimension first (GGUF's innermost-first `ne` is already reversed). */
  shape: number[];
  dtype: StoredDType;
  /** Absolute path of the file holding the bytes. */
  file: string;
  /** Absolute byte offset of the first element in `file`. */
  offset: number;
  nbytes: number;
}
