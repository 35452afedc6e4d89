/**
 * `atlas export`: every record as JSON (`{"records": [...], "scans": [...]}`, one record or scan per line) or as one
 * CSV row each (records only).
 */
import { listScans, scanFeatures } from './scans.js';
import type { Atlas, AtlasRecord, RecordFilter } from './store.js';

export type ExportFormat = 'json' | 'csv';
export const EXPORT_FORMATS: readonly ExportFormat[] = ['json', 'csv'];

/**
 * Writes `{"records": [` … `], "scans": [` … `]}` record by record and scan by scan, so a large atlas never sits in
 * memory as one string. A scan carries its features' distributions and examples (features/scan.ts).
 */
export function exportJson(atlas: Atlas, filter: RecordFilter, write: (chunk: string) => void): number {
  let n = 0;
  write('{"records": [');
  for (const r of atlas.records(filter)) write((n++ ? ',\n' : '\n') + JSON.stringify(r));
  write(n ? '\n], "scans": [' : '], "scans": [');
  let m = 0;
  for (const scan of listScans(atlas, filter)) {
    const { model_hash, model_name, ...rest } = scan;
    write((m++ ? ',\n' : '\n') + JSON.stringify({ ...rest, model: { hash: model_hash, name: model_name }, features: [...scanFeatures(atlas, scan.id)] }));
  }
  write(m ? '\n]}\n' : ']}\n');
  return n;
}

export const CSV_COLUMNS = [
  'id',
  'model_name',
  'model_hash',
  'block_a',
  'block_b',
  'hook',
  'select',
  'feature',
  'settings_hash',
  'status',
  'error',
  'top1_text',
  'top1_ids',
  'topk_ids',
  'act_continuous',
  'act_decoded',
  'act_random',
  'pct_continuous',
  'pct_decoded',
  'pct_random',
  'verdict',
  'objective_initial',
  'objective_final',
  'cosine_mean',
  'baseline_top1_text',
  'baseline_agreement',
  'baseline_activation',
  'optimize_ms',
  'decode_ms',
  'verify_ms',
  'created_at',
  'settings',
] as const;

export function csvField(v: unknown): string {
  if (v === null || v === undefined) return '';
  const s = typeof v === 'string' ? v : String(v);
  return /[",\r\n]|^\s|\s$/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** One CSV row's values. Token id lists are space-separated; top-k rows are separated by "|". */
export function csvRow(r: AtlasRecord): unknown[] {
  const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null);
  const row: Record<(typeof CSV_COLUMNS)[number], unknown> = {
    id: r.id,
    model_name: r.model.name,
    model_hash: r.model.hash,
    block_a: r.blocks[0],
    block_b: r.blocks[1],
    hook: r.hook,
    select: r.select,
    feature: r.feature,
    settings_hash: r.settings_hash,
    status: r.status,
    error: r.error ?? null,
    top1_text: r.topk_text[0] ?? null,
    top1_ids: r.ids.join(' '),
    topk_ids: r.topk.map((row) => row.join(' ')).join('|'),
    act_continuous: r.activation.continuous,
    act_decoded: r.activation.decoded,
    act_random: r.activation.random,
    // Percentiles of real text and verdict codes: empty for records built without --corpus / --scan-db.
    pct_continuous: r.percentile?.continuous ?? null,
    pct_decoded: r.percentile?.decoded ?? null,
    pct_random: r.percentile?.random ?? null,
    verdict: r.verdict ? r.verdict.map((f) => f.code).join(' ') : null,
    objective_initial: r.objective.initial,
    objective_final: r.objective.final,
    cosine_mean: mean(r.free.map((t) => r.cosine[t]!).filter((c) => c !== undefined)),
    baseline_top1_text: r.baseline?.tokens_text[0] ?? null,
    baseline_agreement: r.baseline?.agreement ?? null,
    baseline_activation: r.baseline?.activation ?? null,
    optimize_ms: r.timings?.optimize_ms ?? null,
    decode_ms: r.timings?.decode_ms ?? null,
    verify_ms: r.timings?.verify_ms ?? null,
    created_at: r.created_at,
    settings: JSON.stringify(r.settings),
  };
  return CSV_COLUMNS.map((c) => row[c]);
}

export function exportCsv(atlas: Atlas, filter: RecordFilter, write: (chunk: string) => void): number {
  let n = 0;
  write(CSV_COLUMNS.join(',') + '\n');
  for (const r of atlas.records(filter)) {
    write(csvRow(r).map(csvField).join(',') + '\n');
    n++;
  }
  return n;
}
