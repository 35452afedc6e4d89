// Writes the settings part of schemas/visualize.schema.json from the settings table (run after `npm run build`):
//   node scripts/write_schema.mjs
import { readFileSync, writeFileSync } from 'node:fs';
import { settingsJsonSchema } from '../dist/src/features/settings.js';
import { HOOKS } from '../dist/src/models/config.js';

const file = new URL('../schemas/visualize.schema.json', import.meta.url);
const schema = JSON.parse(readFileSync(file, 'utf8'));
schema.definitions.run.properties.settings = settingsJsonSchema();
schema.definitions.run.properties.hook = { enum: [...HOOKS] };
writeFileSync(file, JSON.stringify(schema, null, 2) + '\n');
