export { Graph, type ExternalLocation } from './graph.js';
export { Value, type ElemType } from './value.js';
export { grad } from './autodiff.js';
export * from './ops.js';
