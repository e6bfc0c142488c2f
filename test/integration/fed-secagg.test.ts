/**
 * Rotating-leader federation with secure aggregation (`secagg: true`): the leader learns only the mean of the
 * masked deltas, every node ends with the same state, a member that crashes after masking is unmasked around
 * via reveals, and bad masked messages / forged key announcements are refused.
 */
import test from 'ava';
import { RefusalError, RefusalReason, type Mesh } from '../../src/mesh/index.ts';
import { encodeAnnounce, fixedPointFor } from '../../src/privacy/index.ts';
import { Federation, leaderOrder, type LeaderProtocol, type RoundMetrics } from '../../src/round/index.ts';
import { ConfigError } from '../../src/util/errors.ts';
import { silentLogger } from '../../src/util/log.ts';
import { RevealRequest } from '../../src/round/pb/round.ts';
import { SECAGG_KEY_EPOCH } from '../../src/round/secagg-round.ts';
import { flattenTensors, type TensorMap } from '../../src/update/index.ts';
import { startMeshes, stopAll, link, topologies, waitFor, viewsConverged } from './mesh-helpers.ts';
import { createFeds, finalHashes, releaseAll, tinyFl } from './fed-helpers.ts';

const N = 4;

function leaderOf(f: { protocol: unknown }): LeaderProtocol {
  return f.protocol as LeaderProtocol;
}

function clearUpdates(p: LeaderProtocol): number {
  return p.heldUpdateCount();
}

test.serial('secagg, 4 nodes: identical state after 2 rounds, the global delta is the mean of the masked deltas, no cleartext update seen', async (t) => {
  const meshes = await startMeshes(N);
  t.teardown(() => stopAll(meshes));
  link(meshes, topologies.full(N));
  await waitFor(() => viewsConverged(meshes), 'membership views');
  const feds = await createFeds(meshes, (i) => tinyFl(i, N, { rounds: 2, secagg: true, downlinkBits: 32 }));
  t.teardown(() => releaseAll(feds));
  const fed0 = feds[0];
  const manifest = fed0.manifest;
  const rank = leaderOf(fed0).snapshot().state.tensors.size > 0 ? (fed0.cfg.rank) : 0;
  const v0: TensorMap = leaderOf(fed0).snapshot().state.tensors;
  const inputs: Float64Array[] = [];
  let v1: TensorMap | null = null;
  const metrics: RoundMetrics[][] = await Promise.all(feds.map((f) => f.run({
    onRound: (m) => {
      if (m.round !== 1) return;
      const li = leaderOf(f).secagg!.lastInput!;
      t.is(li.round, 1);
      inputs.push(li.values);
      v1 ??= leaderOf(f).snapshot().state.version === 1 ? leaderOf(f).snapshot().state.tensors : null;
    },
  })));
  const hashes = finalHashes(feds);
  t.is(new Set(hashes).size, 1, `final hashes ${hashes.map((h) => h.slice(0, 8)).join(' ')}`);
  for (const m of metrics) {
    t.deepEqual(m.map((x) => x.version), [1, 2]);
    t.true(m.every((x) => Number.isFinite(x.trainLoss) && x.accuracy.every((a) => a >= 0 && a <= 1)));
    t.true(m.every((x, r) => x.hash === metrics[0][r].hash));
  }
  for (let r = 0; r < 2; r++) {
    t.true(metrics.some((m) => m[r].via === 'led'), `round ${r + 1} was led`);
    t.true(metrics.every((m) => m[r].contributors === N || m[r].via !== 'led'), 'every member contributed');
  }
  // No node ever held a cleartext update of anyone (not even its own): only masked inputs travel.
  for (const f of feds) t.is(clearUpdates(leaderOf(f)), 0);
  // The applied round-1 delta equals the mean of the members' (clipped) inputs within fixed-point error.
  t.is(inputs.length, N);
  t.truthy(v1);
  const d1 = flattenTensors(v1!, manifest, rank);
  const d0 = flattenTensors(v0, manifest, rank);
  const lsb = 2 ** -fixedPointFor(1, N).fracBits;
  let worst = 0;
  let nonzero = 0;
  for (let i = 0; i < d0.length; i++) {
    const mean = inputs.reduce((a, x) => a + x[i], 0) / N;
    if (mean !== 0) nonzero++;
    const got = d1[i] - d0[i];
    // float32 storage of w + delta adds up to an ulp of |w|
    const tol = lsb + 2 * Math.abs(d0[i]) * 2 ** -23 + 1e-9;
    worst = Math.max(worst, Math.abs(got - mean) / tol);
  }
  t.true(nonzero > d0.length / 2, 'the members trained');
  t.true(worst <= 1, `largest error in units of the tolerance: ${worst}`);

  // Bonawitz rule at the member: once named dropped, a member never reveals its self-mask seed for the round.
  const p1 = leaderOf(feds[1]);
  const self = meshes[1].peerId.toString();
  const members = meshes.map((m) => m.peerId.toString()).sort();
  const others = members.filter((p) => p !== self);
  const req = (survivors: string[], dropped: string[]) => RevealRequest.encode({ version: 1, round: 2n, members, survivors, dropped });
  const asDropped = t.throws(() => p1.secagg!.serveReveal(req(others, [self]), self), { instanceOf: RefusalError });
  t.is((asDropped as RefusalError).reason, RefusalReason.APPLICATION);
  const after = t.throws(() => p1.secagg!.serveReveal(req(members, []), self), { instanceOf: RefusalError });
  t.is((after as RefusalError).reason, RefusalReason.APPLICATION);
  const bad = t.throws(() => p1.secagg!.serveReveal(new Uint8Array([0xff, 0xff, 0xff]), self), { instanceOf: RefusalError });
  t.is((bad as RefusalError).reason, RefusalReason.MALFORMED);
});

test.serial('secagg: a member crashes right after publishing its masked update; the round completes through reveals', async (t) => {
  const meshes = await startMeshes(N);
  t.teardown(() => stopAll(meshes));
  link(meshes, topologies.full(N));
  await waitFor(() => viewsConverged(meshes), 'membership views');
  const feds = await createFeds(meshes, (i) => tinyFl(i, N, { rounds: 2, secagg: true, roundTimeoutMs: 3000, leaderTimeoutMs: 1500 }));
  t.teardown(() => releaseAll(feds));
  const ids = meshes.map((m) => m.peerId.toString());
  const order = leaderOrder('test', 1, ids);
  // Neither the round-1 leader nor its first backup.
  const victim = ids.indexOf(order[N - 1]);
  leaderOf(feds[victim]).secagg!.onMaskedPublished = (round) => {
    if (round === 1) void (async () => {
      await meshes[victim].libp2p.stop();
      await feds[victim].stop();
    })();
  };
  const metrics = await Promise.all(feds.map((f) => f.run()));
  const survivors = [0, 1, 2, 3].filter((i) => i !== victim);
  t.is(new Set(finalHashes(survivors.map((i) => feds[i]))).size, 1, 'survivors hold one global state');
  for (const i of survivors) t.deepEqual(metrics[i].map((m) => m.version), [1, 2], `node ${i}`);
  t.deepEqual(metrics[victim], [], 'the victim never finished a round');
  const led = survivors.map((i) => metrics[i][0]).find((m) => m.via === 'led');
  t.truthy(led, 'round 1 was led by a survivor');
  t.is(led!.contributors, N - 1, 'the crashed member was unmasked around (dropped), the three others aggregated');
  for (const i of survivors) t.true(metrics[i].every((m) => Number.isFinite(m.trainLoss)));
});

test.serial('secagg: garbage masked messages and forged key announcements are refused without stalling the round', async (t) => {
  const meshes: Mesh[] = await startMeshes(3);
  t.teardown(() => stopAll(meshes));
  link(meshes, topologies.full(3));
  await waitFor(() => viewsConverged(meshes), 'membership views');
  const feds = await createFeds(meshes.slice(0, 2), (i) => tinyFl(i, 2, { rounds: 2, minMembers: 2, quorum: 0.66, secagg: true, roundTimeoutMs: 3000 }));
  t.teardown(() => releaseAll(feds));
  meshes[2].subscribe('masked', () => {});
  meshes[2].subscribe('secagg', () => {});
  const junk = Uint8Array.from({ length: 300 }, (_, i) => (i * 37 + 11) & 0xff);
  // A key announcement for node 2 whose signature is not by node 2's identity.
  const forged = encodeAnnounce({ federation: 'test', round: SECAGG_KEY_EPOCH }, {
    peerId: meshes[2].peerId.toString(), publicKey: new Uint8Array(32).fill(9), signature: new Uint8Array(64).fill(1),
  });
  const spam = setInterval(() => {
    void meshes[2].publish('masked', junk).catch(() => {});
    void meshes[2].publish('secagg', forged).catch(() => {});
  }, 100);
  t.teardown(() => clearInterval(spam));
  const metrics = await Promise.all(feds.map((f) => f.run()));
  clearInterval(spam);
  t.deepEqual(metrics.map((m) => m.map((x) => x.version)), [[1, 2], [1, 2]]);
  t.true(metrics.every((m) => m.every((x) => x.contributors === 2 || x.via !== 'led')), 'the two honest members were aggregated');
  const count = (r: RefusalReason) => meshes[0].refusalCount(r) + meshes[1].refusalCount(r);
  t.true(count(RefusalReason.MALFORMED) > 0, 'junk masked inputs were refused');
  t.true(count(RefusalReason.BAD_SIGNATURE) > 0, 'the forged key announcement was refused');
  t.is(new Set(finalHashes(feds)).size, 1);
});

test.serial('secagg with client DP: noise shares over the masked members, one state, epsilon accounted', async (t) => {
  const meshes = await startMeshes(3);
  t.teardown(() => stopAll(meshes));
  link(meshes, topologies.full(3));
  await waitFor(() => viewsConverged(meshes), 'membership views');
  const feds = await createFeds(meshes, (i) => tinyFl(i, 3, { rounds: 1, secagg: true, dpClip: 0.5, dpNoise: 0.5 }));
  t.teardown(() => releaseAll(feds));
  const metrics = await Promise.all(feds.map((f) => f.run()));
  t.is(new Set(finalHashes(feds)).size, 1);
  t.true(metrics.every((m) => m.length === 1 && m[0].version === 1 && m[0].epsilon !== undefined && Number.isFinite(m[0].epsilon)));
  // Each member's input carries its clipped delta plus N(0, (z·C)²/3): its L2 norm is near sqrt(C² + d·(z·C)²/3).
  const x = leaderOf(feds[0]).secagg!.lastInput!.values;
  const d = x.length;
  const norm = Math.sqrt(x.reduce((a, v) => a + v * v, 0));
  const expected = Math.sqrt(d * (0.25 * 0.25) / 3);
  t.true(norm > 0.7 * expected && norm < 1.3 * Math.sqrt(0.25 + expected * expected), `norm ${norm}, noise part ${expected}`);
});

test.serial('secagg settings: only the leader protocol and mean-based aggregators', async (t) => {
  const meshes = await startMeshes(1);
  t.teardown(() => stopAll(meshes));
  for (const extra of [{ protocol: 'gossip' }, { aggregator: 'median' }, { aggregator: 'krum' }, { secaggClip: 0 }]) {
    await t.throwsAsync(Federation.create(meshes[0], await tinyFl(0, 1, { secagg: true, ...extra }), { logger: silentLogger() }), { instanceOf: ConfigError }, JSON.stringify(extra));
  }
});
