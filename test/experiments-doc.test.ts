/**
 * EXPERIMENTS.md's generated sections equal what the experiment scripts render from their committed results, so no
 * number in them is typed by hand (regenerate: node dist/experiments/{demos,refine,sae,controls}.js).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import test from 'node:test';
import { fillSection } from '../experiments/cli.js';
import { renderControls, type ControlsResults } from '../experiments/controls-report.js';
import { renderDemos, type Demo } from '../experiments/demos.js';
import { renderRefine, type RefineResults } from '../experiments/refine.js';
import { renderSae, type SaeResults } from '../experiments/sae.js';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const doc = readFileSync(path.join(root, 'EXPERIMENTS.md'), 'utf8');
const results = (name: string) => JSON.parse(readFileSync(path.join(root, 'experiments/results', name), 'utf8')) as unknown;

test('EXPERIMENTS.md: the demonstrations are the committed outputs of experiments/demos.ts', () => {
  assert.equal(fillSection(doc, 'demos', renderDemos(results('demos.json') as Demo[]), 'EXPERIMENTS.md'), doc);
});

test('EXPERIMENTS.md: the refinement section is rendered from experiments/results/refine.json', () => {
  assert.equal(fillSection(doc, 'refine', renderRefine(results('refine.json') as RefineResults), 'EXPERIMENTS.md'), doc);
});

test('EXPERIMENTS.md: the SAE section is rendered from experiments/results/sae.json', () => {
  assert.equal(fillSection(doc, 'sae', renderSae(results('sae.json') as SaeResults), 'EXPERIMENTS.md'), doc);
});

test('EXPERIMENTS.md: the controls section and the closing table are rendered from experiments/results/controls.json', () => {
  const r = results('controls.json') as ControlsResults;
  assert.equal(fillSection(doc, 'controls', renderControls(r), 'EXPERIMENTS.md'), doc);
  // The closing table judges every claim the issue lists.
  for (const claim of ['Repeated tokens at block 1', 'One-position placement', 'Combined features', 'Identical across model sizes', 'Aligned across layers', 'Heterogeneous deep stacks', 'Input recovery', 'Cosine to real tokens']) {
    assert.match(doc, new RegExp(`\\| ${claim} \\|`), claim);
  }
});

test('EXPERIMENTS.md: the claims table changes when a measurement does (it is derived, not fixed text)', () => {
  const r = results('controls.json') as ControlsResults;
  const key = 'stories260K-kept-embeddings|1 vs 5';
  const before = renderControls(r);
  const moved = structuredClone(r);
  moved.compare[key] = { ...moved.compare[key]!, agreement: 0 };
  const untrained = 'stories260K-untrained|1 vs 5';
  moved.compare[untrained] = { ...moved.compare[untrained]!, agreement: 0 };
  assert.notEqual(renderControls(moved), before);
});
