import { buildAtlas, type BuildProgress } from '../atlas/build.js';
import { compareAtlas, parseQuery, type CompareReport } from '../atlas/compare.js';
import { exportCsv, exportJson, type ExportFormat } from '../atlas/export.js';
import { formatDuration, formatProgress } from '../atlas/progress.js';
import { parseFeatures } from '../atlas/settings.js';
import { Atlas } from '../atlas/store.js';
import { runOptions } from '../features/settings.js';
import { featureMapOf, featureWidth } from '../features/sae.js';
import { openRunner, referenceFromFlags } from './common.js';
import { printJson, type Command } from './command.js';
import { UserError } from '../errors.js';
import { blockListAndHook, visualizeSettings } from './settings.js';
import { scanCommand } from './atlas-scan.js';
import { listScans } from '../atlas/scans.js';
import { queuedBuild } from '../atlas/queue/collector.js';
import { parseQueueUrl } from '../atlas/queue/connection.js';
import { formatQueuedFailures } from './queue.js';

/** Progress on stderr: a redrawn bar on a terminal, otherwise a line every 10 s and at the end. */
function progressReporter(): { update: (p: BuildProgress) => void; end: () => void } {
  const tty = process.stderr.isTTY === true;
  let lastLine = 0;
  let last: BuildProgress | null = null;
  let drawn = false;
  return {
    update(p) {
      last = p;
      const now = Date.now();
      if (tty) {
        process.stderr.write(`\r${formatProgress(p)}\x1b[K`);
        drawn = true;
      } else if (now - lastLine >= 10_000 && p.done < p.total) {
        process.stderr.write(formatProgress(p) + '\n');
        lastLine = now;
      }
    },
    end() {
      if (tty && drawn) process.stderr.write('\n');
      else if (!tty && last) process.stderr.write(formatProgress(last) + '\n');
    },
  };
}

const buildCommand: Command = {
  name: 'atlas build',
  summary: 'sweep visualize over block ranges × features into an atlas (resumable)',
  notes: [
    '--blocks 1,1-4,5: one sweep per block range; --features 0-63 or 0,5,9-12: one run [:, :, f] per feature.',
    'Run the same command again to resume: finished records are skipped.',
    '--queue: enqueue the batches as jobs for `llm-features worker` processes and collect their results here.',
  ],
  async run(v) {
    const dbPath = v.need('db');
    const { blocks, hook } = blockListAndHook(v);
    const featureSpec = v.str('features');
    if ((featureSpec === undefined) === !v.has('direction')) throw new UserError('--features/--direction: give exactly one of them');
    if (featureSpec !== undefined) parseFeatures(featureSpec);
    const queueSpec = v.str('queue');
    const queue = queueSpec === undefined ? undefined : parseQueueUrl(queueSpec);
    if (queue && v.has('direction')) throw new UserError('--direction: not through --queue yet (build direction records locally)');
    if (queue && v.has('sae')) throw new UserError('--sae: not through --queue yet (build SAE records locally)');
    if (queue && (v.has('corpus') || v.has('scan-db'))) throw new UserError('--queue: percentiles (--corpus/--scan-db) are not computed by workers yet');
    const runner = openRunner(v);
    try {
      const { blocks: _b, hook: _h, ...settings } = visualizeSettings(v, runner.model, blocks[0]!, hook);
      const features = featureSpec === undefined ? [] : parseFeatures(featureSpec, featureWidth(runner.config, hook, featureMapOf(settings)));
      for (const b of blocks) runner.checkRange(b);
      const reference = referenceFromFlags(v, runner, dbPath);
      const atlas = Atlas.open(dbPath);
      const progress = progressReporter();
      try {
        const request = {
          atlas,
          runner,
          blocks,
          hook,
          features,
          settings,
          runOptions: runOptions('atlas build', v.given),
          onProgress: progress.update,
          onHash: (file: string, bytes: number) => process.stderr.write(`hashing ${file} (${(bytes / 2 ** 20).toFixed(1)} MiB)…\n`),
          ...(reference ? { reference } : {}),
        };
        const queued = queue ? await queuedBuild({ ...request, queue, tokenizerPath: v.str('tokenizer') }) : null;
        const summary = queued ?? (await buildAtlas(request));
        progress.end();
        if (queued) process.stderr.write(formatQueuedFailures(queued));
        if (v.bool('json')) printJson({ db: dbPath, ...summary });
        else {
          process.stdout.write(
            `${dbPath}: ${summary.total} records for ${summary.model.name} (${summary.model.hash.slice(0, 12)}), settings ${summary.settings_hash.slice(0, 12)}: ` +
              `${summary.inserted} new, ${summary.skipped} already there, ${summary.failed} failed, ${formatDuration(summary.elapsed_ms / 1000)}\n`,
          );
        }
      } finally {
        atlas.close();
      }
    } finally {
      await runner.close();
    }
  },
};

const num = (x: number | null, digits = 3) => (x === null ? 'n/a' : x.toFixed(digits));

export function formatCompare(r: CompareReport): string {
  const lines = [
    `A: ${r.a.query} (${r.a.records} records)   B: ${r.b.query} (${r.b.records} records)`,
    `pairs: ${r.pairs} (compared ${r.compared}, failed ${r.failed}; only in A ${r.only_a}, only in B ${r.only_b})`,
    `top-1 agreement:            ${num(r.top1_agreement)}`,
    `mean top-k Jaccard:         ${num(r.jaccard)}`,
    `Spearman (continuous act.): ${num(r.spearman)}`,
    '',
  ];
  const head = ['select', 'top1', 'jaccard', 'act A', 'act B', 'A top-1', 'B top-1'];
  const rows = r.features.map((p) => [
    p.select,
    num(p.top1_agreement, 2),
    num(p.jaccard, 2),
    num(p.a.continuous),
    num(p.b.continuous),
    p.a.status === 'ok' ? JSON.stringify(p.a.top1_text) : 'failed',
    p.b.status === 'ok' ? JSON.stringify(p.b.top1_text) : 'failed',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const fmt = (row: string[]) => row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  lines.push(fmt(head), ...rows.map(fmt));
  return lines.join('\n') + '\n';
}

const compareCommand: Command = {
  name: 'atlas compare',
  summary: 'pair two sets of atlas records by selection and settings; report how much they agree',
  notes: ['QUERY: comma-separated filters model=NAME|HASH-PREFIX, blocks=A-B, hook=H, settings=HASH-PREFIX; e.g. --a blocks=1 --b blocks=5'],
  async run(v) {
    const a = parseQuery(v.need('a'), 'a');
    const b = parseQuery(v.need('b'), 'b');
    const atlas = Atlas.open(v.need('db'), { readonly: true });
    try {
      const report = compareAtlas(atlas, a, b);
      if (v.bool('json')) printJson(report);
      else process.stdout.write(formatCompare(report));
    } finally {
      atlas.close();
    }
  },
};

const exportCommand: Command = {
  name: 'atlas export',
  summary: 'write atlas records as JSON ({"records": [...]}) or CSV on stdout',
  notes: ['QUERY as for atlas compare, e.g. --where model=stories260K.bin,blocks=1'],
  async run(v) {
    const format = v.str('format') as ExportFormat;
    const where = v.str('where');
    const filter = where === undefined ? {} : parseQuery(where, 'where');
    const atlas = Atlas.open(v.need('db'), { readonly: true });
    // `atlas export | head`: a closed pipe ends the export quietly.
    process.stdout.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err;
      atlas.close();
      process.exit(0);
    });
    try {
      const write = (s: string) => void process.stdout.write(s);
      if (format === 'json') exportJson(atlas, filter, write);
      else exportCsv(atlas, filter, write);
    } finally {
      atlas.close();
    }
  },
};

const lsCommand: Command = {
  name: 'atlas ls',
  summary: 'list what an atlas holds: models, record groups and corpus scans',
  async run(v) {
    const dbPath = v.need('db');
    const atlas = Atlas.open(dbPath, { readonly: true });
    try {
      const models = atlas.models();
      const groups = atlas.groups();
      const total = groups.reduce((n, g) => n + g.records, 0);
      const scans = listScans(atlas);
      if (v.bool('json')) {
        printJson({ db: dbPath, schema_version: atlas.schemaVersion, records: total, models, groups });
        return;
      }
      const lines = [`${dbPath}: atlas schema v${atlas.schemaVersion}, ${total} records, ${models.length} model${models.length === 1 ? '' : 's'}`];
      for (const m of models) {
        const shape = m.architecture ? `  ${m.architecture}, ${m.n_layers} blocks, dim ${m.dim}, vocab ${m.vocab}` : '';
        lines.push(`  model ${m.hash.slice(0, 12)}  ${m.name}${shape}`);
      }
      if (groups.length) {
        const head = ['model', 'blocks', 'hook', 'settings', 'records', 'ok', 'failed', 'features'];
        const rows = groups.map((g) => [
          g.model_name,
          g.blocks[0] === g.blocks[1] ? String(g.blocks[0]) : `${g.blocks[0]}-${g.blocks[1]}`,
          g.hook,
          g.settings_hash.slice(0, 12),
          String(g.records),
          String(g.ok),
          String(g.failed),
          g.features ? `${g.features[0]}-${g.features[1]}` : '-',
        ]);
        const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
        const fmt = (row: string[]) => '  ' + row.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
        lines.push('', fmt(head), ...rows.map(fmt));
      }
      for (const s of scans) {
        const calib = s.settings.calibrate_tokens ? `, calibration for ${s.settings.calibrate_tokens} tokens${s.settings.calibrate_bos ? ' with BOS' : ''}` : '';
        lines.push(
          `  scan ${s.id}  ${s.model_name} blocks ${s.blocks[0]}-${s.blocks[1]} ${s.hook}${s.settings.direction ? ' (direction)' : ''}: ${s.features} features over ${s.corpus_name} ` +
            `(${s.windows} windows of ≤ ${s.settings.window} tokens, ${s.tokens} tokens${calib})`,
        );
      }
      process.stdout.write(lines.join('\n') + '\n');
    } finally {
      atlas.close();
    }
  },
};

export const atlasCommand: Command = {
  name: 'atlas',
  summary: 'build, compare, export and list atlases of visualize results (SQLite)',
  async run() {
    throw new Error('atlas: dispatched to a subcommand by main');
  },
  subcommands: [buildCommand, scanCommand, compareCommand, exportCommand, lsCommand],
};
