/**
 * llm-features as a library: load a checkpoint, run its blocks, differentiate through them, visualize features.
 *
 *   import { loadModel, ModelRunner, Visualizer, decoderFor, DEFAULT_SETTINGS } from 'llm-features';
 */
export { UserError } from './errors.js';
export * as graph from './graph/index.js';
export { loadModel, headIsTied, type LoadedModel, type LoadOptions, type SourceFormat } from './models/load.js';
export { HOOKS, hookWidth, type Hook, type ModelConfig } from './models/config.js';
export type { BlockRange } from './models/transformer.js';
export type { Tokenizer } from './tokenizers/types.js';
export type { StoredTensor, StoredDType } from './formats/types.js';
export { readGguf } from './formats/gguf.js';
export { readLlama2c } from './formats/llama2c.js';
export { readSafetensors } from './formats/safetensors.js';
export { ModelRunner, type Hidden } from './engine/runner.js';
export { GraphSession, type SessionSettings } from './engine/session.js';
export { generate, type GenerateOptions, type Generation } from './engine/generate.js';
export { expandSelection, parseSelection, selectionMask, type SelectionRun } from './features/selection.js';
export { objectiveWeights, objectiveStep, matchStep, fluencyStep, buildObjective, type ObjectiveKind, type ObjectiveSpec, type ObjectiveFeeds, type ObjectiveResult } from './features/objective.js';
export { Decoder, identityRate, typicalNeighbourCosine, type DecodeMode, type EmbeddingTable } from './features/decode.js';
export { decoderFor, embeddingTable } from './features/embeddings.js';
export { Visualizer, DEFAULT_SETTINGS, skipShare, type SkipShare, type RunResult, type VisualizeSettings, type VisualizeRequest } from './features/visualize.js';
export { attribute, type Attribution } from './features/attribute.js';
export { exhaustiveScores, summarizeExhaustive, type ExhaustiveResult } from './features/exhaustive.js';
export { refineActivation, gcg, epo, DEFAULT_REFINE, type RefineSettings, type Refined, type Scorer } from './features/refine/index.js';
export { invert, DEFAULT_INVERT, type InvertSettings, type InvertResult } from './features/invert.js';
export { readCorpus, splitStories, parseJsonl, tokenizeStories, cutWindows, slidingStarts, type Corpus, type Window } from './features/corpus.js';
export { scanCorpus, DEFAULT_SCAN, type ScanSettings, type FeatureScan, type ScanExample } from './features/scan.js';
export { percentileRank, quantileSorted, type DistributionSummary } from './features/quantiles.js';
export { corpusReference, referenceDistributions, applyPercentiles, type Percentiles, type CalibrationInfo, type ReferenceProvider } from './features/calibrate.js';
export { verdictOf, VERDICT_THRESHOLDS, type Finding } from './features/verdict.js';
export { logitEffects, selectionVector, LOGIT_K, type LogitEffects, type LogitToken } from './features/logit-effects.js';
export { pairwiseAgreement, stabilityOf, startSeed, bestStart, type Stability } from './features/stability.js';
export { writeSamples } from './engine/samples.js';
export { writeRandomModel } from './models/random-model.js';
export * as atlas from './atlas/index.js';
export * as server from './server/index.js';
export { SPECS, specOf } from './models/registry.js';
export type { ArchitectureSpec, TensorSpec } from './models/spec.js';
export { resolveBlocksAndHook, parseHookName, TRANSFORMER_LENS_HOOKS } from './models/hooks.js';
export { parseHubId, hubCacheDir, type HubId } from './hub/cache.js';
export { resolveHubModel, type HubRequest } from './hub/download.js';
