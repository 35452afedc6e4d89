import { UserError } from '../errors.js';
import { startServer } from '../server/server.js';
import type { Command } from './command.js';

export const serveCommand: Command = {
  name: 'serve',
  summary: 'a local web viewer over an atlas (read-only): overview, feature grid, feature pages, compare',
  notes: [
    'Binds 127.0.0.1 unless --host says otherwise (--host 0.0.0.0 exposes the atlas to the network); --port 0 picks a free port.',
    'Opens the atlas read-only, so an `atlas build` may keep writing to it. Stop with Ctrl-C.',
  ],
  async run(v) {
    const db = v.need('db');
    const port = v.num('port');
    const host = v.need('host');
    if (host === '' || /\s/.test(host)) throw new UserError(`--host: expected a host name or address, got "${host}"`);
    const quiet = v.bool('quiet');
    const server = await startServer({ db, port, host, log: quiet ? undefined : (line) => process.stderr.write(line + '\n') });
    // The URL on stdout, alone on its line, so scripts (and tests) can read where it listens.
    process.stdout.write(`serving ${db} at ${server.url}/\n`);
    await new Promise<void>((resolve) => {
      const stop = () => {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        void server.close().then(resolve);
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
    });
  },
};
