// Does onnxruntime-node's bundled WebGPU execution provider run float16 kernels on this machine's adapter, i.e. does
// the adapter expose WebGPU's `shader-f16` feature to it? (Issue 19 item 3: half-precision weights on the GPU only
// where it does.) A 4×4 float16 MatMul + Add: the run either returns the float16 result, checked here against a direct
// computation, or fails with the EP's reason. (Run with LLMF_PROBE_VERBOSE=1 for onnxruntime's log on stderr, which
// lists where each node was placed; on the CPU, onnxruntime computes float16 through inserted Casts to float32.)
//
//   VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json XDG_RUNTIME_DIR=$(mktemp -d) node scripts/probe-webgpu-f16.mjs
//
// Prints one JSON line {ep, float16_runs, max_abs_error | reason} (float16_runs false: the adapter lacks shader-f16; null: another failure); exit 0 either way (the answer is the output).
import onnxProto from 'onnx-proto';
import ort from 'onnxruntime-node';

const ep = process.argv[2] ?? 'webgpu';
const onnx = onnxProto.onnx;
const F16 = onnx.TensorProto.DataType.FLOAT16;
const vi = (name) => ({ name, type: { tensorType: { elemType: F16, shape: { dim: [{ dimValue: 4 }, { dimValue: 4 }] } } } });
const model = onnx.ModelProto.create({
  irVersion: 8,
  opsetImport: [{ domain: '', version: 18 }],
  graph: {
    name: 'f16probe',
    node: [
      { opType: 'MatMul', input: ['a', 'b'], output: ['m'], name: 'mm' },
      { opType: 'Add', input: ['m', 'a'], output: ['y'], name: 'add' },
    ],
    input: [vi('a'), vi('b')],
    output: [vi('y')],
  },
});

// Exact float16 encodings of small dyadic values (k/8, 0, 1): no rounding, so the expected result is exact too.
const toHalf = (x) => {
  if (x === 0) return 0;
  const e = Math.floor(Math.log2(x));
  return ((e + 15) << 10) | Math.round((x / 2 ** e - 1) * 1024);
};
const fromHalf = (h) => {
  const e = (h >> 10) & 31;
  const m = h & 1023;
  return e === 0 ? m * 2 ** -24 : (1 + m / 1024) * 2 ** (e - 15);
};
const A = Array.from({ length: 16 }, (_, i) => i / 8);
const B = Array.from({ length: 16 }, (_, i) => (i % 5 === 0 ? 1 : 0));
const want = A.map((_, k) => {
  const [r, c] = [Math.floor(k / 4), k % 4];
  let s = 0;
  for (let j = 0; j < 4; j++) s += A[r * 4 + j] * B[j * 4 + c];
  return s + A[k];
});

const verbose = process.env.LLMF_PROBE_VERBOSE === '1';
let out;
try {
  const session = await ort.InferenceSession.create(onnx.ModelProto.encode(model).finish(), { executionProviders: [ep], logSeverityLevel: verbose ? 0 : 4, logVerbosityLevel: 0 });
  const t = (xs) => new ort.Tensor('float16', Uint16Array.from(xs, toHalf), [4, 4]);
  const r = await session.run({ a: t(A), b: t(B) });
  const got = Array.from(r.y.data, fromHalf);
  out = { ep, float16_runs: true, max_abs_error: Math.max(...got.map((g, i) => Math.abs(g - want[i]))) };
} catch (err) {
  const reason = String(err.message ?? err).split('\n')[0];
  out = { ep, float16_runs: /requires f16 but the device does not support it/.test(reason) ? false : null, reason };
}
process.stdout.write(JSON.stringify(out) + '\n');
