/**
 * Objectives as the weight tensors the objective graph takes (see ModelRunner.objective): every objective is either
 * an L1 distance to a constant or a weighted sum of the hook output.
 */
import { UserError } from '../errors.js';
import { selectionMask, type SelectionRun } from './selection.js';

export type ObjectiveKind = 'l1' | 'sum' | 'max';
export const OBJECTIVES: readonly ObjectiveKind[] = ['l1', 'sum', 'max'];

export interface ObjectiveSpec {
  kind: ObjectiveKind;
  /** The constant of `l1` and `sum` (default 100, the original's). */
  C: number;
  /** A probe / SAE direction of length F: maximise its dot product with the hook output at the selected positions. */
  direction?: Float32Array;
}

/** The per-problem weights: loss = Σ l1 ⊙ |C − O| − Σ lin ⊙ O + offset; activation = Σ report ⊙ O. */
export interface ObjectiveWeights {
  l1: Float32Array;
  lin: Float32Array;
  C: number;
  report: Float32Array;
  /** Constant added to the graph's loss to report the objective's true value (`sum`: C per selected element). */
  offset: number;
}

export function objectiveWeights(spec: ObjectiveSpec, run: SelectionRun, T: number, F: number): ObjectiveWeights {
  const mask = selectionMask(run, T, F);
  const zero = new Float32Array(T * F);
  if (spec.direction) {
    if (spec.direction.length !== F) throw new UserError(`--direction: vector has length ${spec.direction.length}, the hook has ${F} features`);
    // The direction replaces the feature axis: weight every feature of each selected position by the direction.
    const lin = new Float32Array(T * F);
    let positions = 0;
    for (let t = 0; t < T; t++) {
      let selected = false;
      for (let f = 0; f < F; f++) if (mask[t * F + f]) selected = true;
      if (!selected) continue;
      positions++;
      for (let f = 0; f < F; f++) lin[t * F + f] = spec.direction[f]!;
    }
    const report = lin.map((v) => v / positions);
    return { l1: zero, lin, C: 0, report, offset: 0 };
  }
  const count = mask.reduce((a, b) => a + b, 0);
  const mean = mask.map((v) => v / count);
  switch (spec.kind) {
    case 'l1':
      return { l1: mask, lin: zero, C: spec.C, report: mean, offset: 0 };
    case 'sum':
      return { l1: zero, lin: mask, C: 0, report: mean, offset: spec.C * count };
    case 'max':
      return { l1: zero, lin: mean, C: 0, report: mean, offset: 0 };
  }
}
