/**
 * Verdicts: what a run's numbers mean, as a list of findings with fixed, documented thresholds. `status` only says
 * whether the run completed; the verdict says whether its result is worth anything.
 *
 *   decoded-high          the decoded tokens' activation is ≥ p99 of real windows (percentile ≥ 99)
 *   decoded-typical       the decoded tokens' activation is below p90 of real windows: nothing unusual for real text
 *   decoded-below-random  the decoded tokens score below the mean of random token sequences
 *   continuous-beyond-real the continuous optimum is above every real window (percentile 100): a point no real
 *                         input reaches, so its size says nothing about the tokens
 *   target-unreachable    objective l1 only: the objective fell by less than half from its start (C is out of reach)
 *   uncalibrated          no real-data reference was given (--corpus), so no percentile could be judged
 * The controls issue adds skip-path and stability findings to the same list.
 */
import { formatPercentile } from './calibrate.js';
import type { RunResult } from './visualize.js';

export interface Finding {
  code: 'decoded-high' | 'decoded-typical' | 'decoded-below-random' | 'continuous-beyond-real' | 'target-unreachable' | 'uncalibrated';
  message: string;
}

export const VERDICT_THRESHOLDS = {
  /** Percentile at or above which the decoded activation is "high". */
  high: 99,
  /** Percentile below which the decoded activation is "typical of real text". */
  typical: 90,
  /** The l1 objective must fall at least by this share of its start, or the target is "unreachable". */
  minFall: 0.5,
} as const;


export function verdictOf(r: Pick<RunResult, 'status' | 'activation' | 'objective' | 'settings'> & { percentile?: RunResult['percentile'] }): Finding[] {
  if (r.status !== 'ok') return [];
  const out: Finding[] = [];
  const { decoded, random } = r.activation;
  const p = r.percentile ?? null;
  if (p?.decoded !== null && p?.decoded !== undefined) {
    if (p.decoded >= VERDICT_THRESHOLDS.high) out.push({ code: 'decoded-high', message: `decoded ≥ p${VERDICT_THRESHOLDS.high} of real data (${formatPercentile(p.decoded)})` });
    else if (p.decoded < VERDICT_THRESHOLDS.typical) out.push({ code: 'decoded-typical', message: `decoded below p${VERDICT_THRESHOLDS.typical} of real data (${formatPercentile(p.decoded)}): typical of real text` });
  }
  if (decoded !== null && random !== null && decoded < random) {
    out.push({ code: 'decoded-below-random', message: `decoded below random (${decoded.toFixed(3)} vs ${random.toFixed(3)})` });
  }
  if (p?.continuous === 100) out.push({ code: 'continuous-beyond-real', message: 'continuous optimum above every real window' });
  const { initial, final } = r.objective;
  if (r.settings.objective === 'l1' && initial !== null && final !== null && initial > 0) {
    const fall = (initial - final) / initial;
    if (fall < VERDICT_THRESHOLDS.minFall) out.push({ code: 'target-unreachable', message: `target unreachable (objective fell ${Math.round(fall * 100)} %)` });
  }
  if (!p) out.push({ code: 'uncalibrated', message: 'no real-data percentile (give --corpus FILE)' });
  return out;
}
