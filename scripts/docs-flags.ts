/** Rewrite README's federation flag table from the schema (src/round/fl-config.ts): `npm run docs:flags`. */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { withFlagTable } from '../src/cli/flag-table.ts';

const readme = fileURLToPath(new URL('../README.md', import.meta.url));
const before = readFileSync(readme, 'utf8');
const after = withFlagTable(before);
if (after !== before) writeFileSync(readme, after);
console.log(after === before ? 'README flag table is up to date' : 'README flag table rewritten');
