/**
 * The objective graph's inputs for the profiling children (profile.ts, nodes.ts): a seeded random start x and an L1
 * objective spread over every feature, so every node of the step does real work.
 */
import * as ort from 'onnxruntime-node';
import { normalStream } from '../src/util/random.js';

export function objectiveFeeds(B: number, T: number, D: number, F: number): Record<string, ort.Tensor> {
  const normal = normalStream(1);
  return {
    x: new ort.Tensor('float32', Float32Array.from({ length: B * T * D }, () => normal()), [B, T, D]),
    l1: new ort.Tensor('float32', new Float32Array(B * T * F).fill(1 / F), [B, T, F]),
    lin: new ort.Tensor('float32', new Float32Array(B * T * F), [B, T, F]),
    C: new ort.Tensor('float32', new Float32Array(B).fill(100), [B, 1, 1]),
    report: new ort.Tensor('float32', new Float32Array(B * T * F), [B, T, F]),
  };
}
