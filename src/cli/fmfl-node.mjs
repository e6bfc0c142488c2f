#!/usr/bin/env node
// Entry point of the `fmfl-node` command. Plain JavaScript so that it can check the Node version before
// anything else loads: libp2p needs Node >= 22 (Promise.withResolvers). `npx fmfl-node` and `npm run`
// put the project's Node 22 (the `node` devDependency) first on PATH.
const [major] = process.versions.node.split('.').map(Number);
if (major < 22) {
  process.stderr.write(
    `fmfl-node needs Node.js >= 22 but this is Node ${process.versions.node}.\n` +
      `Run it through the project's Node 22: \`npx fmfl-node ...\` (or an npm script) from the fmfl folder.\n`,
  );
  process.exit(1);
}
const { register } = await import('tsx/esm/api');
register();
const { main } = await import('./main.ts');
const code = await main(process.argv.slice(2));
process.exit(code);
