import { buildAtlas, buildMappedAtlas, checkMappable, type BuildProgress } from '../atlas/build.js';
import { loadModel } from '../models/load.js';
import { CHANCE_SAMPLE, compareAtlas, parseQuery, type CompareReport, type PairMode } from '../atlas/compare.js';
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
import { checkReachable, parseQueueUrl } from '../atlas/queue/connection.js';
import { readCorpus } from '../features/corpus.js';
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

/** The --map-from model (only its embedding table and tokenizer are read); a file problem names the flag. */
function openSource(file: string) {
  try {
    return loadModel(file);
  } catch (err) {
    if (err instanceof UserError) throw new UserError(`--map-from: ${err.message}`);
    throw err;
  }
}

const buildCommand: Command = {
  name: 'atlas build',
  summary: 'sweep visualize over block ranges × features into an atlas (resumable)',
  notes: [
    '--blocks 1,1-4,5: one sweep per block range; --features 0-63 or 0,5,9-12: one run [:, :, f] per feature.',
    'Run the same command again to resume: finished records are skipped.',
    '--queue: enqueue the batches as jobs for `llm-features worker` processes and collect their results here (--corpus is computed by the workers, --scan-db applied here).',
    '--map-from A: --features are A\'s; each becomes one --direction record in --model along its image under the ridge map between the embedding tables (for atlas compare --pair vocab).',
  ],
  async run(v) {
    const dbPath = v.need('db');
    const { blocks, hook } = blockListAndHook(v);
    const featureSpec = v.str('features');
    if ((featureSpec === undefined) === !v.has('direction')) throw new UserError('--features/--direction: give exactly one of them');
    if (featureSpec !== undefined) parseFeatures(featureSpec);
    const queueSpec = v.str('queue');
    const queue = queueSpec === undefined ? undefined : parseQueueUrl(queueSpec);
    const mapFrom = v.str('map-from');
    if (mapFrom !== undefined && featureSpec === undefined) throw new UserError('--map-from: give --features (the source model\'s features to map), not --direction');
    if (mapFrom !== undefined && queue) throw new UserError('--map-from: not through --queue yet (build mapped records locally)');
    if (queue && v.has('sae')) throw new UserError('--sae: not through --queue yet (build SAE records locally)');
    // Before the atlas is opened: an unreachable queue or an unreadable corpus leaves nothing written.
    if (queue) {
      await checkReachable(queue);
      const corpus = v.str('corpus');
      if (corpus !== undefined) readCorpus(corpus);
    }
    // The source model is only read (its embedding table); it never runs.
    const source = mapFrom === undefined ? undefined : openSource(mapFrom);
    const runner = openRunner(v);
    try {
      const { blocks: _b, hook: _h, ...settings } = visualizeSettings(v, runner.model, blocks[0]!, hook);
      const features = featureSpec === undefined ? [] : parseFeatures(featureSpec, source ? source.config.dim : featureWidth(runner.config, hook, featureMapOf(settings)));
      for (const b of blocks) runner.checkRange(b);
      // Before the atlas is opened: a refused map leaves no file behind.
      if (source) checkMappable(source, runner.model, hook, features, settings.objective.direction);
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
        if (source) {
          const summary = await buildMappedAtlas({ ...request, source });
          progress.end();
          if (v.bool('json')) printJson({ db: dbPath, ...summary });
          else {
            process.stdout.write(
              `${dbPath}: ridge map ${summary.source.name} → ${summary.model.name} over ${summary.map.tokens} shared tokens: R² ${summary.map.r2.toFixed(4)} (λ ${summary.map.lambda.toPrecision(3)}); ` +
                `${summary.total} mapped-direction records for ${summary.directions} features: ` +
                `${summary.inserted} new, ${summary.skipped} already there, ${summary.failed} failed, ${formatDuration(summary.elapsed_ms / 1000)}\n`,
            );
          }
          return;
        }
        // Through the queue, --corpus is named in each job and computed by the workers; --scan-db is applied here.
        const corpus = v.str('corpus');
        const queued = queue ? await queuedBuild({ ...request, queue, tokenizerPath: v.str('tokenizer'), ...(corpus === undefined ? {} : { corpus }) }) : null;
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
  const models = (s: CompareReport['a']) => s.models.map((m) => `${m.name} (${m.hash.slice(0, 12)})`).join(', ');
  const chance = r.chance;
  const beside = (x: number | null, c: number | undefined) => `${num(x)}   chance ${c === undefined ? 'n/a (under two features per settings group)' : num(c)}`;
  const lines = [
    `A: ${r.a.query} — ${models(r.a)}, ${r.a.records} records`,
    `B: ${r.b.query} — ${models(r.b)}, ${r.b.records} records`,
    `pairing: ${r.pairing_note}`,
    ...r.warnings.map((w) => `WARNING: ${w}`),
    `pairs: ${r.pairs} (compared ${r.compared}, failed ${r.failed}; only in A ${r.only_a}, only in B ${r.only_b})`,
    `top-1 agreement:      ${beside(r.top1_agreement, chance?.top1_agreement)}`,
    `mean top-k Jaccard:   ${beside(r.jaccard, chance?.jaccard)}`,
    chance
      ? `  (chance: each A feature against B's records of the other features, same settings; ${chance.pairs} pairs${chance.sampled ? `, sampled: ${CHANCE_SAMPLE} others per feature` : ''})`
      : '  (chance: needs two or more compared features with the same settings)',
    `Spearman of ${r.spearman_of}s: ${num(r.spearman)}`,
    '',
  ];
  const pct = r.spearman_of === 'decoded percentile';
  const head = ['select', 'top1', 'chance', 'jaccard', pct ? 'pct A' : 'dec A', pct ? 'pct B' : 'dec B', 'A top-1', 'B top-1'];
  const rows = r.features.map((p) => [
    p.select,
    num(p.top1_agreement, 2),
    num(p.chance_top1, 2),
    num(p.jaccard, 2),
    pct ? num(p.a.decoded_percentile, 1) : num(p.a.decoded),
    pct ? num(p.b.decoded_percentile, 1) : num(p.b.decoded),
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
  summary: 'pair two sets of atlas records feature by feature; report how much they agree, beside the chance level',
  notes: [
    'QUERY: comma-separated filters model=NAME|HASH-PREFIX, blocks=A-B, hook=H, settings=HASH-PREFIX; e.g. --a blocks=1 --b blocks=5',
    'Two models: name the model on both sides. Index pairing needs one embedding space (same model or same embedding table); otherwise --pair vocab or --pair index.',
  ],
  async run(v) {
    const a = parseQuery(v.need('a'), 'a');
    const b = parseQuery(v.need('b'), 'b');
    const pair = v.str('pair') as PairMode;
    const atlas = Atlas.open(v.need('db'), { readonly: true });
    try {
      const report = compareAtlas(atlas, a, b, pair);
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
      const maps = atlas.directionMaps();
      if (v.bool('json')) {
        printJson({ db: dbPath, schema_version: atlas.schemaVersion, records: total, models, groups, direction_maps: maps });
        return;
      }
      const lines = [`${dbPath}: atlas schema v${atlas.schemaVersion}, ${total} records, ${models.length} model${models.length === 1 ? '' : 's'}`];
      for (const m of models) {
        const shape = m.architecture ? `  ${m.architecture}, ${m.n_layers} blocks, dim ${m.dim}, vocab ${m.vocab}` : '';
        // Models with one embedding table pair by index in atlas compare; the table hash shows which do.
        const table = m.embedding_hash ? `, embedding table ${m.embedding_hash.slice(0, 12)}` : '';
        lines.push(`  model ${m.hash.slice(0, 12)}  ${m.name}${shape}${table}`);
      }
      for (const d of maps) {
        lines.push(`  map ${d.source_name} → ${d.target_name}: ridge R² ${d.r2.toFixed(4)} over ${d.tokens} shared tokens, ${d.features} features mapped (atlas compare --pair vocab)`);
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
