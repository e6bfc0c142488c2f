/**
 * `npm run demo`: three local fmfl nodes (ephemeral identities, 127.0.0.1, random ports) in a line
 * (b dials a, c dials b), each printing the membership it sees once all views have converged, then a clean stop.
 * Exit code 0 when every node saw the two others, 1 otherwise.
 */
import { FmflNode } from '../src/node/index.ts';
import { silentLogger } from '../src/util/log.ts';

const DEADLINE_MS = 30_000;
const common = { federation: 'demo', heartbeatIntervalMs: 500, memberExpiryMs: 3000 };
const logger = silentLogger();
const names = ['a', 'b', 'c'];
const caps = [
  { device: 'cpu', trainThroughput: 150, datasetSize: 6000, loraRank: 4, maxExitDepth: 2 },
  { device: 'cpu', trainThroughput: 40, datasetSize: 2000, loraRank: 2, maxExitDepth: 1 },
  { device: 'cuda', trainThroughput: 2500, datasetSize: 20000, loraRank: 16, maxExitDepth: 4 },
];

const nodes: FmflNode[] = [];
let code = 1;
try {
  for (let i = 0; i < 3; i++) {
    const peers = i === 0 ? [] : [nodes[i - 1].multiaddrs()[0]];
    const node = await FmflNode.create({ ...common, name: names[i], peers, capabilities: caps[i] }, { logger });
    node.on('join', (m: { peerId: string }) => console.log(`[${names[i]}] join  ${m.peerId}`));
    await node.start();
    console.log(`[${names[i]}] ${node.peerId} listening on ${node.multiaddrs().join(' ')}`);
    nodes.push(node);
  }
  const end = Date.now() + DEADLINE_MS;
  while (Date.now() < end && !nodes.every((n) => n.mesh.membership.memberIds().length === 2)) {
    await new Promise((r) => setTimeout(r, 100));
  }
  const label = new Map(nodes.map((n, i) => [n.peerId, names[i]]));
  console.log('\nmembership views:');
  for (const [i, n] of nodes.entries()) {
    const view = n.mesh.membership
      .members()
      .map((m) => `${label.get(m.peerId)}(${m.capabilities.device}, ${m.capabilities.datasetSize} samples, rank ${m.capabilities.loraRank})`)
      .sort();
    console.log(`  ${names[i]} sees ${view.length}: ${view.join(', ')}`);
  }
  code = nodes.every((n) => n.mesh.membership.memberIds().length === 2) ? 0 : 1;
  console.log(code === 0 ? '\nall 3 nodes see each other' : '\nviews did not converge in time');
} finally {
  await Promise.all(nodes.map(async (n) => n.stop()));
}
process.exitCode = code;
