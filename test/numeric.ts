/**
 * Relative error of a result against a reference, scaled by the reference's largest magnitude: entries near zero
 * (causally masked gradients, tiny MLP activations) are judged on the tensor's scale, not their own.
 */
export function maxRelError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) throw new Error(`length ${actual.length} vs reference ${expected.length}`);
  let scale = 0;
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]!));
  let worst = 0;
  for (let i = 0; i < expected.length; i++) {
    const diff = Math.abs(actual[i]! - expected[i]!);
    if (Number.isNaN(diff)) return Infinity;
    worst = Math.max(worst, diff / Math.max(scale, 1e-30));
  }
  return worst;
}
