/** The atlas library: a store of visualize results, how to build, compare and export it. */
export { Atlas, type AtlasGroup, type AtlasModel, type AtlasRecord, type OpenOptions, type RecordFilter } from './store.js';
export { buildAtlas, buildMappedAtlas, checkMappable, MAPPABLE_HOOKS, type BuildProgress, type BuildRequest, type BuildSummary, type MappedBuildRequest, type MappedBuildSummary } from './build.js';
export { compareAtlas, compareRecords, parseQuery, formatQuery, spearman, meanJaccard, top1Agreement, CHANCE_SAMPLE, type CompareReport, type ComparePair, type CompareChance, type CompareOptions, type PairMode } from './compare.js';
export { exportCsv, exportJson, CSV_COLUMNS, EXPORT_FORMATS, type ExportFormat } from './export.js';
export { modelHash, hashFile, modelFiles, embeddingHash, vocabHash } from './hash.js';
export { fitDirectionMap, mappedDirection, RIDGE_LAMBDA_REL, type DirectionMap } from '../features/direction-map.js';
export { canonicalJson, sha256Hex } from './canonical.js';
export { parseFeatures, featureSelect } from './settings.js';
export { SCHEMA_VERSION, SCHEMA_V1 } from './schema.js';
export { buildScan, expectsBos, type ScanRequest, type ScanSummary } from './scan-build.js';
export { listScans, scanFeatures, scanCalibration, type StoredScan } from './scans.js';
export { scanReference } from './scan-reference.js';
