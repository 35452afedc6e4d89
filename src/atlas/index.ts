/** The atlas library: a store of visualize results, how to build, compare and export it. */
export { Atlas, type AtlasGroup, type AtlasModel, type AtlasRecord, type OpenOptions, type RecordFilter } from './store.js';
export { buildAtlas, type BuildProgress, type BuildRequest, type BuildSummary } from './build.js';
export { compareAtlas, compareRecords, parseQuery, formatQuery, spearman, meanJaccard, top1Agreement, type CompareReport, type ComparePair } from './compare.js';
export { exportCsv, exportJson, CSV_COLUMNS, EXPORT_FORMATS, type ExportFormat } from './export.js';
export { modelHash, hashFile, modelFiles } from './hash.js';
export { canonicalJson, sha256Hex } from './canonical.js';
export { parseFeatures, featureSelect } from './settings.js';
export { SCHEMA_VERSION, SCHEMA_V1 } from './schema.js';
export { buildScan, expectsBos, type ScanRequest, type ScanSummary } from './scan-build.js';
export { listScans, scanFeatures, scanCalibration, type StoredScan } from './scans.js';
export { scanReference } from './scan-reference.js';
