/** Typed, checked access to config.json values, shared by every family's spec and the HF reader. */
import { readSmallText } from '../formats/files.js';
import { UserError } from '../errors.js';

/** Typed access to config.json values; `null` counts as absent (GPT-2 writes "n_inner": null). */
export class ConfigReader {
  constructor(
    private readonly file: string,
    private readonly json: Record<string, unknown>,
    private readonly prefix = '',
  ) {}

  private get(key: string, fallback: unknown): unknown {
    const v = this.json[key];
    if (v != null) return v;
    if (fallback === undefined) throw new UserError(`${this.file}: ${this.prefix}${key} is missing`);
    return fallback;
  }

  int(key: string, fallback?: number): number {
    const v = this.get(key, fallback);
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
      throw new UserError(`${this.file}: ${this.prefix}${key} must be a positive integer, got ${JSON.stringify(v)}`);
    }
    return v;
  }

  positive(key: string, fallback?: number): number {
    const v = this.get(key, fallback);
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      throw new UserError(`${this.file}: ${this.prefix}${key} must be a positive number, got ${JSON.stringify(v)}`);
    }
    return v;
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.get(key, fallback);
    if (typeof v !== 'boolean') throw new UserError(`${this.file}: ${this.prefix}${key} must be true or false, got ${JSON.stringify(v)}`);
    return v;
  }

  string(key: string, fallback: string): string {
    const v = this.get(key, fallback);
    if (typeof v !== 'string') throw new UserError(`${this.file}: ${this.prefix}${key} must be a string, got ${JSON.stringify(v)}`);
    return v;
  }

  divide(aKey: string, a: number, bKey: string, b: number): number {
    if (a % b !== 0) throw new UserError(`${this.file}: ${aKey} ${a} is not divisible by ${bKey} ${b}`);
    return a / b;
  }
}

export function readJsonObject(file: string, why?: string): Record<string, unknown> {
  let text: string;
  try {
    text = readSmallText(file, 'JSON file');
  } catch (e) {
    if (!(e instanceof UserError)) throw e;
    throw new UserError(`${e.message}${why ? `; ${why}` : ''}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new UserError(`${file}: not valid JSON (${String((e as Error).message).replace(/\s+/g, ' ')})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new UserError(`${file}: not a JSON object`);
  return json as Record<string, unknown>;
}
