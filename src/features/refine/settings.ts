/** Refinement settings: the method, search sizes, token filters. Defaults and bounds live in the settings table. */
import { paramError } from '../../errors.js';
import { checkSettings, settingsRecord } from '../settings.js';
import { fluencyWeights } from './epo.js';
import { REFINE_METHODS, type RefineMethod } from './methods.js';
export { REFINE_METHODS, type RefineMethod } from './methods.js';

export interface TokenFilterSpec {
  /** Token ids never proposed. */
  ban: number[];
  /** Only tokens whose piece is printable text: no control, special or byte-fallback tokens, no control characters. */
  printable: boolean;
  /** Only printable tokens whose piece is ASCII (U+0020–U+007E). */
  ascii: boolean;
}

export interface RefineSettings {
  method: RefineMethod;
  /** Steps (each: one gradient, one batch of candidates). */
  steps: number;
  /** Candidates evaluated per step (EPO: in total, shared among the population). */
  candidates: number;
  /** Swaps considered per position: the top-k tokens of the linearised score. */
  swapTopk: number;
  /** GCG: climbs from this many starts — the decode's first rows (row i = the i-th ranked token at every position) —
   *  keeping the best. A single climb ends in a local optimum of its start; the runner-up rows are nearby, different
   *  starts for the cost of one more climb each. */
  starts: number;
  /** EPO: population size. */
  population: number;
  /** EPO: fluency weights λ. Two values: log-spaced from the first to the second over the population; one value: all
   *  members share it; `population` values: one each. */
  fluency: number[];
  /** EPO: restart each member from the best prompt for its λ every this many steps (0: never). */
  restartEvery: number;
  filter: TokenFilterSpec;
  /** Reject candidates whose text does not encode back to the same ids. */
  retokenize: boolean;
  seed: number;
}


/** The defaults of the settings table (gcg), for library callers that build their own settings. */
export { DEFAULT_REFINE } from '../settings.js';

/** Settings as stored with a result: the record's `refine` object, as the settings table writes it. */
export function refineRecord(r: RefineSettings): Record<string, unknown> {
  return settingsRecord({ refine: r }).refine as Record<string, unknown>;
}

/** Check settings a library caller built: bounds from the settings table, and the fluency weights' shape. */
export function checkRefineSettings(s: RefineSettings): void {
  if (!(REFINE_METHODS as readonly string[]).includes(s.method)) throw paramError('refine', `"${s.method}" is not one of ${REFINE_METHODS.join(', ')}`);
  checkSettings('visualize', { refine: s });
  if (s.method === 'epo') fluencyWeights(s.fluency, s.population);
}
