/**
 * One lying, roster-listed member among honest nodes (real libp2p nodes on 127.0.0.1, rotating leader, a roster on
 * every node): each attack of issue 14 is contained. The liar runs the unchanged protocol behind a fault-injecting
 * mesh decorator (src/round/faults.ts).
 */
import test from 'ava';
import { createMesh, ephemeralIdentity, type Mesh } from '../../src/mesh/index.ts';
import { Federation, leaderOrder, VerifyRefusal, type LeaderProtocol, type RoundMetrics } from '../../src/round/index.ts';
import { withFaults, type FaultKind, type FaultLog } from '../../src/round/faults.ts';
import type { MeshPort } from '../../src/round/mesh-port.ts';
import { silentLogger } from '../../src/util/log.ts';
import { FAST, link, stopAll, topologies, viewsConverged, waitFor } from './mesh-helpers.ts';
import { finalHashes, releaseAll, tinyFl } from './fed-helpers.ts';

const N = 4;

async function rosterMeshes(n: number): Promise<Mesh[]> {
  const ids = await Promise.all(Array.from({ length: n }, () => ephemeralIdentity()));
  const roster = ids.map((i) => i.peerId.toString());
  const meshes: Mesh[] = [];
  for (const identity of ids) {
    const m = await createMesh({ federation: 'test', ...FAST, identity, roster });
    await m.start();
    meshes.push(m);
  }
  return meshes;
}

const proto = (f: Federation): LeaderProtocol => f.protocol as LeaderProtocol;

interface Run {
  meshes: Mesh[];
  feds: Federation[];
  ids: string[];
  metrics: RoundMetrics[][];
  log: FaultLog;
  honest: number[];
}

async function runWithLiar(t: import('ava').ExecutionContext, pickLiar: (ids: string[]) => number, kind: FaultKind, extra: Record<string, unknown> = {}): Promise<Run> {
  const meshes = await rosterMeshes(N);
  t.teardown(() => stopAll(meshes));
  link(meshes, topologies.full(N));
  await waitFor(() => viewsConverged(meshes), 'membership views');
  const ids = meshes.map((m) => m.peerId.toString());
  const liar = pickLiar(ids);
  let log: FaultLog = { forgedGlobals: 0, forgedStates: 0, withheld: 0 };
  let liarFed: Federation | undefined;
  // The liar runs the unchanged protocol behind a fault-injecting MeshPort decorator.
  // Built inside Federation.create, before the federation exists: the manifest is read when first needed.
  const decorate = (port: MeshPort): MeshPort => {
    const r = withFaults(port, {
      kind, factor: 20, loraRank: 2, state: () => proto(liarFed!).globalState(),
      get manifest() {
        return liarFed!.manifest;
      },
      members: () => [ids[liar], ...meshes[liar].membership.memberIds()].sort(),
    });
    log = r.log;
    return r.port;
  };
  const feds = await Promise.all(meshes.map(async (m, i) => Federation.create(m, await tinyFl(i, N, { rounds: 3, roundTimeoutMs: 8000, leaderTimeoutMs: 2000, ...extra }), {
    logger: silentLogger(), decorate: i === liar ? decorate : undefined,
  })));
  t.teardown(() => releaseAll(feds));
  liarFed = feds[liar];
  t.is(liarFed.cfg.rank, 2, 'the forgeries encode LoRA rank 2 (tinyFl)');
  const metrics = await Promise.all(feds.map((x) => x.run()));
  return { meshes, feds, ids, metrics, log, honest: [0, 1, 2, 3].filter((i) => i !== liar) };
}

/** Every honest node applied rounds 1..3 once each, all end on one state with finite weights. */
function honestAgree(t: import('ava').ExecutionContext, r: Run): void {
  for (const i of r.honest) t.deepEqual(r.metrics[i].map((m) => m.version), [1, 2, 3], `node ${i} applied each version once`);
  t.is(new Set(finalHashes(r.honest.map((i) => r.feds[i]))).size, 1, 'the honest nodes hold one state');
  for (const i of r.honest) for (const v of proto(r.feds[i]).globalState().tensors.values()) t.true(v.every(Number.isFinite));
}

const refusals = (r: Run, why: VerifyRefusal): number => r.honest.reduce((a, i) => a + proto(r.feds[i]).refusalCount(why), 0);

test.serial('a leader that publishes its aggregate scaled x20 (self-consistent hashes): refused by recomputation, the next rank takes over', async (t) => {
  const r = await runWithLiar(t, (ids) => ids.indexOf(leaderOrder('test', 1, ids)[0]), 'scale-global');
  const liar = r.ids.find((_, i) => !r.honest.includes(i))!;
  t.true(r.log.forgedGlobals >= 1, 'the liar led and forged at least once');
  honestAgree(t, r);
  t.true(refusals(r, VerifyRefusal.AGGREGATE_MISMATCH) >= 1, 'the mismatch was logged as evidence');
  for (const i of r.honest) {
    const m1 = r.metrics[i][0];
    t.not(m1.leader, liar, `node ${i}: round 1 was not closed by the liar's aggregate`);
  }
});

test.serial('with a verifying committee of 3 (of 4), a leader\'s x20 step is refused by the committee and never adopted off it', async (t) => {
  const r = await runWithLiar(t, (ids) => ids.indexOf(leaderOrder('test', 1, ids)[0]), 'scale-global', { committee: 3 });
  const liar = r.ids.find((_, i) => !r.honest.includes(i))!;
  t.true(r.log.forgedGlobals >= 1, 'the liar led and forged at least once');
  honestAgree(t, r);
  t.true(refusals(r, VerifyRefusal.AGGREGATE_MISMATCH) >= 1, 'the committee found the mismatch');
  const off = r.honest.filter((i) => !leaderOrder('test', 1, r.ids).slice(0, 3).includes(r.ids[i]));
  t.is(off.length, 1, 'one honest member is off the committee of round 1');
  for (const i of r.honest) t.not(r.metrics[i][0].leader, liar, `node ${i}: round 1 was not closed by the liar's aggregate`);
  t.true(proto(r.feds[off[0]]).refusalCount(VerifyRefusal.AWAITING_COMMITTEE) >= 1, 'off the committee, the forged aggregate was held for lack of committee attestations');
});

test.serial("a member's self-made aggregate published at once when among the first ranks is never applied", async (t) => {
  // The liar is rank 1..3 of round 1 (never rank 0), so any aggregate of it for round 1 comes before its slot.
  const r = await runWithLiar(t, (ids) => ids.indexOf(leaderOrder('test', 1, ids)[1]), 'early-global');
  const liar = r.ids.find((_, i) => !r.honest.includes(i))!;
  t.true(r.log.forgedGlobals >= 1, 'the liar published early aggregates');
  honestAgree(t, r);
  for (const rr of [1, 2, 3]) {
    if (leaderOrder('test', rr, r.ids)[0] === liar) continue;
    for (const i of r.honest) t.not(r.metrics[i][rr - 1].leader, liar, `node ${i}, round ${rr}: the early aggregate was not applied`);
  }
  t.true(refusals(r, VerifyRefusal.SLOT_NOT_OPEN) + refusals(r, VerifyRefusal.QUORUM_NOT_MET) + refusals(r, VerifyRefusal.AGGREGATE_MISMATCH) >= 1);
});

test.serial('a member serving forged states ahead (past --rounds, or with a certificate of made-up keys) is never adopted', async (t) => {
  const r = await runWithLiar(t, () => 3, 'forge-state');
  t.true(r.log.forgedStates >= 2, `the liar answered ${r.log.forgedStates} state requests with forgeries`);
  honestAgree(t, r);
  t.true(refusals(r, VerifyRefusal.PAST_LAST_ROUND) >= 1, 'a state past the last round was refused');
  t.true(refusals(r, VerifyRefusal.UNCERTIFIED_STATE) >= 1, 'a state without a roster-majority certificate was refused');
  for (const i of r.honest) t.true(r.metrics[i].every((m) => m.via !== 'synced' || m.version <= 3));
});

test.serial('a member that withholds its update holds at most the first round open: later rounds close once everyone else is in', async (t) => {
  // The liar never leads rounds 1-3 here, so every round is closed by an honest leader.
  const r = await runWithLiar(t, (ids) => ids.findIndex((id) => [1, 2, 3].every((rr) => leaderOrder('test', rr, ids)[0] !== id)), 'withhold');
  t.true(r.log.withheld >= 3);
  honestAgree(t, r);
  const closed = new Map<number, string>();
  for (const i of r.honest) for (const [rr, why] of proto(r.feds[i]).closedBy) closed.set(rr, why);
  t.is(closed.get(1), 'deadline', 'round 1 waited for the withholding member until the deadline');
  t.is(closed.get(2), 'all-in', 'round 2 closed as soon as every member still contributing had sent');
  t.is(closed.get(3), 'all-in');
  for (const i of r.honest) for (const m of r.metrics[i]) if (m.via !== 'synced') t.is(m.contributors, 3);
});

test.serial('a minority partition pauses (and says so) while the majority goes on; after the heal it adopts the certified state', async (t) => {
  const n = 5;
  const meshes = await rosterMeshes(n);
  t.teardown(() => stopAll(meshes));
  link(meshes, topologies.full(n));
  await waitFor(() => viewsConverged(meshes), 'membership views');
  const minority = [0, 1];
  const major = [2, 3, 4];
  const ids = (g: number[]): string[] => g.map((i) => meshes[i].peerId.toString());
  await Promise.all([...minority.map(async (i) => meshes[i].block(ids(major))), ...major.map(async (i) => meshes[i].block(ids(minority)))]);
  await waitFor(() => viewsConverged(meshes, minority) && viewsConverged(meshes, major), 'each side sees only itself');
  const lines: string[] = [];
  const { pino } = await import('pino');
  const feds = await Promise.all(meshes.map(async (m, i) => Federation.create(m, await tinyFl(i, n, {
    rounds: 3, minMembers: minority.includes(i) ? 2 : 3, roundTimeoutMs: 3000, leaderTimeoutMs: 1000,
  }), { logger: minority.includes(i) ? pino({ level: 'warn' }, { write: (l: string) => void lines.push(l) }) : silentLogger() })));
  t.teardown(() => releaseAll(feds));
  const minorRuns = minority.map((i) => feds[i].run());
  const majorMetrics = await Promise.all(major.map((i) => feds[i].run()));
  for (const m of majorMetrics) t.deepEqual(m.map((x) => x.version), [1, 2, 3], 'the majority side completes every round');
  await waitFor(() => lines.some((l) => l.includes('round paused')), 'the minority says it is paused');
  for (const i of minority) t.is(feds[i].protocol.round, 0, `minority node ${i} did not advance on its own`);
  for (const i of minority) meshes[i].unblock(ids(major));
  for (const i of major) meshes[i].unblock(ids(minority));
  const minorMetrics = await Promise.all(minorRuns);
  for (const m of minorMetrics) t.deepEqual(m.map((x) => [x.version, x.via]), [[3, 'synced']], 'the minority caught up through the certified state, applying nothing of its own');
  t.is(new Set(finalHashes(feds)).size, 1, 'all five end on one state');
});
