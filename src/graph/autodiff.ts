import type { Graph } from './graph.js';
import { add, expand } from './ops.js';
import { OPS } from './ops.js';
import { Value, sameShape } from './value.js';

/**
 * Reverse mode over the graph's tape: emits the backward pass as ordinary nodes and returns d(y)/d(x) for each x in
 * `wrt` (x must be a graph input created with `grad: true`). `seed` is the upstream gradient of y (default: ones, so a
 * non-scalar y is treated as the sum of its elements — each problem of a batch gets its own gradient because the
 * problems never mix).
 */
export function grad(y: Value, wrt: Value[], seed?: Value): Value[] {
  const g: Graph = y.graph;
  if (!y.requiresGrad) throw new Error(`grad: ${y} does not depend on any input marked grad: true`);
  for (const x of wrt) if (!x.requiresGrad) throw new Error(`grad: ${x} was not created with grad: true`);
  if (seed && !sameShape(seed.shape, y.shape)) throw new Error(`grad: seed ${seed} does not match ${y}`);

  const grads = new Map<string, Value>();
  const accumulate = (v: Value, d: Value) => {
    const prev = grads.get(v.name);
    grads.set(v.name, prev ? add(prev, d) : d);
  };

  const wasTaping = g.taping;
  g.taping = false;
  try {
    accumulate(y, seed ?? expand(g.scalar(1), y.shape));
    // The tape is in creation order, which is a topological order; walk it backwards.
    for (let i = g.tape.length - 1; i >= 0; i--) {
      const entry = g.tape[i]!;
      const moreGys = entry.more.map((v) => grads.get(v.name) ?? null);
      let gy = grads.get(entry.output.name);
      if (!gy && moreGys.every((d) => !d)) continue;
      // A multi-output op whose first output got no gradient: that output's gradient is zero.
      gy ??= expand(g.scalar(0), entry.output.shape);
      const rule = OPS[entry.op].vjp!;
      const dins = rule(gy, entry.inputs, entry.output, entry.attrs, entry.saved, moreGys);
      entry.inputs.forEach((x, k) => {
        const d = dins[k];
        if (d && x.requiresGrad) accumulate(x, d);
      });
    }
  } finally {
    g.taping = wasTaping;
  }
  return wrt.map((x) => grads.get(x.name) ?? expand(g.scalar(0), x.shape));
}
