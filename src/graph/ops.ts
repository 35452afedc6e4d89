/**
 * THE table of ops. Each entry holds, in one place, the op's shape rule (checked while building, so shape bugs
 * surface in TypeScript rather than inside onnxruntime), its emit rule (the ONNX node(s) it becomes) and its
 * vector-Jacobian product (how an upstream gradient flows back to each operand). VJP rules are written with the same
 * functions model code uses, so the backward pass is ordinary graph nodes.
 *
 * Ops without a `vjp` are forward-only. Those marked `zeroGrad` have derivative zero almost everywhere (sign); any other
 * forward-only op refuses an operand that requires a gradient, rather than silently cutting the gradient.
 */
import type { Graph } from './graph.js';
import { Value, broadcastShapes, normAxis, sameShape, type ElemType } from './value.js';

export type Attrs = Record<string, number | number[] | boolean | undefined>;

export interface OpDef {
  shape(inputs: Value[], attrs: Attrs): { shape: number[]; dtype: ElemType };
  /**
   * Intermediate results a fused op's emit rule writes besides its output, for its VJP (a norm's 1/rms, SwiGLU's
   * sigmoid): the backward reads them instead of recomputing them, which is what makes the fused form shorter.
   */
  saved?(inputs: Value[], attrs: Attrs): { shape: number[]; dtype: ElemType }[];
  /** A multi-output op's outputs after the first (`shape` gives the first). */
  more?(inputs: Value[], attrs: Attrs): { shape: number[]; dtype: ElemType }[];
  emit(g: Graph, inputs: Value[], attrs: Attrs, out: string, saved: string[], more: string[]): void;
  /**
   * Gradients for each input given the output's upstream gradient `gy` (null: no gradient needed/defined); a
   * multi-output op also gets its other outputs' gradients (null where an output got none).
   */
  vjp?(gy: Value, inputs: Value[], out: Value, attrs: Attrs, saved: Value[], moreGys: (Value | null)[]): (Value | null)[];
  zeroGrad?: boolean;
}

// ---------------------------------------------------------------------------------------------------------------
// Shape helpers

const floatOf = (x: Value, what: string): ElemType => {
  if (x.dtype === 'int64') throw new Error(`${what}: expects a float operand, got ${x}`);
  return x.dtype;
};

function binaryShape(what: string) {
  return (ins: Value[]) => {
    const [a, b] = ins as [Value, Value];
    if (a.dtype !== b.dtype) throw new Error(`${what}: dtype mismatch ${a} vs ${b}`);
    return { shape: broadcastShapes(a.shape, b.shape, what), dtype: a.dtype };
  };
}

const unaryShape = (what: string) => (ins: Value[]) => ({ shape: [...ins[0]!.shape], dtype: floatOf(ins[0]!, what) });

const axesAttr = (attrs: Attrs, rank: number, what: string): number[] =>
  [...new Set((attrs.axes as number[]).map((a) => normAxis(a, rank, what)))].sort((x, y) => x - y);

/** Sum a gradient of the broadcast shape `grad.shape` back down to an operand's `shape` (the VJP of broadcasting). */
export function unbroadcast(grad: Value, shape: readonly number[]): Value {
  if (sameShape(grad.shape, shape)) return grad;
  const lead = grad.rank - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < grad.rank; i++) {
    if (i < lead || (shape[i - lead] === 1 && grad.shape[i] !== 1)) axes.push(i);
  }
  const summed = axes.length ? reduceSum(grad, axes, true) : grad;
  return sameShape(summed.shape, shape) ? summed : reshape(summed, shape);
}

/** The last two dimensions of a matrix operand, swapped when it enters a product transposed. */
function lastTwo(x: Value, trans: boolean): [number, number] {
  const [r, c] = x.shape.slice(-2) as [number, number];
  return trans ? [c, r] : [r, c];
}

/** The permutation that swaps the last two of `rank` axes. */
function swapPerm(rank: number): number[] {
  const perm = Array.from({ length: rank }, (_, i) => i);
  [perm[rank - 2], perm[rank - 1]] = [rank - 1, rank - 2];
  return perm;
}

function simple(onnxOp: string) {
  return (g: Graph, ins: Value[], _a: Attrs, out: string) => g.node(onnxOp, ins.map((x) => x.name), [out]);
}

// ---------------------------------------------------------------------------------------------------------------
// The table

export type OpName =
  | 'add' | 'sub' | 'mul' | 'div' | 'neg' | 'exp' | 'sqrt' | 'tanh' | 'erf' | 'sigmoid' | 'abs' | 'sign'
  | 'matmul' | 'linear' | 'reduceSum' | 'reduceMean' | 'reshape' | 'transpose' | 'expand' | 'softmax'
  | 'concat' | 'slice' | 'pad' | 'gather' | 'greaterMask' | 'topkMask'
  | 'split' | 'rmsnorm' | 'layernorm' | 'rope' | 'swiglu' | 'gelu' | 'geluTanh';

export const OPS: Record<OpName, OpDef> = {
  add: {
    shape: binaryShape('add'),
    emit: simple('Add'),
    vjp: (gy, [a, b]) => [unbroadcast(gy, a!.shape), unbroadcast(gy, b!.shape)],
  },
  sub: {
    shape: binaryShape('sub'),
    emit: simple('Sub'),
    vjp: (gy, [a, b]) => [unbroadcast(gy, a!.shape), unbroadcast(neg(gy), b!.shape)],
  },
  mul: {
    shape: binaryShape('mul'),
    emit: simple('Mul'),
    vjp: (gy, [a, b]) => [
      a!.requiresGrad ? unbroadcast(mul(gy, b!), a!.shape) : null,
      b!.requiresGrad ? unbroadcast(mul(gy, a!), b!.shape) : null,
    ],
  },
  div: {
    shape: binaryShape('div'),
    emit: simple('Div'),
    // d(a/b)/db = -a/b² = -out/b
    vjp: (gy, [a, b], out) => [
      a!.requiresGrad ? unbroadcast(div(gy, b!), a!.shape) : null,
      b!.requiresGrad ? unbroadcast(neg(div(mul(gy, out), b!)), b!.shape) : null,
    ],
  },
  neg: { shape: unaryShape('neg'), emit: simple('Neg'), vjp: (gy) => [neg(gy)] },
  exp: { shape: unaryShape('exp'), emit: simple('Exp'), vjp: (gy, _i, out) => [mul(gy, out)] },
  sqrt: { shape: unaryShape('sqrt'), emit: simple('Sqrt'), vjp: (gy, _i, out) => [div(mul(gy, 0.5), out)] },
  tanh: { shape: unaryShape('tanh'), emit: simple('Tanh'), vjp: (gy, _i, out) => [mul(gy, sub(1, mul(out, out)))] },
  // d erf(x)/dx = 2/√π · exp(−x²). Exact GELU (GPT-NeoX, Pythia) needs it; ONNX has Erf since opset 9.
  erf: {
    shape: unaryShape('erf'),
    emit: (g, [x], _a, out) => {
      // onnxruntime's CPU provider registers Erf for float32 only; a float64 graph would fail at session creation.
      if (x!.dtype === 'float64') throw new Error('erf: onnxruntime has no float64 Erf kernel (build the graph in float32)');
      g.node('Erf', [x!.name], [out]);
    },
    vjp: (gy, [x]) => [mul(gy, mul(exp(neg(mul(x!, x!))), 2 / Math.sqrt(Math.PI)))],
  },
  sigmoid: {
    shape: unaryShape('sigmoid'),
    emit: simple('Sigmoid'),
    vjp: (gy, _i, out) => [mul(gy, mul(out, sub(1, out)))],
  },
  abs: { shape: unaryShape('abs'), emit: simple('Abs'), vjp: (gy, [x]) => [mul(gy, sign(x!))] },
  sign: {
    shape: unaryShape('sign'),
    // onnxruntime's WebGPU provider has no Sign kernel (it would run on the CPU, with two copies across the bus per
    // step): there, (x > 0) − (x < 0) from comparisons and casts, which it has. Equal to Sign except at NaN (0, not NaN).
    emit: (g, [x], _a, out) => {
      if (g.target !== 'webgpu') return g.node('Sign', [x!.name], [out]);
      const zero = g.constant([0], [], x!.dtype).name;
      const [gt, lt, pos, negv] = [g.fresh(), g.fresh(), g.fresh(), g.fresh()];
      const to = { to: { int: x!.dtype === 'float64' ? 11 : 1 } };
      g.node('Greater', [x!.name, zero], [gt]);
      g.node('Less', [x!.name, zero], [lt]);
      g.node('Cast', [gt], [pos], to);
      g.node('Cast', [lt], [negv], to);
      g.node('Sub', [pos, negv], [out]);
    },
    zeroGrad: true,
  },

  /**
   * Batched matrix product with broadcast batch dimensions (both operands rank ≥ 2): α · op(a) @ op(b), op = the
   * last two axes swapped where transA / transB say so. The attention products use the flags so that neither K nor
   * the gradients need a Transpose node and the 1/√d scale costs no Mul: onnxruntime's FusedMatMul does all of it in
   * one kernel (float32 and float64 on the CPU); the WebGPU provider has no FusedMatMul, so there the flags become
   * explicit Transpose and Mul nodes.
   */
  matmul: {
    shape: ([a, b], attrs) => {
      if (a!.rank < 2 || b!.rank < 2) throw new Error(`matmul: operands must have rank ≥ 2: ${a} @ ${b}`);
      const [m, k] = lastTwo(a!, !!attrs.transA);
      const [k2, n] = lastTwo(b!, !!attrs.transB);
      if (k !== k2) throw new Error(`matmul: inner dimensions differ: ${a} @ ${b} (transA=${!!attrs.transA}, transB=${!!attrs.transB})`);
      if (a!.dtype !== b!.dtype) throw new Error(`matmul: dtype mismatch ${a} vs ${b}`);
      const batch = broadcastShapes(a!.shape.slice(0, -2), b!.shape.slice(0, -2), 'matmul');
      return { shape: [...batch, m, n], dtype: a!.dtype };
    },
    emit: (g, [a, b], attrs, out) => {
      const alpha = (attrs.alpha as number | undefined) ?? 1;
      if (!attrs.transA && !attrs.transB && alpha === 1) return g.node('MatMul', [a!.name, b!.name], [out]);
      if (g.target !== 'webgpu') {
        return g.node('FusedMatMul', [a!.name, b!.name], [out], { transA: { int: attrs.transA ? 1 : 0 }, transB: { int: attrs.transB ? 1 : 0 }, alpha: { float: alpha } }, 'com.microsoft');
      }
      const swapped = (x: Value) => {
        const t = g.fresh();
        g.node('Transpose', [x.name], [t], { perm: { ints: swapPerm(x.rank) } });
        return t;
      };
      const lhs = attrs.transA ? swapped(a!) : a!.name;
      const rhs = attrs.transB ? swapped(b!) : b!.name;
      if (alpha === 1) return g.node('MatMul', [lhs, rhs], [out]);
      const prod = g.fresh();
      g.node('MatMul', [lhs, rhs], [prod]);
      g.node('Mul', [prod, g.constant([alpha], [], a!.dtype).name], [out]);
    },
    // C = α·op(A)·op(B): each operand's gradient is again one α-scaled product of gy with the other operand, the
    // flags arranged so that no operand is transposed on its own.
    vjp: (gy, [a, b], _out, attrs) => {
      const alpha = (attrs.alpha as number | undefined) ?? 1;
      const tA = !!attrs.transA;
      const tB = !!attrs.transB;
      const mm = (x: Value, y: Value, transA: boolean, transB: boolean) => matmul(x, y, { transA, transB, alpha });
      const da = !a!.requiresGrad ? null : tA ? mm(b!, gy, tB, true) : mm(gy, b!, false, !tB);
      const db = !b!.requiresGrad ? null : tB ? mm(gy, a!, true, tA) : mm(a!, gy, !tA, false);
      return [da && unbroadcast(da, a!.shape), db && unbroadcast(db, b!.shape)];
    },
  },

  /**
   * x @ Wᵀ (transB, the [out, in] layout of Llama checkpoints) or x @ W ([in, out], GPT-2's Conv1D). A composite op so
   * that the weight stays one initializer in its stored layout: onnxruntime prepacks it for the forward product and
   * again for the backward product, instead of materialising a transposed copy.
   */
  linear: {
    shape: ([x, w], attrs) => {
      if (w!.rank !== 2) throw new Error(`linear: weight must be 2-D, got ${w}`);
      const [rows, cols] = w!.shape as [number, number];
      const [inDim, outDim] = attrs.transB ? [cols, rows] : [rows, cols];
      if (x!.shape[x!.rank - 1] !== inDim) throw new Error(`linear: ${x} does not match weight ${w} (transB=${!!attrs.transB})`);
      return { shape: [...x!.shape.slice(0, -1), outDim], dtype: floatOf(x!, 'linear') };
    },
    emit: (g, [x, w], attrs, out) => {
      if (!attrs.transB) return g.node('MatMul', [x!.name, w!.name], [out]);
      if (g.target === 'webgpu') {
        // The WebGPU provider has no FusedMatMul kernel but has Gemm with transB: flatten x to 2-D around it, so the
        // weight still stays one buffer in its stored layout (a Transpose would be folded into a second copy).
        const x2 = g.fresh();
        const y2 = g.fresh();
        const inDim = x!.shape[x!.rank - 1]!;
        const outDim = w!.shape[0]!;
        g.node('Reshape', [x!.name, g.ints([-1, inDim]).name], [x2]);
        g.node('Gemm', [x2, w!.name], [y2], { transB: { int: 1 } });
        return g.node('Reshape', [y2, g.ints([...x!.shape.slice(0, -1), outDim]).name], [out]);
      }
      if (g.float === 'float32') {
        return g.node('FusedMatMul', [x!.name, w!.name], [out], { transB: { int: 1 }, alpha: { float: 1 } }, 'com.microsoft');
      }
      // FusedMatMul has only a float32 kernel; float64 graphs (the gradient tests) transpose explicitly.
      const wt = g.fresh();
      g.node('Transpose', [w!.name], [wt], { perm: { ints: [1, 0] } });
      g.node('MatMul', [x!.name, wt], [out]);
    },
    vjp: (gy, [x, w], _out, attrs) => {
      const dx = x!.requiresGrad ? linear(gy, w!, !attrs.transB) : null;
      let dw: Value | null = null;
      if (w!.requiresGrad) {
        const x2 = reshape(x!, [-1, x!.shape[x!.rank - 1]!]);
        const g2 = reshape(gy, [-1, gy.shape[gy.rank - 1]!]);
        dw = attrs.transB ? matmul(transpose(g2, [1, 0]), x2) : matmul(transpose(x2, [1, 0]), g2);
      }
      return [dx, dw];
    },
  },

  reduceSum: {
    shape: ([x], attrs) => ({ shape: reducedShape(x!, attrs, 'reduceSum'), dtype: x!.dtype }),
    emit: (g, [x], attrs, out) =>
      g.node('ReduceSum', [x!.name, g.ints(axesAttr(attrs, x!.rank, 'reduceSum')).name], [out], { keepdims: { int: attrs.keepdims ? 1 : 0 } }),
    vjp: (gy, [x], _o, attrs) => [expand(reshape(gy, reducedShape(x!, { ...attrs, keepdims: true }, 'reduceSum')), x!.shape)],
  },
  reduceMean: {
    shape: ([x], attrs) => ({ shape: reducedShape(x!, attrs, 'reduceMean'), dtype: floatOf(x!, 'reduceMean') }),
    emit: (g, [x], attrs, out) =>
      g.node('ReduceMean', [x!.name, g.ints(axesAttr(attrs, x!.rank, 'reduceMean')).name], [out], { keepdims: { int: attrs.keepdims ? 1 : 0 } }),
    vjp: (gy, [x], _o, attrs) => {
      const n = axesAttr(attrs, x!.rank, 'reduceMean').reduce((p, a) => p * x!.shape[a]!, 1);
      return [expand(reshape(mul(gy, 1 / n), reducedShape(x!, { ...attrs, keepdims: true }, 'reduceMean')), x!.shape)];
    },
  },

  reshape: {
    shape: ([x], attrs) => ({ shape: resolveShape(x!, attrs.shape as number[]), dtype: x!.dtype }),
    emit: (g, [x], attrs, out) => g.node('Reshape', [x!.name, g.ints(resolveShape(x!, attrs.shape as number[])).name], [out]),
    vjp: (gy, [x]) => [reshape(gy, x!.shape)],
  },
  transpose: {
    shape: ([x], attrs) => {
      const perm = attrs.perm as number[];
      if (perm.length !== x!.rank || [...perm].sort().some((p, i) => p !== i)) throw new Error(`transpose: bad perm [${perm}] for ${x}`);
      return { shape: perm.map((p) => x!.shape[p]!), dtype: x!.dtype };
    },
    emit: (g, [x], attrs, out) => g.node('Transpose', [x!.name], [out], { perm: { ints: attrs.perm as number[] } }),
    vjp: (gy, _i, _o, attrs) => {
      const perm = attrs.perm as number[];
      const inv = perm.map((_, i) => perm.indexOf(i));
      return [transpose(gy, inv)];
    },
  },
  expand: {
    shape: ([x], attrs) => {
      const target = attrs.shape as number[];
      const shape = broadcastShapes(x!.shape, target, 'expand');
      if (!sameShape(shape, target)) throw new Error(`expand: ${x} does not expand to [${target}]`);
      return { shape, dtype: x!.dtype };
    },
    emit: (g, [x], attrs, out) => g.node('Expand', [x!.name, g.ints(attrs.shape as number[]).name], [out]),
    vjp: (gy, [x]) => [unbroadcast(gy, x!.shape)],
  },
  softmax: {
    shape: ([x], attrs) => {
      normAxis(attrs.axis as number, x!.rank, 'softmax');
      return { shape: [...x!.shape], dtype: floatOf(x!, 'softmax') };
    },
    emit: (g, [x], attrs, out) => g.node('Softmax', [x!.name], [out], { axis: { int: attrs.axis as number } }),
    // dx = y ⊙ (g − Σ g⊙y)
    vjp: (gy, _i, y, attrs) => [mul(y, sub(gy, reduceSum(mul(gy, y), [attrs.axis as number], true)))],
  },
  concat: {
    shape: (ins, attrs) => {
      const axis = normAxis(attrs.axis as number, ins[0]!.rank, 'concat');
      const shape = [...ins[0]!.shape];
      for (const x of ins.slice(1)) {
        if (x.rank !== shape.length || x.shape.some((d, i) => i !== axis && d !== shape[i])) throw new Error(`concat: ${x} does not fit ${ins[0]}`);
        shape[axis]! += x.shape[axis]!;
      }
      return { shape, dtype: ins[0]!.dtype };
    },
    emit: (g, ins, attrs, out) => g.node('Concat', ins.map((x) => x.name), [out], { axis: { int: attrs.axis as number } }),
    vjp: (gy, ins, _o, attrs) => {
      const axis = normAxis(attrs.axis as number, gy.rank, 'concat');
      let start = 0;
      return ins.map((x) => {
        const part = x.requiresGrad ? slice(gy, axis, start, start + x.shape[axis]!) : null;
        start += x.shape[axis]!;
        return part;
      });
    },
  },
  /** x[..., start:end, ...] along one axis. */
  slice: {
    shape: ([x], attrs) => {
      const axis = normAxis(attrs.axis as number, x!.rank, 'slice');
      const [s, e] = [attrs.start as number, attrs.end as number];
      if (!(0 <= s && s < e && e <= x!.shape[axis]!)) throw new Error(`slice: [${s}, ${e}) out of range for axis ${axis} of ${x}`);
      const shape = [...x!.shape];
      shape[axis] = e - s;
      return { shape, dtype: x!.dtype };
    },
    emit: (g, [x], attrs, out) =>
      g.node('Slice', [x!.name, g.ints([attrs.start as number]).name, g.ints([attrs.end as number]).name, g.ints([attrs.axis as number]).name], [out]),
    // The VJP of a slice pads the gradient back with zeros.
    vjp: (gy, [x], _o, attrs) => {
      const axis = normAxis(attrs.axis as number, x!.rank, 'slice');
      const before = Array(x!.rank).fill(0);
      const after = Array(x!.rank).fill(0);
      before[axis] = attrs.start as number;
      after[axis] = x!.shape[axis]! - (attrs.end as number);
      return [pad(gy, before, after)];
    },
  },
  /** x cut along one axis into consecutive parts of the given sizes: one Split node for what would be several Slices. */
  split: {
    shape: ([x], attrs) => splitShapes(x!, attrs)[0]!,
    more: ([x], attrs) => splitShapes(x!, attrs).slice(1),
    emit: (g, [x], attrs, out, _saved, more) =>
      g.node('Split', [x!.name, g.ints(attrs.sizes as number[]).name], [out, ...more], { axis: { int: attrs.axis as number } }),
    vjp: (gy, [x], _o, attrs, _saved, moreGys) => {
      const axis = normAxis(attrs.axis as number, x!.rank, 'split');
      const parts = [gy, ...moreGys].map((d, i) => {
        if (d) return d;
        const shape = [...x!.shape];
        shape[axis] = (attrs.sizes as number[])[i]!;
        return expand(gy.graph.scalar(0), shape);
      });
      return [concat(parts, axis)];
    },
  },
  pad: {
    shape: ([x], attrs) => ({
      shape: x!.shape.map((d, i) => d + (attrs.before as number[])[i]! + (attrs.after as number[])[i]!),
      dtype: x!.dtype,
    }),
    emit: (g, [x], attrs, out) => g.node('Pad', [x!.name, g.ints([...(attrs.before as number[]), ...(attrs.after as number[])]).name], [out]),
    vjp: (gy, [x], _o, attrs) => {
      let r = gy;
      x!.shape.forEach((d, axis) => {
        const s = (attrs.before as number[])[axis]!;
        if (s !== 0 || d !== gy.shape[axis]) r = slice(r, axis, s, s + d);
      });
      return [r];
    },
  },
  /** Rows of `data` along `axis` picked by int64 `indices` (embedding lookup, taking one position). Forward only. */
  gather: {
    shape: ([data, idx], attrs) => {
      const axis = normAxis((attrs.axis as number | undefined) ?? 0, data!.rank, 'gather');
      if (idx!.dtype !== 'int64') throw new Error(`gather: indices must be int64, got ${idx}`);
      return { shape: [...data!.shape.slice(0, axis), ...idx!.shape, ...data!.shape.slice(axis + 1)], dtype: data!.dtype };
    },
    emit: (g, [data, idx], attrs, out) => g.node('Gather', [data!.name, idx!.name], [out], { axis: { int: (attrs.axis as number | undefined) ?? 0 } }),
  },

  /**
   * 1 where a > b (broadcast), else 0, in a's float type: the gates of ReLU and JumpReLU (SAELens's strict `>`).
   * A step function has derivative zero except at the step, so gradients flow only through what it multiplies.
   */
  greaterMask: {
    shape: binaryShape('greaterMask'),
    emit: (g, [a, b], _attrs, out) => {
      const gt = g.fresh();
      g.node('Greater', [a!.name, b!.name], [gt]);
      g.node('Cast', [gt], [out], { to: { int: a!.dtype === 'float64' ? 11 : 1 } });
    },
    zeroGrad: true,
  },
  /**
   * 1 at the k largest entries along the last axis, else 0 (a TopK SAE's selection; ties at the k-th value are all
   * kept, where torch.topk keeps k of them). Piecewise constant: derivative zero almost everywhere.
   */
  topkMask: {
    shape: ([x], attrs) => {
      const k = attrs.k as number;
      if (!Number.isInteger(k) || k < 1 || k > x!.shape[x!.rank - 1]!) throw new Error(`topkMask: k=${k} outside 1-${x!.shape[x!.rank - 1]} for ${x}`);
      return { shape: [...x!.shape], dtype: floatOf(x!, 'topkMask') };
    },
    emit: (g, [x], attrs, out) => {
      const k = attrs.k as number;
      const [values, indices, kth, ge] = [g.fresh(), g.fresh(), g.fresh(), g.fresh()];
      g.node('TopK', [x!.name, g.ints([k]).name], [values, indices], { axis: { int: -1 }, largest: { int: 1 }, sorted: { int: 1 } });
      g.node('Slice', [values, g.ints([k - 1]).name, g.ints([k]).name, g.ints([-1]).name], [kth]);
      g.node('GreaterOrEqual', [x!.name, kth], [ge]);
      g.node('Cast', [ge], [out], { to: { int: x!.dtype === 'float64' ? 11 : 1 } });
    },
    zeroGrad: true,
  },
  // -------------------------------------------------------------------------------------------------------------
  // Fused ops: one onnxruntime kernel forward where it has one, and a VJP written directly (shorter than the
  // derivative of their parts, and reading what the forward saved). Each is checked against its unfused composite.

  /**
   * RMSNorm over the last axis: w ⊙ x / √(mean(x²) + ε). Forward: onnxruntime's SimplifiedLayerNormalization (one
   * kernel, which also returns r = 1/√(mean(x²) + ε) for the backward). Its statistics output is float32-only, so a
   * float64 graph (the gradient tests) writes the same two results from primitives; the WebGPU target, see below.
   * Backward, with x̂ = x·r and gw = gy ⊙ w: dx = r ⊙ (gw − x̂ ⊙ mean(gw ⊙ x̂)).
   */
  rmsnorm: {
    shape: ([x, w]) => {
      if (w!.rank !== 1 || w!.shape[0] !== x!.shape[x!.rank - 1]) throw new Error(`rmsnorm: weight ${w} does not match ${x}`);
      return { shape: [...x!.shape], dtype: floatOf(x!, 'rmsnorm') };
    },
    saved: ([x]) => [{ shape: [...x!.shape.slice(0, -1), 1], dtype: x!.dtype }],
    emit: (g, [x, w], attrs, out, [r]) => {
      const eps = attrs.eps as number;
      if (g.float === 'float32' && g.target === 'webgpu') {
        // onnxruntime's WebGPU SimplifiedLayerNormalization writes the row mean, not 1/rms, to its second output
        // (gradients 100 % off on SwiftShader). Its LayerNormalization's statistics are right, and over [x, −x] the
        // mean is 0 and the variance is mean(x²): its InvStdDev is exactly r, the first half of its output x·r·w.
        const d = x!.shape[x!.rank - 1]!;
        const [nx, both, gain2, y2] = [g.fresh(), g.fresh(), g.fresh(), g.fresh()];
        g.node('Neg', [x!.name], [nx]);
        g.node('Concat', [x!.name, nx], [both], { axis: { int: -1 } });
        g.node('Concat', [w!.name, w!.name], [gain2], { axis: { int: 0 } });
        g.node('LayerNormalization', [both, gain2, g.constant(new Float64Array(2 * d), [2 * d]).name], [y2, '', r!], { axis: { int: -1 }, epsilon: { float: eps }, stash_type: { int: 1 } });
        return g.node('Slice', [y2, g.ints([0]).name, g.ints([d]).name, g.ints([-1]).name], [out]);
      }
      if (g.float === 'float32') {
        // The residual add that produced x (h = x + branch, then norm(h)) and the norm are one kernel on the CPU:
        // SkipSimplifiedLayerNormalization also returns the sum, under the add's own name, for its other readers.
        if (absorbResidualAdd(g, x!, [w!], 'SkipSimplifiedLayerNormalization', [out, '', r!, x!.name], eps)) return;
        return g.node('SimplifiedLayerNormalization', [x!.name, w!.name], [out, r!], { axis: { int: -1 }, epsilon: { float: eps }, stash_type: { int: 1 } });
      }
      const [sq, ms, shifted, rms, xr] = [g.fresh(), g.fresh(), g.fresh(), g.fresh(), g.fresh()];
      g.node('Mul', [x!.name, x!.name], [sq]);
      g.node('ReduceMean', [sq, g.ints([-1]).name], [ms], { keepdims: { int: 1 } });
      g.node('Add', [ms, g.constant([eps], [], x!.dtype).name], [shifted]);
      g.node('Sqrt', [shifted], [rms]);
      g.node('Reciprocal', [rms], [r!]);
      g.node('Mul', [x!.name, r!], [xr]);
      g.node('Mul', [xr, w!.name], [out]);
    },
    // `unit`: the gain is all ones (model code moved it into the matrices that read the norm), so the output is x̂
    // itself and gw = gy — two products fewer.
    vjp: (gy, [x, w], out, attrs, [r]) => {
      const xhat = attrs.unit ? out : mul(x!, r!);
      const gw = attrs.unit ? gy : mul(gy, w!);
      const dx = x!.requiresGrad ? mul(r!, sub(gw, mul(xhat, reduceMean(mul(gw, xhat), [-1], true)))) : null;
      const dw = w!.requiresGrad ? unbroadcast(mul(gy, xhat), w!.shape) : null;
      return [dx, dw];
    },
  },

  /**
   * LayerNorm over the last axis: w ⊙ (x − μ) / √(var + ε) + b. Forward: ONNX LayerNormalization (opset 17; one kernel
   * that also returns μ and r = 1/√(var + ε)); float64 graphs write the same from primitives (its statistics outputs
   * are float32-only). Backward, with x̂ = (x − μ)·r, gw = gy ⊙ w: dx = r ⊙ (gw − mean(gw) − x̂ ⊙ mean(gw ⊙ x̂)).
   */
  layernorm: {
    shape: ([x, w, b]) => {
      const d = x!.shape[x!.rank - 1];
      if (w!.rank !== 1 || w!.shape[0] !== d || b!.rank !== 1 || b!.shape[0] !== d) throw new Error(`layernorm: ${w} / ${b} do not match ${x}`);
      return { shape: [...x!.shape], dtype: floatOf(x!, 'layernorm') };
    },
    saved: ([x]) => {
      const stat = { shape: [...x!.shape.slice(0, -1), 1], dtype: x!.dtype };
      return [stat, stat];
    },
    emit: (g, [x, w, b], attrs, out, [mu, r]) => {
      const eps = attrs.eps as number;
      if (g.float === 'float32') {
        // As for rmsnorm: the residual add that produced x becomes one SkipLayerNormalization kernel with the norm.
        if (absorbResidualAdd(g, x!, [w!, b!], 'SkipLayerNormalization', [out, mu!, r!, x!.name], eps)) return;
        return g.node('LayerNormalization', [x!.name, w!.name, b!.name], [out, mu!, r!], { axis: { int: -1 }, epsilon: { float: eps }, stash_type: { int: 1 } });
      }
      const [c, sq, v, shifted, sd, xr, scaled] = [g.fresh(), g.fresh(), g.fresh(), g.fresh(), g.fresh(), g.fresh(), g.fresh()];
      const axes = g.ints([-1]).name;
      g.node('ReduceMean', [x!.name, axes], [mu!], { keepdims: { int: 1 } });
      g.node('Sub', [x!.name, mu!], [c]);
      g.node('Mul', [c, c], [sq]);
      g.node('ReduceMean', [sq, axes], [v], { keepdims: { int: 1 } });
      g.node('Add', [v, g.constant([eps], [], x!.dtype).name], [shifted]);
      g.node('Sqrt', [shifted], [sd]);
      g.node('Reciprocal', [sd], [r!]);
      g.node('Mul', [c, r!], [xr]);
      g.node('Mul', [xr, w!.name], [scaled]);
      g.node('Add', [scaled, b!.name], [out]);
    },
    // `unit`: gain ones and bias zeros (moved into the matrices that read the norm): the output is x̂ and gw = gy.
    vjp: (gy, [x, w, b], out, attrs, [mu, r]) => {
      const xhat = attrs.unit ? out : mul(sub(x!, mu!), r!);
      let dx: Value | null = null;
      if (x!.requiresGrad) {
        const gw = attrs.unit ? gy : mul(gy, w!);
        const centred = sub(gw, reduceMean(gw, [-1], true));
        dx = mul(r!, sub(centred, mul(xhat, reduceMean(mul(gw, xhat), [-1], true))));
      }
      return [dx, w!.requiresGrad ? unbroadcast(mul(gy, xhat), w!.shape) : null, b!.requiresGrad ? unbroadcast(gy, b!.shape) : null];
    },
  },

  /**
   * Rotary positions on x [B, heads, T, hd] from half-width tables cos, sin [T, rd/2] (rd ≤ hd: the first rd dimensions
   * rotate, the rest pass through): pair i = (2i, 2i+1) when `interleaved` (GGUF), else (i, i + rd/2) (Hugging Face).
   * One com.microsoft RotaryEmbedding kernel, float32 only (llama.ts's `rope` keeps the dense form for float64). The
   * rotation is orthogonal, so its VJP is the same kernel with −sin: the rotation by −θ.
   */
  rope: {
    shape: ([x, cos, sin]) => {
      if (x!.rank !== 4) throw new Error(`rope: expects [B, heads, T, hd], got ${x}`);
      const [T, hd] = x!.shape.slice(2) as [number, number];
      if (cos!.rank !== 2 || cos!.shape[0] !== T || 2 * cos!.shape[1]! > hd || !sameShape(cos!.shape, sin!.shape)) {
        throw new Error(`rope: tables ${cos} / ${sin} do not fit ${x}`);
      }
      if (x!.dtype !== 'float32') throw new Error('rope: the fused kernel is float32 only');
      return { shape: [...x!.shape], dtype: x!.dtype };
    },
    emit: (g, [x, cos, sin], attrs, out) => {
      const rd = 2 * cos!.shape[1]!;
      const hd = x!.shape[3]!;
      g.node('RotaryEmbedding', [x!.name, g.ints([0]).name, cos!.name, sin!.name], [out], {
        interleaved: { int: attrs.interleaved ? 1 : 0 },
        ...(rd < hd ? { rotary_embedding_dim: { int: rd }, num_heads: { int: x!.shape[1]! } } : {}),
      }, 'com.microsoft');
    },
    vjp: (gy, [, cos, sin], _out, attrs) => [gy.graph.apply('rope', [gy, cos!, neg(sin!)], attrs), null, null],
  },

  /**
   * SwiGLU, silu(gate) ⊙ up, saving σ(gate) and silu(gate) for the backward:
   * d up = gy ⊙ silu;  d gate = gy ⊙ up ⊙ (σ + silu ⊙ (1 − σ)).
   */
  swiglu: {
    shape: binaryShape('swiglu'),
    saved: ([a]) => [{ shape: [...a!.shape], dtype: a!.dtype }, { shape: [...a!.shape], dtype: a!.dtype }],
    emit: (g, [a, b], _attrs, out, [s, si]) => {
      if (!sameShape(a!.shape, b!.shape)) throw new Error(`swiglu: ${a} and ${b} differ`);
      g.node('Sigmoid', [a!.name], [s!]);
      g.node('Mul', [a!.name, s!], [si!]);
      g.node('Mul', [si!, b!.name], [out]);
    },
    vjp: (gy, [a, b], _out, _attrs, [s, si]) => [
      a!.requiresGrad ? mul(mul(gy, b!), add(s!, mul(si!, sub(1, s!)))) : null,
      b!.requiresGrad ? mul(gy, si!) : null,
    ],
  },

  /**
   * Exact GELU x·Φ(x) (torch's `gelu`): one com.microsoft Gelu kernel on the CPU in float32; elsewhere the composite
   * 0.5·x·(1 + erf(x/√2)). Backward: dGELU/dx = Φ(x) + x·φ(x), φ(x) = exp(−x²/2)/√(2π).
   */
  gelu: {
    shape: unaryShape('gelu'),
    emit: (g, [x], _a, out) => {
      if (x!.dtype === 'float64') throw new Error('gelu: onnxruntime has no float64 Erf kernel (build the graph in float32)');
      if (g.target === 'cpu') return g.node('Gelu', [x!.name], [out], {}, 'com.microsoft');
      const [s, e, p, h] = [g.fresh(), g.fresh(), g.fresh(), g.fresh()];
      g.node('Mul', [x!.name, g.scalar(Math.SQRT1_2).name], [s]);
      g.node('Erf', [s], [e]);
      g.node('Add', [e, g.scalar(1).name], [p]);
      g.node('Mul', [x!.name, p], [h]);
      g.node('Mul', [h, g.scalar(0.5).name], [out]);
    },
    vjp: (gy, [x]) => {
      const cdf = add(mul(erf(mul(x!, Math.SQRT1_2)), 0.5), 0.5);
      // x·φ(x) = x·exp(−x²/2 − ln √(2π)): the constant rides in the exponent instead of another product.
      const xpdf = mul(x!, exp(sub(mul(mul(x!, x!), -0.5), Math.log(Math.sqrt(2 * Math.PI)))));
      return [mul(gy, add(cdf, xpdf))];
    },
  },

  /**
   * GPT-2's gelu_new, 0.5·x·(1 + tanh(u)), u = c·(x + a·x³), c = √(2/π), a = 0.044715: one com.microsoft FastGelu
   * kernel on the CPU in float32 (the same formula); elsewhere the composite. Backward, recomputing t = tanh(u):
   * 0.5·(1 + t) + 0.5·x·(1 − t²)·c·(1 + 3a·x²).
   */
  geluTanh: {
    shape: unaryShape('geluTanh'),
    emit: (g, [x], _a, out) => {
      if (g.target === 'cpu' && x!.dtype === 'float32') return g.node('FastGelu', [x!.name], [out], {}, 'com.microsoft');
      const [x2, p, u, t, q, h] = [g.fresh(), g.fresh(), g.fresh(), g.fresh(), g.fresh(), g.fresh()];
      const c = Math.sqrt(2 / Math.PI);
      g.node('Mul', [x!.name, x!.name], [x2]);
      g.node('Mul', [x2, g.scalar(c * 0.044715).name], [p]);
      g.node('Add', [p, g.scalar(c).name], [q]);
      g.node('Mul', [x!.name, q], [u]);
      g.node('Tanh', [u], [t]);
      g.node('Add', [t, g.scalar(1).name], [h]);
      const hx = g.fresh();
      g.node('Mul', [x!.name, h], [hx]);
      g.node('Mul', [hx, g.scalar(0.5).name], [out]);
    },
    vjp: (gy, [x]) => {
      const c = Math.sqrt(2 / Math.PI);
      const x2 = mul(x!, x!);
      const t = tanh(mul(x!, add(mul(x2, c * 0.044715), c)));
      const left = add(mul(t, 0.5), 0.5);
      const right = mul(mul(x!, add(mul(x2, 1.5 * c * 0.044715), 0.5 * c)), sub(1, mul(t, t)));
      return [mul(gy, add(left, right))];
    },
  },
};

/**
 * A norm on the CPU whose input x is a residual add a + b (same shapes) takes that add's node over: the fused Skip…
 * kernel computes the sum (returned under x's own name, for x's other readers) and the norm in one pass. The fused
 * node sits where the add was, so the norm's parameters must exist by then (Gemma's 1 + w, made later, does not).
 */
function absorbResidualAdd(g: Graph, x: Value, params: Value[], opType: string, outputs: string[], eps: number): boolean {
  const p = g.producerOf(x);
  if (g.target !== 'cpu' || !p || p.op !== 'add' || p.absorbed || p.nodeCount !== 1) return false;
  if (!p.inputs.every((v) => sameShape(v.shape, x.shape))) return false;
  if (params.some((v) => (g.producerOf(v)?.nodeIndex ?? -1) >= p.nodeIndex)) return false;
  p.absorbed = true;
  g.replaceNode(p.nodeIndex, opType, [p.inputs[0]!.name, p.inputs[1]!.name, ...params.map((v) => v.name)], outputs, { epsilon: { float: eps } }, 'com.microsoft');
  return true;
}

function splitShapes(x: Value, attrs: Attrs): { shape: number[]; dtype: ElemType }[] {
  const axis = normAxis(attrs.axis as number, x.rank, 'split');
  const sizes = attrs.sizes as number[];
  if (sizes.length < 2 || sizes.some((n) => !Number.isInteger(n) || n < 1) || sizes.reduce((a, b) => a + b, 0) !== x.shape[axis]) {
    throw new Error(`split: sizes [${sizes}] do not partition axis ${axis} of ${x}`);
  }
  return sizes.map((n) => {
    const shape = [...x.shape];
    shape[axis] = n;
    return { shape, dtype: x.dtype };
  });
}

function reducedShape(x: Value, attrs: Attrs, what: string): number[] {
  const axes = axesAttr(attrs, x.rank, what);
  const out: number[] = [];
  x.shape.forEach((d, i) => {
    if (!axes.includes(i)) out.push(d);
    else if (attrs.keepdims) out.push(1);
  });
  return out;
}

function resolveShape(x: Value, shape: readonly number[]): number[] {
  const known = shape.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
  const out = shape.map((d) => (d === -1 ? x.size / known : d));
  if (shape.filter((d) => d === -1).length > 1 || out.reduce((a, b) => a * b, 1) !== x.size || out.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new Error(`reshape: cannot reshape ${x} to [${shape}]`);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// The functions model code calls. Numbers are lifted to scalar constants of the other operand's graph and dtype.

type Operand = Value | number;

function lift(a: Operand, b: Operand): [Value, Value] {
  const v = (a instanceof Value ? a : b) as Value;
  const toValue = (x: Operand) => (x instanceof Value ? x : v.graph.constant([x], [], v.dtype));
  return [toValue(a), toValue(b)];
}

export const add = (a: Operand, b: Operand): Value => { const [x, y] = lift(a, b); return x.graph.apply('add', [x, y]); };
export const sub = (a: Operand, b: Operand): Value => { const [x, y] = lift(a, b); return x.graph.apply('sub', [x, y]); };
export const mul = (a: Operand, b: Operand): Value => { const [x, y] = lift(a, b); return x.graph.apply('mul', [x, y]); };
export const div = (a: Operand, b: Operand): Value => { const [x, y] = lift(a, b); return x.graph.apply('div', [x, y]); };
export const neg = (x: Value): Value => x.graph.apply('neg', [x]);
export const exp = (x: Value): Value => x.graph.apply('exp', [x]);
export const sqrt = (x: Value): Value => x.graph.apply('sqrt', [x]);
export const tanh = (x: Value): Value => x.graph.apply('tanh', [x]);
export const erf = (x: Value): Value => x.graph.apply('erf', [x]);
export const sigmoid = (x: Value): Value => x.graph.apply('sigmoid', [x]);
export const abs = (x: Value): Value => x.graph.apply('abs', [x]);
export const sign = (x: Value): Value => x.graph.apply('sign', [x]);
export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
  alpha?: number;
}
/** α · op(a) @ op(b); see the table entry. */
export const matmul = (a: Value, b: Value, opts: MatmulOptions = {}): Value => {
  const attrs: Attrs = {};
  if (opts.transA) attrs.transA = true;
  if (opts.transB) attrs.transB = true;
  if (opts.alpha !== undefined && opts.alpha !== 1) attrs.alpha = opts.alpha;
  return a.graph.apply('matmul', [a, b], attrs);
};
export const linear = (x: Value, w: Value, transB = true): Value => x.graph.apply('linear', [x, w], { transB });
export const reduceSum = (x: Value, axes: number[], keepdims = false): Value => x.graph.apply('reduceSum', [x], { axes, keepdims });
export const reduceMean = (x: Value, axes: number[], keepdims = false): Value => x.graph.apply('reduceMean', [x], { axes, keepdims });
// A reshape to the same shape and an identity transpose are no nodes at all (grouped-query code reshapes to the same
// shape when every head has its own K/V; each node is a kernel dispatch per step).
export const reshape = (x: Value, shape: readonly number[]): Value =>
  sameShape(resolveShape(x, shape), x.shape) ? x : x.graph.apply('reshape', [x], { shape: [...shape] });
export const transpose = (x: Value, perm: number[]): Value => (perm.every((p, i) => p === i) && perm.length === x.rank ? x : x.graph.apply('transpose', [x], { perm }));
export const expand = (x: Value, shape: readonly number[]): Value => x.graph.apply('expand', [x], { shape: [...shape] });
export const softmax = (x: Value, axis = -1): Value => x.graph.apply('softmax', [x], { axis });
export const concat = (xs: Value[], axis: number): Value => xs[0]!.graph.apply('concat', xs, { axis });
export const slice = (x: Value, axis: number, start: number, end: number): Value => x.graph.apply('slice', [x], { axis, start, end });
export const split = (x: Value, axis: number, sizes: number[]): Value[] => x.graph.applyAll('split', [x], { axis, sizes });
export const pad = (x: Value, before: number[], after: number[]): Value => x.graph.apply('pad', [x], { before, after });
export const gather = (data: Value, indices: Value, axis = 0): Value => data.graph.apply('gather', [data, indices], { axis });
export const greaterMask = (a: Operand, b: Operand): Value => { const [x, y] = lift(a, b); return x.graph.apply('greaterMask', [x, y]); };
export const topkMask = (x: Value, k: number): Value => x.graph.apply('topkMask', [x], { k });

/** Swap the last two axes. */
export function swapLast(x: Value): Value {
  const perm = x.shape.map((_, i) => i);
  perm[x.rank - 2] = x.rank - 1;
  perm[x.rank - 1] = x.rank - 2;
  return transpose(x, perm);
}

/** RMSNorm over the last axis (the table's fused entry). */
export const rmsnorm = (x: Value, w: Value, eps: number): Value => x.graph.apply('rmsnorm', [x, w], { eps });
/** RMSNorm with no gain (x̂ = x / rms): for a norm whose gain the caller multiplied into the matrices that read it. */
export const rmsnormUnit = (x: Value, eps: number): Value =>
  x.graph.apply('rmsnorm', [x, x.graph.constant(new Float64Array(x.shape[x.rank - 1]!).fill(1), [x.shape[x.rank - 1]!])], { eps, unit: true });
/** LayerNorm over the last axis (the table's fused entry). */
export const layernorm = (x: Value, w: Value, b: Value, eps: number): Value => x.graph.apply('layernorm', [x, w, b], { eps });
/** LayerNorm with no gain or bias (x̂): for a norm whose affine part the caller moved into the matrices that read it. */
export const layernormUnit = (x: Value, eps: number): Value => {
  const d = x.shape[x.rank - 1]!;
  return x.graph.apply('layernorm', [x, x.graph.constant(new Float64Array(d).fill(1), [d]), x.graph.constant(new Float64Array(d), [d])], { eps, unit: true });
};
/** Fused rotary positions (float32 graphs; the table's entry says the layout). */
export const ropeFused = (x: Value, cos: Value, sin: Value, interleaved: boolean): Value => x.graph.apply('rope', [x, cos, sin], { interleaved });
/** silu(gate) ⊙ up (the table's fused entry). */
export const swiglu = (gate: Value, up: Value): Value => gate.graph.apply('swiglu', [gate, up]);

/** Exact GELU, torch's default `gelu` (transformers' "gelu"): x·Φ(x) = 0.5·x·(1 + erf(x/√2)) (the table's fused entry). */
export const gelu = (x: Value): Value => x.graph.apply('gelu', [x]);
/** GPT-2's gelu_new: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) (the table's fused entry). */
export const geluTanh = (x: Value): Value => x.graph.apply('geluTanh', [x]);

// Composites built from the table (their gradients follow from the primitives').
export const silu = (x: Value): Value => mul(x, sigmoid(x));
