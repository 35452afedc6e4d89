/**
 * Which free positions an optimisation can change. Every supported architecture is causal, so a position after the
 * last selected one never influences the objective: it gets no gradient and keeps its random start. Such positions
 * are fixed context in effect, not part of a result, and agreement and decode statistics must not count them.
 */
import type { SelectionRun } from './selection.js';

export function optimizedPositions(run: SelectionRun, free: number[]): number[] {
  if (run.positions.all) return free.slice();
  const last = Math.max(...run.positions.indices);
  return free.filter((t) => t <= last);
}
