import type { BuildProgress } from './build.js';

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '--';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** `[#########.....] 40/128 records  blocks 1-4  2.3 rec/s  ETA 38s`: rate and ETA over this build's own records. */
export function formatProgress(p: BuildProgress, width = 30): string {
  const filled = p.total ? Math.round((p.done / p.total) * width) : width;
  const secs = p.elapsedMs / 1000;
  const rate = secs > 0 && p.inserted > 0 ? p.inserted / secs : null;
  const left = p.total - p.done;
  const eta = left === 0 ? 'done' : rate ? `ETA ${formatDuration(left / rate)}` : 'ETA --';
  const rateText = rate === null ? '-- rec/s' : `${rate >= 10 ? rate.toFixed(0) : rate.toFixed(2)} rec/s`;
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${p.done}/${p.total} records  blocks ${p.blocks[0]}-${p.blocks[1]}  ${rateText}  ${eta}`;
}
