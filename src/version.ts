/** The package version, read once from package.json (the CLI's --version, provenance in atlas records). */
import { readFileSync } from 'node:fs';

function readVersion(): string {
  // src/version.ts → dist/src/version.js: the package root is two folders up from here.
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

export const VERSION = readVersion();
