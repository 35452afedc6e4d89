import onnxProto from 'onnx-proto';
import type { onnx as O } from 'onnx-proto';
import { OPS, type Attrs, type OpName } from './ops.js';
import { Value, type ElemType } from './value.js';

// onnx-proto is CommonJS: take its namespace from the default export.
const { onnx } = onnxProto;

/** Where an initializer's bytes live in a file outside the model (ONNX external data). */
export interface ExternalLocation {
  /** Path relative to the session's external-data folder (see engine/session.ts). */
  location: string;
  offset: number;
  length: number;
}

/** A raw attribute value for an ONNX node, typed explicitly (onnxruntime rejects an integral float typed as INT). */
export type RawAttr =
  | { int: number }
  | { float: number }
  | { ints: number[] }
  | { floats: number[] }
  | { string: string };

/** One differentiable op application, recorded so that `grad` can walk it backwards. */
export interface TapeEntry {
  op: OpName;
  inputs: Value[];
  output: Value;
  attrs: Attrs;
  /** What the op's emit rule saved for its VJP (see OpDef.saved). */
  saved: Value[];
  /** A multi-output op's outputs after the first (see OpDef.more). */
  more: Value[];
}

const ONNX_TYPE: Record<ElemType, number> = {
  float32: onnx.TensorProto.DataType.FLOAT,
  float64: onnx.TensorProto.DataType.DOUBLE,
  int64: onnx.TensorProto.DataType.INT64,
};

/**
 * Builds one ONNX graph. Model code calls the functions in ops.ts (add, matmul, …), which land in `apply`: the op's
 * shape rule checks the operands, its emit rule writes ONNX nodes, and — when any operand requires a gradient — the
 * application is recorded on the tape. `grad` (autodiff.ts) later turns the tape into ordinary backward nodes.
 */
/**
 * The execution provider a graph is emitted for. Op rules stay one table; an op whose usual ONNX form has no kernel
 * on a provider emits an equivalent form there (see `linear` and `sign` in ops.ts).
 */
export type Target = 'cpu' | 'webgpu';

/** Which op application wrote a value: its node(s) are g.nodes[nodeIndex, nodeIndex + nodeCount). */
export interface Producer {
  op: OpName;
  inputs: Value[];
  nodeIndex: number;
  nodeCount: number;
  /** Set when a later fused rule has taken the node over (it must not be taken twice). */
  absorbed?: boolean;
}

export class Graph {
  readonly float: 'float32' | 'float64';
  readonly target: Target;
  /**
   * Whether model code may combine weights in the graph — concatenate q/k/v (and gate/up) into one product, multiply
   * a norm's gain into the matrices after it. onnxruntime folds such weight-only nodes once at session creation, so a
   * step runs fewer, larger products. Folding is one of onnxruntime's basic optimisations, run before nodes are
   * assigned to a provider, so it happens for the WebGPU target too (the weight-only Concats are gone from the
   * kernels a WebGPU step runs). The folded copies are anonymous memory, which is why `--low-memory` (weights left
   * file-backed and shared) turns it off.
   */
  readonly foldWeights: boolean;
  // The ONNX protobuf types stay inside the package: members typed with them are @internal (stripped from the
  // published declarations, which therefore compile in a consumer without onnx-proto's types).
  /** @internal */
  readonly nodes: O.INodeProto[] = [];
  /** @internal */
  readonly initializers: O.ITensorProto[] = [];
  readonly inputs: Value[] = [];
  readonly outputs: { value: Value; name: string }[] = [];
  readonly tape: TapeEntry[] = [];
  /** Off while emitting backward nodes, so the backward pass is not itself taped. */
  taping = true;
  private counter = 0;
  private readonly constCache = new Map<string, Value>();
  private readonly external = new Map<O.ITensorProto, ExternalLocation>();

  /** Which op application wrote each value, and where its node sits (for fused rules that absorb their input's node). */
  private readonly producers = new Map<string, Producer>();

  constructor(opts: { float?: 'float32' | 'float64'; target?: Target; foldWeights?: boolean } = {}) {
    this.float = opts.float ?? 'float32';
    this.target = opts.target ?? 'cpu';
    this.foldWeights = opts.foldWeights ?? true;
  }

  /** The op application that produced `v` (null for inputs, weights and constants). */
  producerOf(v: Value): Producer | null {
    return this.producers.get(v.name) ?? null;
  }

  fresh(prefix = 'v'): string {
    return `${prefix}${this.counter++}`;
  }

  /** A graph input (fed at run time). `grad: true` marks it as something we differentiate with respect to. */
  input(name: string, shape: readonly number[], opts: { dtype?: ElemType; grad?: boolean } = {}): Value {
    const v = new Value(this, name, [...shape], opts.dtype ?? this.float, opts.grad ?? false);
    this.inputs.push(v);
    return v;
  }

  output(value: Value, name?: string): Value {
    const outName = name ?? value.name;
    if (name && name !== value.name) {
      // Graph outputs need their own name; an Identity keeps the builder's names internal.
      this.node('Identity', [value.name], [outName]);
    }
    this.outputs.push({ value: new Value(this, outName, value.shape, value.dtype, false), name: outName });
    return value;
  }

  /**
   * A weight: float32 bytes either referenced in a file (memory-mapped by onnxruntime) or given inline. In a float64
   * graph (used by the gradient tests) the float32 weight is cast once, in the graph.
   */
  weight(name: string, shape: readonly number[], source: ExternalLocation | Float32Array): Value {
    const t: O.ITensorProto = { name, dims: [...shape], dataType: onnx.TensorProto.DataType.FLOAT };
    if (source instanceof Float32Array) {
      if (source.length !== shape.reduce((a, b) => a * b, 1)) throw new Error(`weight ${name}: data length does not match shape`);
      t.rawData = new Uint8Array(source.buffer, source.byteOffset, source.byteLength);
    } else {
      // Read at serialisation: callers may fill the location in after building (see WeightBinder.materialize).
      t.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
      this.external.set(t, source);
    }
    this.initializers.push(t);
    const v = new Value(this, name, [...shape], 'float32', false);
    return this.float === 'float32' ? v : this.cast(v, 'float64');
  }

  /** A constant tensor in the graph's float type (or int64), deduplicated by content. */
  constant(data: ArrayLike<number>, shape: readonly number[], dtype: ElemType = this.float): Value {
    const key = `${dtype}|${shape.join(',')}|${Array.from(data).join(',')}`;
    const cached = key.length < 4096 ? this.constCache.get(key) : undefined;
    if (cached) return cached;
    const name = this.fresh('c');
    const t: O.ITensorProto = { name, dims: [...shape], dataType: ONNX_TYPE[dtype] };
    const raw =
      dtype === 'int64'
        ? BigInt64Array.from(Array.from(data), (x) => BigInt(x))
        : dtype === 'float64'
          ? Float64Array.from(data)
          : Float32Array.from(data);
    t.rawData = new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength);
    this.initializers.push(t);
    const v = new Value(this, name, [...shape], dtype, false);
    if (key.length < 4096) this.constCache.set(key, v);
    return v;
  }

  scalar(x: number): Value {
    return this.constant([x], [], this.float);
  }

  ints(xs: readonly number[]): Value {
    return this.constant(xs, [xs.length], 'int64');
  }

  cast(v: Value, to: ElemType): Value {
    if (v.dtype === to) return v;
    const out = this.fresh();
    this.node('Cast', [v.name], [out], { to: { int: ONNX_TYPE[to] } });
    return new Value(this, out, v.shape, to, false);
  }

  /** Replace node `index` by another (a fused rule absorbing the node that produced its input); same name scheme. */
  replaceNode(index: number, opType: string, inputs: string[], outputs: string[], attrs: Record<string, RawAttr>, domain: string): void {
    const before = this.nodes.length;
    this.node(opType, inputs, outputs, attrs, domain);
    const node = this.nodes.pop()!;
    node.name = `${opType}_${index}`;
    this.nodes[index] = node;
    if (this.nodes.length !== before) throw new Error('replaceNode: node count changed');
  }

  /** Emit one raw ONNX node. Op rules use this; model code should use the functions in ops.ts. */
  node(opType: string, inputs: string[], outputs: string[], attrs: Record<string, RawAttr> = {}, domain = ''): void {
    const attribute: O.IAttributeProto[] = Object.entries(attrs).map(([name, a]) => {
      if ('int' in a) return { name, type: onnx.AttributeProto.AttributeType.INT, i: a.int };
      if ('float' in a) return { name, type: onnx.AttributeProto.AttributeType.FLOAT, f: a.float };
      if ('ints' in a) return { name, type: onnx.AttributeProto.AttributeType.INTS, ints: a.ints };
      if ('floats' in a) return { name, type: onnx.AttributeProto.AttributeType.FLOATS, floats: a.floats };
      return { name, type: onnx.AttributeProto.AttributeType.STRING, s: new TextEncoder().encode(a.string) };
    });
    this.nodes.push({ opType, input: inputs, output: outputs, attribute, domain, name: `${opType}_${this.nodes.length}` });
  }

  /** Apply an op from the table: check shapes, emit its nodes, tape it when it is on a gradient path. */
  apply(op: OpName, inputs: Value[], attrs: Attrs = {}): Value {
    return this.applyAll(op, inputs, attrs)[0]!;
  }

  /** `apply` for an op with several outputs (split): all of them, in order. */
  applyAll(op: OpName, inputs: Value[], attrs: Attrs = {}): Value[] {
    for (const x of inputs) {
      if (x.graph !== this) throw new Error(`${op}: operand ${x.name} belongs to another graph`);
    }
    const def = OPS[op];
    const { shape, dtype } = def.shape(inputs, attrs);
    const onGradPath = this.taping && inputs.some((x) => x.requiresGrad);
    if (onGradPath && !def.vjp && !def.zeroGrad) {
      throw new Error(`${op} has no gradient rule, but an operand requires a gradient`);
    }
    const requiresGrad = onGradPath && def.vjp !== undefined;
    const out = new Value(this, this.fresh(), shape, dtype, requiresGrad);
    const more = (def.more?.(inputs, attrs) ?? []).map((s) => new Value(this, this.fresh(), s.shape, s.dtype, requiresGrad));
    const saved = (def.saved?.(inputs, attrs) ?? []).map((s) => new Value(this, this.fresh(), s.shape, s.dtype, false));
    const nodeIndex = this.nodes.length;
    def.emit(this, inputs, attrs, out.name, saved.map((v) => v.name), more.map((v) => v.name));
    const record: Producer = { op, inputs, nodeIndex, nodeCount: this.nodes.length - nodeIndex };
    for (const v of [out, ...more]) this.producers.set(v.name, record);
    if (requiresGrad) this.tape.push({ op, inputs, output: out, attrs, saved, more });
    return [out, ...more];
  }

  /** Serialise to an ONNX model (IR 8, opset 18 + com.microsoft 1).
   *  @internal */
  toModel(): O.ModelProto {
    for (const [t, loc] of this.external) {
      if (loc.length <= 0 || loc.location === '') throw new Error(`weight ${t.name}: external location was never set`);
      t.externalData = [
        { key: 'location', value: loc.location },
        { key: 'offset', value: String(loc.offset) },
        { key: 'length', value: String(loc.length) },
      ];
    }
    const valueInfo = (v: Value, name = v.name): O.IValueInfoProto => ({
      name,
      type: { tensorType: { elemType: ONNX_TYPE[v.dtype], shape: { dim: v.shape.map((d) => ({ dimValue: d })) } } },
    });
    return onnx.ModelProto.create({
      irVersion: 8,
      producerName: 'llm-features',
      opsetImport: [
        { domain: '', version: 18 },
        { domain: 'com.microsoft', version: 1 },
      ],
      graph: {
        name: 'llm_features',
        node: this.nodes,
        initializer: this.initializers,
        input: this.inputs.map((v) => valueInfo(v)),
        output: this.outputs.map((o) => valueInfo(o.value, o.name)),
      },
    });
  }

  serialize(): Uint8Array {
    return onnx.ModelProto.encode(this.toModel()).finish();
  }
}
