// The settings table is the one statement of every setting: flags, records, reproduce commands and help derive from it.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { canonicalJson, sha256Hex } from '../src/atlas/canonical.js';
import { parseArgs } from '../src/cli/args.js';
import { UserError } from '../src/errors.js';
import {
  buildSettings,
  choicesFor,
  COMMANDS,
  defaultFor,
  recordArgs,
  settingsFor,
  settingsRecord,
  SETTINGS,
  vectorHash,
  VISUALIZE_COMMANDS,
  type Setting,
} from '../src/features/settings.js';
import { DEFAULT_SETTINGS, Visualizer } from '../src/features/visualize.js';
import { loadModel } from '../src/models/load.js';
import { ModelRunner } from '../src/engine/runner.js';
import { decoderFor } from '../src/features/embeddings.js';
import { cli } from './cli-helpers.js';
import { fixturePath, modelPath, projectRoot } from './helpers.js';

const dir = mkdtempSync(path.join(tmpdir(), 'llmf-settings-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const model = loadModel(modelPath('stories260K.bin'));
const tokenizer = model.tokenizer!;

const directionFile = path.join(dir, 'dir.json');
writeFileSync(directionFile, JSON.stringify(Array.from({ length: 64 }, (_, i) => Math.sin(i))));

/** Flag arguments that give a setting a value other than its default (and what it needs to be valid). */
const saeDir = fixturePath('sae-stories260K');

function nonDefault(s: Setting): string[] {
  const needs: string[] = s.needs ? (s.needs.flag === 'sae' ? ['--sae', saeDir] : [`--${s.needs.flag}`, s.needs.values?.[0] ?? 'gcg']) : [];
  const special: Record<string, string[]> = {
    prefix: ['--prefix', 'Once upon'],
    suffix: ['--suffix', ' a time'],
    init: ['--init', 'tokens:The dog'],
    direction: ['--direction', directionFile],
    sae: ['--sae', saeDir],
    fluency: ['--fluency', '0.5,2'],
    ban: ['--ban', '3,4'],
    refine: ['--refine', 'epo'],
  };
  if (special[s.flag]) return [...special[s.flag]!, ...needs];
  const d = defaultFor(s, 'visualize');
  switch (s.kind) {
    case 'bool':
      return [`--${s.flag}`, ...needs];
    case 'int':
      return [`--${s.flag}`, String((d as number) + 1), ...needs];
    case 'number':
      return [`--${s.flag}`, String((d as number) * 0.5), ...needs];
    case 'enum':
      return [`--${s.flag}`, choicesFor(s, 'visualize').find((c) => c !== d)!, ...needs];
    default:
      throw new Error(`no non-default value for --${s.flag}`);
  }
}

/** The inputs visualize requires, beside the settings under test. */
const INPUTS = ['--model', 'm.bin', '--blocks', '1', '--select', '[:, :, 0]'];
const visualizeArgs = (args: string[], table: readonly Setting[] = SETTINGS) => parseArgs('visualize', [...INPUTS, ...args], table);

const recorded = SETTINGS.filter((s) => s.scope === 'recorded' && s.commands.includes('visualize'));

test('every recorded visualize setting round-trips: flag → settings → record → reproduce command → the same settings', () => {
  assert.ok(recorded.length >= 25, `${recorded.length} recorded settings`);
  const vectors = new Map<string, string>();
  for (const s of recorded) {
    const args = nonDefault(s);
    const first = buildSettings('visualize', visualizeArgs(args).given, { tokenizer });
    const record = settingsRecord(first);
    // Keep the direction where an atlas would, under its hash, and write it back from there.
    const direction = (first.objective as { direction?: Float32Array }).direction;
    if (direction) vectors.set(vectorHash(direction), directionFile);
    // An SAE is named by its content hash; a reproduce command gets its folder back the same way.
    const sae = first.sae as { hash: string } | undefined;
    if (sae) vectors.set(sae.hash, saeDir);
    const notes: string[] = [];
    const again = recordArgs(record, { tokenizer, vectorFile: (h) => vectors.get(h) ?? null, notes });
    assert.deepEqual(notes, [], `--${s.flag}: ${notes.join('; ')}`);
    const second = buildSettings('visualize', visualizeArgs(again).given, { tokenizer });
    assert.deepEqual(second, first, `--${s.flag} ${args.join(' ')} → ${again.join(' ')}`);
    // The value the flag set is really in the record (not silently dropped at its default).
    assert.notEqual(canonicalJson(record), canonicalJson(settingsRecord(buildSettings('visualize', new Map(), { tokenizer }))), `--${s.flag} changes the record`);
  }
});

test('two directions never share a settings hash; a record names its vector by content hash', () => {
  const other = path.join(dir, 'dir2.json');
  writeFileSync(other, JSON.stringify(Array.from({ length: 64 }, (_, i) => Math.cos(i))));
  const rec = (file: string) => settingsRecord(buildSettings('visualize', visualizeArgs(['--direction', file]).given, { tokenizer }));
  const a = rec(directionFile);
  const b = rec(other);
  assert.equal(a.objective, 'direction');
  assert.match(String(a.direction), /^[0-9a-f]{64}$/);
  assert.notEqual(sha256Hex(canonicalJson(a)), sha256Hex(canonicalJson(b)));
});

test('adding a setting does not change the hash of records made before it existed', () => {
  const settings = buildSettings('visualize', new Map(), { tokenizer: null });
  const before = sha256Hex(canonicalJson(settingsRecord(settings)));
  const knob: Setting = {
    flag: 'test-knob',
    param: 'testKnob',
    kind: 'int',
    default: 3,
    describe: 'a setting added after the records were made',
    group: 'optimisation',
    scope: 'recorded',
    commands: VISUALIZE_COMMANDS,
    record: { key: 'test_knob' },
  };
  const table = [...SETTINGS, knob];
  // The settings object a newer version builds holds the knob at its default: the record leaves it out.
  const withKnob = buildSettings('visualize', new Map(), { tokenizer: null }, table);
  assert.equal(withKnob.testKnob, 3);
  assert.equal(sha256Hex(canonicalJson(settingsRecord(withKnob, table))), before);
  // Set away from its default, it is recorded and the hash changes; the flag parses from the extended table.
  const set = buildSettings('visualize', visualizeArgs(['--test-knob', '4'], table).given, { tokenizer: null }, table);
  const rec = settingsRecord(set, table);
  assert.equal(rec.test_knob, 4);
  assert.notEqual(sha256Hex(canonicalJson(rec)), before);
});

test('the record of today\'s defaults is the one atlases were built with (hash unchanged by the table)', () => {
  // The v2 record format: these keys, always present, with these defaults.
  const rec = settingsRecord(DEFAULT_SETTINGS);
  assert.deepEqual(rec, {
    tokens: 5, steps: 500, lr: 2, lr_end: 0.2, optimizer: 'sgd', objective: 'l1', C: 100, topk: 5, decode: 'pinv', init: 'randn',
    prefix: [], suffix: [], bos: false, seed: 0, random_draws: 8,
  });
  const gcg = settingsRecord({ ...DEFAULT_SETTINGS, refine: buildSettings('visualize', new Map([['refine', 'gcg']]), { tokenizer: null }).refine });
  assert.deepEqual(gcg.refine, { method: 'gcg', steps: 100, candidates: 128, swap_topk: 16, starts: 3, ban: [], printable: false, ascii: false, retokenize: false });
});

test('flag values: strict syntax and bounds from the table, one line naming the flag', () => {
  const bad: [string[], RegExp][] = [
    [['--steps', '0x10'], /^--steps: expected an integer, got "0x10"$/],
    [['--steps', ' 3'], /^--steps: expected an integer/],
    [['--steps', '1e3'], /^--steps: expected an integer/],
    [['--lr', '0'], /^--lr: must be > 0, got 0$/],
    [['--lr', '-1'], /^--lr: must be > 0/],
    [['--lr-end', '-0.1'], /^--lr-end: must be ≥ 0/],
    [['--C', '0'], /^--C: must be > 0/],
    [['--seed', '4294967296'], /^--seed: must be ≤ 4294967295/],
    [['--seed', '-1'], /^--seed: must be ≥ 0/],
    [['--lr', 'fast'], /^--lr: expected a number, got "fast"$/],
    [['--optimizer', 'rmsprop'], /^--optimizer: "rmsprop" is not one of sgd, adam$/],
    [['--step', '3'], /^--step: unknown flag for 'visualize' \(did you mean --steps\?\)/],
    [['--refien', 'gcg'], /did you mean --refine\?/],
    [['--steps', '3', '--steps', '4'], /^--steps: given twice$/],
  ];
  for (const [args, re] of bad) {
    assert.throws(() => visualizeArgs(args), (e: unknown) => e instanceof UserError && re.test(e.message), args.join(' '));
  }
  // `needs`: refinement flags without --refine, EPO flags with gcg, an empty fluency list.
  const build = (args: string[]) => buildSettings('visualize', visualizeArgs(args).given, { tokenizer });
  assert.throws(() => build(['--candidates', '8']), /refine\.candidates: only with --refine/);
  assert.throws(() => build(['--refine', 'gcg', '--population', '4']), /only with --refine epo/);
  assert.throws(() => build(['--refine', 'epo', '--fluency', '']), /expected non-negative numbers/);
});

test('library callers get errors naming the parameter, and Visualizer.run works on its own', async () => {
  const runner = new ModelRunner(model);
  const vis = new Visualizer(runner, tokenizer, decoderFor(model));
  await assert.rejects(
    vis.run({ select: '[:, :, 1]', settings: { ...DEFAULT_SETTINGS, blocks: [1, 1], hook: 'resid', steps: -1 } }),
    (e: unknown) => e instanceof UserError && e.param === 'steps' && /^steps: must be ≥ 0, got -1$/.test(e.message),
  );
  await assert.rejects(vis.run({ select: '[:, :, 1]', settings: { ...DEFAULT_SETTINGS, blocks: [9, 9], hook: 'resid' } }), /blocks: block range 9-9 is outside/);
  const [run] = await vis.run({ select: '[:, :, 1]', settings: { ...DEFAULT_SETTINGS, blocks: [1, 1], hook: 'resid', steps: 5 } });
  assert.equal(run!.status, 'ok');
  await runner.close();
});

test('--help for every command and atlas subcommand: exit 0, every flag of the table with its description and default', () => {
  for (const name of COMMANDS) {
    const r = cli([...name.split(' '), '--help']);
    assert.equal(r.code, 0, `${name} --help: ${r.stderr}`);
    for (const s of settingsFor(name)) {
      assert.ok(r.stdout.includes(`--${s.flag}`), `${name} --help lists --${s.flag}`);
      assert.ok(r.stdout.includes(s.describe), `${name} --help describes --${s.flag}`);
      const d = defaultFor(s, name);
      if (typeof d === 'number' || (typeof d === 'string' && d !== '')) assert.ok(r.stdout.includes(`default ${d}`), `${name} --help: default of --${s.flag}`);
    }
    assert.equal(cli(['help', ...name.split(' ')]).stdout, r.stdout, `help ${name}`);
  }
  assert.equal(cli(['invert', '--help']).stdout.includes('--population'), false, 'invert offers no EPO flags');
  const atlas = cli(['atlas', '--help']);
  assert.equal(atlas.code, 0);
  for (const sub of ['build', 'compare', 'export', 'ls']) assert.match(atlas.stdout, new RegExp(`atlas ${sub} `));
  const version = JSON.parse(readFileSync(path.join(projectRoot, 'package.json'), 'utf8')).version as string;
  assert.equal(cli(['--version']).stdout, `${version}\n`);
  const bare = cli([]);
  assert.equal(bare.code, 2);
  assert.equal(bare.stdout, '');
  assert.match(bare.stderr, /^usage: llm-features <command>/);
});

test('a typo gets one line with the nearest flag, exit 2', () => {
  const r = cli(['visualize', '--model', modelPath('stories260K.bin'), '--blocks', '1', '--select', '[:, :, 0]', '--step', '3']);
  assert.equal(r.code, 2);
  assert.equal(r.stderr, "llm-features: --step: unknown flag for 'visualize' (did you mean --steps?); see 'llm-features visualize --help'\n");
});

test("the README's command table lists exactly the commands the CLI knows, with flags they take", () => {
  const readme = readFileSync(path.join(projectRoot, 'README.md'), 'utf8');
  const table = readme.slice(readme.indexOf('## Commands'), readme.indexOf('\n\n', readme.indexOf('| command |') + 1));
  const rows = [...table.matchAll(/^\| `([^`]+)` \|/gm)].map((m) => m[1]!);
  const top = new Set<string>();
  for (const row of rows) {
    const [name, sub] = row.split(' ');
    top.add(name!);
    // A command with subcommands (atlas, queue) is one row listing them: `atlas build\|scan\|…`.
    const subs = sub?.split('\\|') ?? [];
    const hasSubs = subs.length > 0 && (COMMANDS as readonly string[]).includes(`${name} ${subs[0]}`);
    const commands = hasSubs ? subs.map((s) => `${name} ${s}`) : [name!];
    for (const c of commands) {
      assert.ok((COMMANDS as readonly string[]).includes(c), `README command ${c}`);
      // Flags written in the row exist for the command (for atlas rows: for at least one subcommand).
      for (const [, flag] of row.matchAll(/--([a-z][a-z0-9-]*)/g)) {
        assert.ok(commands.some((x) => settingsFor(x as (typeof COMMANDS)[number]).some((s) => s.flag === flag)), `README row "${row}": --${flag}`);
      }
    }
  }
  const cliTop = new Set(COMMANDS.map((c) => c.split(' ')[0]!));
  assert.deepEqual([...top].sort(), [...cliTop].sort());
  const help = cli(['--help']).stdout;
  for (const name of cliTop) assert.match(help, new RegExp(`^  ${name} `, 'm'));
});

test('a direction record reproduces: the viewer names a file for its stored vector, and that file gives the same settings hash', async () => {
  const { reproduceCommand } = await import('../src/server/reproduce.js');
  const first = buildSettings('visualize', visualizeArgs(['--direction', directionFile, '--steps', '7']).given, { tokenizer });
  const record = settingsRecord(first);
  const values = Array.from((first.objective as { direction: Float32Array }).direction);
  const r = reproduceCommand({ select: '[:, :, :]', blocks: [1, 2], hook: 'resid', feature: null, settings: record, direction: values }, { path: 'm.bin', name: 'm.bin' }, tokenizer, 'a.db');
  const file = /--direction (direction-[0-9a-f]{12}\.json)/.exec(r.visualize)?.[1];
  assert.ok(file, r.visualize);
  assert.match(r.notes.join('\n'), new RegExp(`write this record's direction values .* to ${file.replace('.', '\\.')}`));
  // Write the file as the note says, and parse the command again.
  const written = path.join(dir, file);
  writeFileSync(written, JSON.stringify(values));
  const args = r.visualize.split(' --select ')[1]!.replace(/^'\[:, :, :\]' /, '').split(' ').map((a) => (a === file ? written : a));
  const again = buildSettings('visualize', visualizeArgs(args).given, { tokenizer });
  assert.equal(sha256Hex(canonicalJson(settingsRecord(again))), sha256Hex(canonicalJson(record)));
});

test('the JSON schema\'s settings are the table\'s (scripts/write_schema.mjs writes them)', async () => {
  const { settingsJsonSchema } = await import('../src/features/settings.js');
  const { HOOKS } = await import('../src/models/config.js');
  const schema = JSON.parse(readFileSync(path.join(projectRoot, 'schemas/visualize.schema.json'), 'utf8'));
  assert.deepEqual(schema.definitions.run.properties.settings, settingsJsonSchema());
  assert.deepEqual(schema.definitions.run.properties.hook, { enum: [...HOOKS] });
});

test('atlas build: --features and --direction exclude each other; with --queue, an unreachable Redis stops --direction and --corpus builds (and scans) before anything is written; each one line, exit 2', () => {
  const base = ['atlas', 'build', '--model', modelPath('stories260K.bin'), '--db', path.join(dir, 'never.db'), '--blocks', '1'];
  const unreachable = /^llm-features: --queue: cannot reach Redis at redis:\/\/127\.0\.0\.1:1\/?: .+\n$/;
  const cases: [string[], string | RegExp][] = [
    [[...base, '--features', '0', '--direction', directionFile], 'llm-features: --features/--direction: give exactly one of them\n'],
    [[...base], 'llm-features: --features/--direction: give exactly one of them\n'],
    [[...base, '--direction', directionFile, '--queue', 'redis://127.0.0.1:1'], unreachable],
    [[...base, '--features', '0', '--corpus', 'c.txt', '--queue', 'redis://127.0.0.1:1'], unreachable],
    [['atlas', 'scan', '--model', modelPath('stories260K.bin'), '--db', path.join(dir, 'never.db'), '--blocks', '1', '--features', '0', '--corpus', 'c.txt', '--queue', 'redis://127.0.0.1:1'], unreachable],
  ];
  for (const [args, stderr] of cases) {
    const r = cli(args);
    assert.equal(r.code, 2, args.join(' '));
    if (typeof stderr === 'string') assert.equal(r.stderr, stderr);
    else assert.match(r.stderr, stderr);
  }
  assert.equal(existsSync(path.join(dir, 'never.db')), false, 'nothing written');
});
