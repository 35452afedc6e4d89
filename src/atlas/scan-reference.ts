/**
 * `--scan-db FILE`: reference distributions read from an atlas scan made with `--calibrate-tokens N`, instead of
 * running the corpus again. A stored calibration holds the statistic of the run `[:, :, f]` with N free tokens (BOS
 * in front when the scan used `--calibrate-bos`, no prefix or suffix) — or, for a scan of a `--direction`, of that
 * direction at all positions. A run of any other shape has no matching scan and is refused, naming what would match.
 */
import { UserError } from '../errors.js';
import type { ModelRunner } from '../engine/runner.js';
import { gridReference, type Reference, type ReferenceProvider } from '../features/calibrate.js';
import { modelHash } from './hash.js';
import { directionHash } from './scan-build.js';
import { listScans, scanCalibration } from './scans.js';
import type { Atlas } from './store.js';

export function scanReference(open: () => Atlas, runner: ModelRunner): ReferenceProvider {
  return async (runs, s, lay) => {
    const atlas = open();
    try {
      const file = atlas.file;
      if (s.prefix.length || s.suffix.length) throw new UserError(`--scan-db: ${file}: stored calibrations have no --prefix/--suffix context; use --corpus FILE`);
      const hash = modelHash(runner.model, atlas);
      const dir = s.objective.direction ? directionHash(s.objective.direction) : null;
      const sae = s.sae?.hash ?? null;
      const want = `blocks ${s.blocks[0]}-${s.blocks[1]}, hook ${s.hook}, --calibrate-tokens ${s.tokens}${s.bos ? ' --calibrate-bos' : ''}${dir ? ', the same --direction' : ''}${sae ? ', the same --sae' : ''}`;
      const scans = listScans(atlas).filter(
        (x) =>
          x.model_hash === hash &&
          x.blocks[0] === s.blocks[0] &&
          x.blocks[1] === s.blocks[1] &&
          x.hook === s.hook &&
          x.settings.calibrate_tokens === s.tokens &&
          x.settings.calibrate_bos === s.bos &&
          (x.settings.direction ?? null) === dir &&
          (x.settings.sae ?? null) === sae,
      );
      if (scans.length === 0) throw new UserError(`--scan-db: ${file} holds no scan of this model with ${want} (make one with atlas scan)`);
      return runs.map((run): Reference => {
        const f = run.features;
        const single = f.all ? null : f.indices.length === 1 ? f.indices[0]! : null;
        if (!run.positions.all || (!dir && single === null)) {
          throw new UserError(`--scan-db: run ${run.label}: stored calibrations cover [:, :, f] runs only (all positions, one feature); use --corpus FILE`);
        }
        const feature = dir ? 0 : single!;
        // The newest scan holding this feature wins.
        for (const x of [...scans].reverse()) {
          const c = scanCalibration(atlas, x.id, feature);
          if (c) return gridReference(c.grid, { source: 'scan', corpus: x.corpus_name, corpus_hash: x.corpus_hash, windows: c.windows });
        }
        throw new UserError(`--scan-db: ${file}: no scan with ${want} has feature ${feature}`);
      });
    } finally {
      atlas.close();
    }
  };
}
