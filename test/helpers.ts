/** Paths shared by the tests. Compiled to dist/test/helpers.js, so the project root is two levels up. */
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Real model files: $LLMF_TEST_MODELS, else ../shared/models beside the project. */
export function modelsDir(): string {
  return process.env.LLMF_TEST_MODELS ?? path.resolve(projectRoot, '../shared/models');
}

export function modelPath(name: string): string {
  return path.join(modelsDir(), name);
}

/** Checked-in fixtures (test/fixtures in the source tree; tsc does not copy them to dist). */
export function fixturePath(name: string): string {
  return path.join(projectRoot, 'test', 'fixtures', name);
}
