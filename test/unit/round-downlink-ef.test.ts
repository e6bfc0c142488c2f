/**
 * Compressed downlink with error feedback (protocols/round.md "Compressed downlink"): a verifying committee of 3 of
 * five members against the in-memory mesh (test/fake-mesh.ts), the step off the committee a 1-bit scaled sign whose
 * encoding error (the residual) is replicated server state: every verifying member computes it, a member joining the
 * next round's committee pulls it (`round.residual`) and takes it only when a committee majority's attestations vouch
 * for its digest. Asserts one identical state everywhere, the residual carried (byte-identical on every member that
 * holds it, and it changes the result), a lying leader still refused, and a lying residual server refused, also
 * when it leads with a step built on its own tampered residual.
 */
import { createHash } from 'node:crypto';
import test, { type ExecutionContext } from 'ava';
import { Attestation, GlobalUpdate, SignedUpdate } from '../../src/round/pb/round.ts';
import { makeAttestation } from '../../src/round/certificate.ts';
import { withFaults } from '../../src/round/faults.ts';
import { DEFAULT_ROUND_OPTIONS, hex, leaderOrder, LeaderProtocol, makeState, VerifyRefusal, type RoundOptions, type RoundOutcome } from '../../src/round/index.ts';
import type { MeshPort } from '../../src/round/mesh-port.ts';
import type { LeaderCore } from '../../src/round/leader-core.ts';
import { ATTEST_TOPIC, GLOBAL_TOPIC, RESIDUAL_METHOD, STEP_METHOD, UPDATE_TOPIC } from '../../src/round/leader-wire.ts';
import { decodeUpdate, encodeUpdate, type TensorMap, type UpdateManifest } from '../../src/update/index.ts';
import { Rng } from '../../src/util/rng.ts';
import { createLogger, silentLogger } from '../../src/util/log.ts';
import { fakeMeshes, type FakePort } from '../fake-mesh.ts';

const FED = 'fake';
const N = 5;
const C = 3;
const ROUNDS = 4;
const manifest: UpdateManifest = { tensors: [{ name: 'w', shape: [32, 32] }, { name: 'b', shape: [32] }] };
const initial = makeState(0, new Map([['w', new Float32Array(1024).fill(0.1)], ['b', new Float32Array(32)]]), [], manifest);
const DELTA = 0.01;

function options(o: { committee?: number; ef?: boolean; bits?: 1 | 16 }): RoundOptions {
  return {
    ...DEFAULT_ROUND_OPTIONS,
    compression: { topk: 1, bits: 32, errorFeedback: false, downlinkBits: o.bits ?? 1, downlinkErrorFeedback: o.ef ?? true, brotli: false },
    aggregator: 'fedavgm', roundTimeoutMs: 30_000, minRoundTimeoutMs: 20_000, leaderTimeoutMs: 500, maxRounds: ROUNDS, committee: o.committee,
  };
}

function train(start: TensorMap, i: number, round: number): TensorMap {
  const rng = new Rng(1000 * i + round);
  return new Map([...start].map(([k, v]) => [k, Float32Array.from(v, (x) => x + DELTA * (2 * rng.next() - 1))]));
}

interface Node { i: number; port: FakePort; proto: LeaderProtocol; outcomes: RoundOutcome[]; hashes: string[]; steps: Uint8Array[] }

/**
 * Five members. `liar` leads with `scale-global` (a x20 step, consistent hashes, served over round.step), or, with
 * `badResidual`, is honest but serves a tampered residual (x5) over round.residual.
 */
async function federation(o: { committee?: number; ef?: boolean; bits?: 1 | 16; liar?: number; badResidual?: boolean; heldResidual?: boolean; digestless?: boolean } = {}) {
  const { net, ports, ids } = await fakeMeshes(N, { federation: FED });
  const forged: string[] = [];
  const nodes: Node[] = [];
  // heldResidual: the liar itself holds the tampered residual (x5), so it serves it and leads with steps built on it.
  const tampered = new Set<string>();
  const tamper = (bytes: Uint8Array): Uint8Array => {
    if (tampered.has(hex(bytes))) return bytes;
    const u = decodeUpdate(bytes, manifest);
    const deltas: TensorMap = new Map([...u.deltas].map(([k, v]) => [k, Float32Array.from(v, (x) => 5 * x + 1e-3)]));
    const out = encodeUpdate({ ...u, deltas }, manifest, { bits: 8, seed: 1 }).bytes;
    tampered.add(hex(out));
    return out;
  };
  let liarTampered = false;
  ports.forEach((port, i) => {
    const steps: Uint8Array[] = [];
    const recording: MeshPort = {
      federation: port.federation, selfId: port.selfId, roster: port.roster, onRoster: (p) => port.onRoster(p), unsubscribe: (n) => port.unsubscribe(n),
      handleRequest: (m, h) => port.handleRequest(m, !((o.badResidual || o.heldResidual) && i === o.liar && m === RESIDUAL_METHOD) ? h : async (body, from) => tamper(await h(body, from))),
      request: async (p, m, b, x) => {
        const r = await port.request(p, m, b, x);
        if (m === STEP_METHOD) steps.push(r);
        return r;
      },
      signWithIdentity: (d) => port.signWithIdentity(d),
      subscribe: (n, h, x) => port.subscribe(n, h, x),
      publish: async (name, payload) => {
        if (name === GLOBAL_TOPIC && i === o.liar && !o.badResidual && !o.digestless && (!o.heldResidual || liarTampered)) forged.push(hex(GlobalUpdate.decode(payload).newHash));
        if (name === ATTEST_TOPIC && i === o.liar && o.digestless) {
          // The liar attests the right hash but vouches for no residual (as if it had not recomputed).
          const a = Attestation.decode(payload);
          const bare = await makeAttestation((d) => port.signWithIdentity(d), FED, port.selfId, Number(a.round), a.baseHash, a.newHash);
          return port.publish(name, Attestation.encode(bare));
        }
        if (name === ATTEST_TOPIC && o.digestless) {
          // Honest attestations travel slower (by node), so the liar's often completes a committee majority first.
          await new Promise((r) => setTimeout(r, 150 * (i + 1)));
        }
        return port.publish(name, payload);
      },
    };
    const mesh = i === o.liar && !o.badResidual && !o.heldResidual && !o.digestless
      ? withFaults(recording, { kind: 'scale-global', factor: 20, manifest, loraRank: 0, seed: 3, state: () => nodes[i].proto.globalState(), members: () => net.view(port.selfId) }).port
      : recording;
    const ctx = { mesh, federation: FED, selfId: port.selfId, manifest, loraRank: 0, logger: process.env.EF_LOG ? createLogger({ level: 'debug', name: String(i) }) : silentLogger(), seed: 11 + i, members: () => net.view(port.selfId) };
    nodes.push({ i, port, proto: new LeaderProtocol(ctx, options(o), initial), outcomes: [], hashes: [], steps });
  });
  for (const n of nodes) await n.proto.start();
  const loops = nodes.map(async (n) => {
    await n.proto.catchUp();
    while (n.proto.round < ROUNDS) {
      const out = await n.proto.exchange({ tensors: train(n.proto.trainingStart(), n.i, n.proto.round + 1), prototypes: [], sampleCount: 10 + n.i });
      n.outcomes.push(out);
      n.hashes.push(hex(n.proto.globalState().hash));
      if (o.heldResidual && n.i === o.liar) {
        // The liar's own copy of the residual becomes the tampered one: what it serves and what its next lead uses.
        const core = (n.proto as unknown as { core: LeaderCore }).core;
        if (core.downRes && core.downRes.version === core.state.version && core.downRes.residual.bytes.byteLength > 0) {
          const bytes = tamper(core.downRes.residual.bytes);
          core.downRes = { ...core.downRes, residual: { tensors: decodeUpdate(bytes, manifest).deltas, bytes } };
          core.residuals.set(core.state.version, { hash: core.state.hash, bytes });
          liarTampered = true;
        }
      }
    }
  });
  const honest = nodes.map((n) => n.i).filter((i) => i !== o.liar || o.badResidual || o.digestless);
  await Promise.all(honest.map((i) => loops[i]));
  const residuals = nodes.map((n) => n.proto.downlinkResidual());
  for (const n of nodes) await n.proto.stop();
  await net.settle();
  await Promise.all(loops.map((l) => l.catch(() => undefined)));
  return { ids, nodes, honest, forged, residuals };
}

const committeeOf = (ids: readonly string[], round: number): string[] => leaderOrder(FED, round, ids).slice(0, C);
const rounds = Array.from({ length: ROUNDS }, (_, k) => k + 1);

function honestAgree(t: ExecutionContext, nodes: Node[], honest: number[]): string {
  for (const i of honest) t.deepEqual(nodes[i].outcomes.map((o) => o.round), rounds, `node ${i} took each round once`);
  const hs = new Set(honest.map((i) => nodes[i].hashes.at(-1)));
  t.is(hs.size, 1, 'one state on every honest node');
  return [...hs][0]!;
}

test.serial('1-bit step with error feedback, committee 3 of 5: one state everywhere, 1-bit steps off the committee, the residual identical on every holder, pulled by members joining a committee, and it changes the result', async (t) => {
  const f = await federation({ committee: C });
  const h = honestAgree(t, f.nodes, f.honest);
  const ids = f.ids;
  // The steps that travelled are scaled signs: one bit per value plus a scale per 1,024 values.
  let pulledSteps = 0;
  for (const n of f.nodes) for (const s of n.steps) {
    t.true(s.byteLength < 400, `a ${s.byteLength}-byte step for 1,056 values (fp16: over 2 KB)`);
    const w = decodeUpdate(s, manifest).deltas.get('w')!;
    t.is(new Set(w.map(Math.abs)).size, 1, 'one magnitude per 1,024-value block: a scaled sign');
    pulledSteps++;
  }
  t.true(pulledSteps >= 1, 'members off a committee pulled steps');
  // Every member that holds the residual of the final state holds the same bytes, and it is not zero.
  const finals = f.residuals.filter((r) => r !== null && r.version === ROUNDS);
  t.true(finals.length >= C, `${finals.length} members hold the final residual (at least the last committee)`);
  t.is(new Set(finals.map((r) => hex(r!.bytes))).size, 1, 'one residual, byte for byte, on every holder');
  const res = decodeUpdate(finals[0]!.bytes, manifest);
  t.true([...res.deltas.values()].some((v) => v.some((x) => x !== 0)), 'the residual is not zero');
  // A member that joins round r's committee from off round r-1's pulls the residual and then recomputes round r.
  let joiners = 0;
  for (const r of rounds.slice(1)) {
    for (const id of committeeOf(ids, r).filter((p) => !committeeOf(ids, r - 1).includes(p))) {
      const n = f.nodes[ids.indexOf(id)];
      joiners++;
      t.true((n.port.requests.get(RESIDUAL_METHOD) ?? 0) >= 1, `node ${n.i} pulled a residual before joining round ${r}'s committee`);
      const took = n.port.pulled.filter((x) => x.topic === UPDATE_TOPIC).map((x) => decodeUpdate(SignedUpdate.decode(x.payload).update, manifest).round);
      t.true(took.includes(r), `node ${n.i} took round ${r}'s updates to recompute`);
      t.not(n.outcomes[r - 1].via, 'synced', `node ${n.i} did not need a state pull in round ${r}`);
    }
  }
  t.true(joiners >= 1, 'the committee rotated');
  for (const i of f.honest) {
    t.is(f.nodes[i].proto.refusalCount(VerifyRefusal.AGGREGATE_MISMATCH), 0, `node ${i} refused no honest step`);
    t.is(f.nodes[i].proto.refusalCount(VerifyRefusal.UNVERIFIABLE), 0, `node ${i} could always recompute when on the committee`);
  }
  const noEf = await federation({ committee: C, ef: false });
  t.not(honestAgree(t, noEf.nodes, noEf.honest), h, 'the same 1-bit run without error feedback ends elsewhere: the residual was carried');
});

test.serial('with error feedback a lying leader\'s x20 step (consistent hashes, served over round.step) is adopted by no one', async (t) => {
  const ids = (await fakeMeshes(N, { federation: FED })).ids;
  const liar = ids.indexOf(leaderOrder(FED, 1, ids)[0]);
  const f = await federation({ committee: C, liar });
  t.true(f.forged.length >= 1, 'the liar led and published a forged commitment');
  honestAgree(t, f.nodes, f.honest);
  const forged = new Set(f.forged);
  for (const i of f.honest) for (const h of f.nodes[i].hashes) t.false(forged.has(h), `node ${i} never held a forged state`);
  const committee1 = f.honest.filter((i) => committeeOf(ids, 1).includes(ids[i]));
  t.true(committee1.reduce((a, i) => a + f.nodes[i].proto.refusalCount(VerifyRefusal.AGGREGATE_MISMATCH), 0) >= 1, 'the committee found the mismatch');
  const finals = f.honest.map((i) => f.residuals[i]).filter((r) => r !== null && r.version === ROUNDS);
  t.is(new Set(finals.map((r) => hex(r!.bytes))).size, 1, 'honest holders agree on the residual');
});

test.serial('a member serving a tampered residual splits no one: every node goes through the same states, and every holder of the final residual holds the honest one', async (t) => {
  const ids = (await fakeMeshes(N, { federation: FED })).ids;
  // The liar leads round 1 honestly, so members joining round 2's committee ask it first for the residual.
  const liar = ids.indexOf(leaderOrder(FED, 1, ids)[0]);
  const f = await federation({ committee: C, liar, badResidual: true });
  honestAgree(t, f.nodes, f.nodes.map((n) => n.i));
  const joiners = committeeOf(ids, 2).filter((p) => !committeeOf(ids, 1).includes(p)).map((p) => ids.indexOf(p));
  t.true(joiners.length >= 1);
  for (const i of joiners) t.true((f.nodes[i].port.requests.get(RESIDUAL_METHOD) ?? 0) >= 1, `node ${i} pulled a residual (the liar, round 1's publisher, is asked first)`);
  for (const n of f.nodes) t.deepEqual(n.hashes, f.nodes[0].hashes, `node ${n.i} went through exactly the same states as node 0 (no detour on a tampered residual)`);
  t.log(f.residuals.map((r, i) => `${i}:${r ? `${r.version}/${r.pulled}/${createHash("sha256").update(r.bytes).digest("hex").slice(0, 12)}` : 'none'}`).join(' '));
  const own = f.residuals.filter((r) => r !== null && r.version === ROUNDS && !r.pulled);
  t.true(own.length >= 1);
  const held = f.residuals.filter((r) => r !== null && r.version === ROUNDS);
  t.is(new Set(held.map((r) => hex(r!.bytes))).size, 1, 'every member holding the final residual, computed or pulled, holds the same bytes: a pulled residual is taken only when a committee majority vouches for its digest');
  t.true(f.nodes.reduce((a, n) => a + n.proto.refusalCount(VerifyRefusal.RESIDUAL_UNVOUCHED), 0) >= 1, 'the tampered residual was refused where it was served');
  const found = f.nodes.reduce((a, n) => a + n.proto.refusalCount(VerifyRefusal.AGGREGATE_MISMATCH), 0);
  t.log(`recomputations that exposed a step built on the tampered residual: ${found}`);
});

test.serial('a member that holds a tampered residual, serves it and then leads with a step built on it makes no honest member apply that step (the residual is vouched for by a committee majority)', async (t) => {
  const ids = (await fakeMeshes(N, { federation: FED })).ids;
  // The attack of the review: the liar attested round v on its committee (so members joining round v+1's committee
  // may pull the residual from it) and leads round v+1 with E = enc(s + e'), e' its tampered residual. A joiner that
  // took e' would reproduce E and attest it: with the liar, a majority of round v+1's committee of 3.
  const pick = [1, 2, 3].flatMap((v) => committeeOf(ids, v).filter((p) => leaderOrder(FED, v + 1, ids)[0] === p && committeeOf(ids, v + 1).some((q) => !committeeOf(ids, v).includes(q))).map((p) => ({ v, liar: ids.indexOf(p) })))[0];
  t.truthy(pick, 'the seeded roster has a member on round v\'s committee that leads round v+1 while someone joins');
  const f = await federation({ committee: C, liar: pick.liar, heldResidual: true });
  t.true(f.forged.length >= 1, `the liar (node ${pick.liar}, round ${pick.v + 1}'s leader) published steps built on its tampered residual`);
  honestAgree(t, f.nodes, f.honest);
  const forged = new Set(f.forged);
  for (const i of f.honest) for (const h of f.nodes[i].hashes) t.false(forged.has(h), `node ${i} never held a state built on the tampered residual`);
  const vouched = f.honest.reduce((a, i) => a + f.nodes[i].proto.refusalCount(VerifyRefusal.RESIDUAL_UNVOUCHED), 0);
  t.true(vouched >= 1, `a member refused the liar's residual for want of a committee majority vouching for it (${vouched})`);
  const finals = f.honest.map((i) => f.residuals[i]).filter((r) => r !== null && r.version === ROUNDS);
  t.is(new Set(finals.map((r) => hex(r!.bytes))).size, 1, 'honest holders agree on the residual');
});

test.serial('a committee member that attests without vouching for the residual stalls no one: members refused a residual pull it again once a committee majority vouches', async (t) => {
  const ids = (await fakeMeshes(N, { federation: FED })).ids;
  // Review finding: its attestation counts towards applying the step (leader + it = 2 of 3) before the honest third
  // member's arrives, so members off the committee applied and pulled the residual with one voucher, were refused,
  // and never pulled again: the next committee could neither recompute nor lead, and the federation stalled.
  const liar = ids.indexOf(committeeOf(ids, 2).find((p) => p !== leaderOrder(FED, 2, ids)[0])!);
  const f = await Promise.race([
    federation({ committee: C, liar, digestless: true }),
    new Promise<null>((r) => setTimeout(() => r(null), 60_000)),
  ]);
  t.truthy(f, 'every member finished all rounds (no stall)');
  if (!f) return;
  honestAgree(t, f.nodes, f.nodes.map((n) => n.i));
  const finals = f.residuals.filter((r) => r !== null && r.version === ROUNDS);
  t.true(finals.length >= C - 1, `${finals.length} members hold the final residual`);
  t.is(new Set(finals.map((r) => hex(r!.bytes))).size, 1, 'one residual on every holder');
  const refused = f.nodes.reduce((a, n) => a + n.proto.refusalCount(VerifyRefusal.RESIDUAL_UNVOUCHED), 0);
  t.true(refused >= 1, `the scenario happened: ${refused} residual pulls were refused for want of vouchers, and retried`);
});
