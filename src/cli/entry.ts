#!/usr/bin/env node
/**
 * The executable. It checks the argument list before anything loads onnxruntime-node: onnxruntime-node 1.30
 * overflows the main thread's stack while it initialises when the command line is about 28 KB or longer (measured:
 * 28,000 bytes run, 29,000 crash with SIGSEGV and no message), so a long command line must be refused first, here,
 * with a message and the way round it (`@FILE`).
 */
const MAX_ARGV_BYTES = 24 * 1024;

const args = process.argv.slice(2);
const bytes = args.reduce((n, a) => n + Buffer.byteLength(a) + 1, 0);
if (bytes > MAX_ARGV_BYTES) {
  const longest = args.reduce((best, a, i) => (a.length > (args[best]?.length ?? -1) ? i : best), 0);
  const flag = longest > 0 && args[longest - 1]?.startsWith('--') ? `${args[longest - 1]}: ` : '';
  process.stderr.write(
    `llm-features: ${flag}the command line is ${bytes} bytes, more than the ${MAX_ARGV_BYTES} accepted; ` +
      'pass long values from a file (--select @FILE)\n',
  );
  process.exitCode = 2;
} else {
  await import('./main.js');
}
