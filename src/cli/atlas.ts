import { buildAtlas, type BuildProgress } from '../atlas/build.js';
import { compareAtlas, parseQuery, type CompareReport } from '../atlas/compare.js';
import { EXPORT_FORMATS, exportCsv, exportJson, type ExportFormat } from '../atlas/export.js';
import { formatDuration, formatProgress } from '../atlas/progress.js';
import { parseBlockList, parseFeatures } from '../atlas/settings.js';
import { oneOf, parseHook, SETTINGS_FLAGS, settingsFromFlags } from './settings.js';
import { Atlas } from '../atlas/store.js';
import { hookWidth } from '../models/config.js';
import { optString, requireString } from './args.js';
import { MODEL_FLAGS, openRunner } from './common.js';
import { printJson, type Command } from './command.js';
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
  name: 'build',
  summary: 'sweep visualize over block ranges × features into an atlas (resumable)',
  usage:
    'llm-features atlas build --model PATH --db FILE --blocks LIST --features SPEC [--hook resid|mlp|attn]\n' +
    '  [visualize settings: --tokens N --steps N --lr X --lr-end X --optimizer sgd|adam --objective l1|sum|max --C X --topk K\n' +
    '   --decode pinv|nearest-cosine|nearest-l2 --init randn|random-tokens|tokens:TEXT --prefix TEXT --suffix TEXT --bos --seed S\n' +
    '   --random-draws N] [--batch N] [--json] [--queue redis://HOST:PORT[/DB]]\n' +
    '  --blocks 1,1-4,5: one sweep per block range; --features 0-63 or 0,5,9-12: one run [:, :, f] per feature.\n' +
    '  Run the same command again to resume: finished records are skipped.\n' +
    '  --queue: enqueue the batches as jobs for `llm-features worker` processes and collect their results here.',
  flags: { ...MODEL_FLAGS, db: 'string', blocks: 'string', hook: 'string', features: 'string', ...SETTINGS_FLAGS, json: 'bool', queue: 'string' },
  async run(flags) {
    const dbPath = requireString(flags, 'db');
    const blocks = parseBlockList(requireString(flags, 'blocks'));
    const hook = parseHook(flags);
    const featureSpec = requireString(flags, 'features');
    parseFeatures(featureSpec);
    const queueSpec = optString(flags, 'queue');
    const queue = queueSpec === undefined ? undefined : parseQueueUrl(queueSpec);
    const runner = openRunner(flags);
    try {
      const features = parseFeatures(featureSpec, hookWidth(runner.config, hook));
      for (const b of blocks) runner.checkRange(b);
      const { blocks: _b, hook: _h, ...settings } = settingsFromFlags(flags, runner.model, blocks[0]!, hook);
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
          onProgress: progress.update,
          onHash: (file: string, bytes: number) => process.stderr.write(`hashing ${file} (${(bytes / 2 ** 20).toFixed(1)} MiB)…\n`),
        };
        const queued = queue ? await queuedBuild({ ...request, queue, tokenizerPath: optString(flags, 'tokenizer') }) : null;
        const summary = queued ?? (await buildAtlas(request));
        progress.end();
        if (queued) process.stderr.write(formatQueuedFailures(queued));
        if (flags.json) printJson({ db: dbPath, ...summary });
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
  name: 'compare',
  summary: 'pair two sets of atlas records by selection and settings; report how much they agree',
  usage:
    'llm-features atlas compare --db FILE --a QUERY --b QUERY [--json]\n' +
    '  QUERY: comma-separated filters model=NAME|HASH-PREFIX, blocks=A-B, hook=H, settings=HASH-PREFIX; e.g. --a blocks=1 --b blocks=5',
  flags: { db: 'string', a: 'string', b: 'string', json: 'bool' },
  async run(flags) {
    const a = parseQuery(requireString(flags, 'a'), '--a');
    const b = parseQuery(requireString(flags, 'b'), '--b');
    const atlas = Atlas.open(requireString(flags, 'db'), { readonly: true });
    try {
      const report = compareAtlas(atlas, a, b);
      if (flags.json) printJson(report);
      else process.stdout.write(formatCompare(report));
    } finally {
      atlas.close();
    }
  },
};

const exportCommand: Command = {
  name: 'export',
  summary: 'write atlas records as JSON ({"records": [...]}) or CSV on stdout',
  usage: 'llm-features atlas export --db FILE [--format json|csv] [--where QUERY]\n  QUERY as for atlas compare, e.g. --where model=stories260K.bin,blocks=1',
  flags: { db: 'string', format: 'string', where: 'string' },
  async run(flags) {
    const format = oneOf<ExportFormat>(flags, 'format', EXPORT_FORMATS, 'json');
    const where = optString(flags, 'where');
    const filter = where === undefined ? {} : parseQuery(where, '--where');
    const atlas = Atlas.open(requireString(flags, 'db'), { readonly: true });
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
  name: 'ls',
  summary: 'list what an atlas holds: models and record groups',
  usage: 'llm-features atlas ls --db FILE [--json]',
  flags: { db: 'string', json: 'bool' },
  async run(flags) {
    const dbPath = requireString(flags, 'db');
    const atlas = Atlas.open(dbPath, { readonly: true });
    try {
      const models = atlas.models();
      const groups = atlas.groups();
      const total = groups.reduce((n, g) => n + g.records, 0);
      if (flags.json) {
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
      process.stdout.write(lines.join('\n') + '\n');
    } finally {
      atlas.close();
    }
  },
};

export const atlasCommand: Command = {
  name: 'atlas',
  summary: 'build, compare, export and list atlases of visualize results (SQLite)',
  usage: 'llm-features atlas build|compare|export|ls [flags]',
  flags: {},
  async run() {
    throw new Error('atlas: dispatched to a subcommand by main');
  },
  subcommands: [buildCommand, compareCommand, exportCommand, lsCommand],
};
