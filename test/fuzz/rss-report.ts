/**
 * Preloaded into fuzzed CLI processes (NODE_OPTIONS=--import): writes the process's peak resident set size, in bytes,
 * to $LLMF_FUZZ_RSS when it exits, so the suite can hold every run to the 1 GiB bound without platform tools.
 */
import { writeFileSync } from 'node:fs';

const out = process.env.LLMF_FUZZ_RSS;
if (out) process.on('exit', () => writeFileSync(out, String(process.resourceUsage().maxRSS * 1024)));
