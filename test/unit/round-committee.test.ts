/**
 * The leader protocol's verifying committee (`committee: 3` of five members, protocols/round.md "Verifying
 * committee") against the in-memory mesh (test/fake-mesh.ts). Updates are above the `update` topic's stream cutover
 * (4 KB of fp32), so taking one is a pull in the libp2p mesh; the fake records what each port took and declined.
 * Only the round's committee (its first three ranks) takes and recomputes; the others pull the fp16 step over
 * `round.step` and apply it only with the attestations of a committee majority.
 */
import test, { type ExecutionContext } from 'ava';
import { Attestation, GlobalUpdate, SignedUpdate } from '../../src/round/pb/round.ts';
import { withFaults } from '../../src/round/faults.ts';
import { hex, leaderOrder, LeaderProtocol, makeState, VerifyRefusal } from '../../src/round/index.ts';
import type { MeshPort } from '../../src/round/mesh-port.ts';
import { ATTEST_TOPIC, GLOBAL_TOPIC, INPUT_METHOD, STEP_METHOD, UPDATE_TOPIC } from '../../src/round/leader-wire.ts';
import { makeAttestation } from '../../src/round/certificate.ts';
import { decodeUpdate, type UpdateManifest } from '../../src/update/index.ts';
import { silentLogger } from '../../src/util/log.ts';
import { fakeMeshes } from '../fake-mesh.ts';
import { ROUNDS, roundNode, roundOptions, runNode, stopAll, type RoundNode } from '../round-harness.ts';

const FED = 'fake';
const N = 5;
const C = 3;
const manifest: UpdateManifest = { tensors: [{ name: 'w', shape: [32, 32] }, { name: 'b', shape: [32] }] };
const initial = makeState(0, new Map([['w', new Float32Array(1024).fill(0.1)], ['b', new Float32Array(32)]]), [], manifest);

/** What the members published on `attest` (every port) and the liar's forged commitments. */
interface Seen {
  attestations: Attestation[];
  forged: { round: number; newHash: string }[];
}

/**
 * Five members; `liar` leads with `scale-global` (a x20 step with consistent hashes, served over round.step) and, with
 * `attestForged`, also attests its forged commitment (one lying committee member).
 */
async function federation(o: { committee?: number; liar?: number; attestForged?: boolean } = {}) {
  const { net, ports, ids } = await fakeMeshes(N, { federation: FED });
  const seen: Seen = { attestations: [], forged: [] };
  const nodes: RoundNode[] = [];
  ports.forEach((port, i) => {
    const recording: MeshPort = {
      federation: port.federation, selfId: port.selfId, roster: port.roster, onRoster: (p) => port.onRoster(p), unsubscribe: (n) => port.unsubscribe(n),
      handleRequest: (m, h) => port.handleRequest(m, h), request: (p, m, b, x) => port.request(p, m, b, x), signWithIdentity: (d) => port.signWithIdentity(d),
      subscribe: (n, h, x) => port.subscribe(n, h, x),
      publish: async (name, payload) => {
        if (name === ATTEST_TOPIC) seen.attestations.push(Attestation.decode(payload));
        const r = await port.publish(name, payload);
        if (name === GLOBAL_TOPIC && i === o.liar) {
          const g = GlobalUpdate.decode(payload);
          seen.forged.push({ round: Number(g.round), newHash: hex(g.newHash) });
          if (o.attestForged) {
            const a = await makeAttestation((d) => port.signWithIdentity(d), FED, port.selfId, Number(g.round), g.baseHash, g.newHash);
            seen.attestations.push(a);
            await port.publish(ATTEST_TOPIC, Attestation.encode(a));
          }
        }
        return r;
      },
    };
    const mesh = i === o.liar
      ? withFaults(recording, { kind: 'scale-global', factor: 20, manifest, loraRank: 0, seed: 3, state: () => nodes[i].proto.globalState(), members: () => net.view(port.selfId) }).port
      : recording;
    const ctx = { mesh, federation: FED, selfId: port.selfId, manifest, loraRank: 0, logger: silentLogger(), seed: 11 + i, members: () => net.view(port.selfId) };
    nodes.push(roundNode(i, port, new LeaderProtocol(ctx, roundOptions({ committee: o.committee }, 16), initial)));
  });
  for (const n of nodes) await n.proto.start();
  const loops = nodes.map((n) => runNode(n));
  const honest = nodes.map((n) => n.i).filter((i) => i !== o.liar);
  await Promise.all(honest.map((i) => loops[i]));
  await stopAll(nodes, net);
  await Promise.all(loops.map((l) => l.catch(() => undefined)));
  return { ids, nodes, honest, seen };
}

/** The round's committee: its first C ranks over the roster (every member is alive here). */
const committeeOf = (ids: readonly string[], round: number): string[] => leaderOrder(FED, round, ids).slice(0, C);

/** Every honest node applied rounds 1..ROUNDS once, in order, and all end on one state; returns its hash. */
function honestAgree(t: ExecutionContext, nodes: RoundNode[], honest: number[]): string {
  for (const i of honest) t.deepEqual(nodes[i].outcomes.map((o) => o.round), [1, 2, 3], `node ${i} took each round once`);
  const hs = new Set(honest.map((i) => nodes[i].hashes.at(-1)));
  t.is(hs.size, 1, 'one state on every honest node');
  return [...hs][0]!;
}

let reference: Promise<string> | undefined;
/** The same federation with every member verifying (the default). */
function referenceHash(t: ExecutionContext): Promise<string> {
  reference ??= (async () => {
    const f = await federation();
    return honestAgree(t, f.nodes, f.honest);
  })();
  return reference;
}

test.serial('honest rounds with a committee of 3 of 5: one identical state everywhere, bit-equal to full verification; non-committee members take no update', async (t) => {
  const f = await federation({ committee: C });
  const h = honestAgree(t, f.nodes, f.honest);
  t.is(h, await referenceHash(t), 'the fp16 step pulled off the committee gives exactly the state every member recomputes');
  for (const n of f.nodes) {
    const me = f.ids[n.i];
    for (const p of n.port.pulled.filter((x) => x.topic === UPDATE_TOPIC)) {
      const u = decodeUpdate(SignedUpdate.decode(p.payload).update, manifest);
      t.true(committeeOf(f.ids, u.round).includes(me), `node ${n.i} took ${p.from.slice(-4)}'s update of round ${u.round} only on that round's committee`);
    }
    const off = [1, 2, 3].filter((r) => !committeeOf(f.ids, r).includes(me));
    if (off.length > 0) {
      t.true(n.port.declined.some((x) => x.topic === UPDATE_TOPIC), `node ${n.i} declined updates in its ${off.length} round(s) off the committee`);
      t.true((n.port.requests.get(STEP_METHOD) ?? 0) >= off.length, `node ${n.i} pulled the step of each round off the committee`);
    }
    const on = [1, 2, 3].filter((r) => committeeOf(f.ids, r).includes(me));
    if (on.length === 0) t.is(n.port.requests.get(INPUT_METHOD) ?? 0, 0, `node ${n.i}, never on a committee, asked for no input`);
    for (const o of n.outcomes) if (!committeeOf(f.ids, o.round).includes(me)) t.is(o.via, 'applied', `node ${n.i} applied round ${o.round} off the committee`);
  }
});

test.serial('a lying leader\'s x20 step with consistent hashes (also served over round.step) is adopted by no one: the committee refuses it and non-committee members wait for a committee majority', async (t) => {
  const ids = (await fakeMeshes(N, { federation: FED })).ids;
  const liar = ids.indexOf(leaderOrder(FED, 1, ids)[0]);
  const f = await federation({ committee: C, liar });
  t.true(f.seen.forged.length >= 1, 'the liar led and published a forged commitment');
  honestAgree(t, f.nodes, f.honest);
  const forged = new Set(f.seen.forged.map((x) => x.newHash));
  for (const i of f.honest) for (const h of f.nodes[i].hashes) t.false(forged.has(h), `node ${i} never held a forged state`);
  const round1Off = f.honest.filter((i) => !committeeOf(ids, 1).includes(ids[i]));
  t.is(round1Off.length, N - C, 'two honest members were off the committee of the forged round');
  for (const i of round1Off) {
    t.true(f.nodes[i].proto.refusalCount(VerifyRefusal.AWAITING_COMMITTEE) >= 1, `node ${i} held the forged aggregate for lack of committee attestations`);
    t.not(f.nodes[i].outcomes[0].leader, ids[liar], `node ${i}: round 1 did not come from the liar`);
  }
  const committee1 = f.honest.filter((i) => committeeOf(ids, 1).includes(ids[i]));
  t.true(committee1.reduce((a, i) => a + f.nodes[i].proto.refusalCount(VerifyRefusal.AGGREGATE_MISMATCH), 0) >= 1, 'the committee found the mismatch');
});

test.serial('one lying committee member that attests its own forged step cannot get it certified: no honest member attests or applies it', async (t) => {
  const ids = (await fakeMeshes(N, { federation: FED })).ids;
  const liar = ids.indexOf(leaderOrder(FED, 1, ids)[0]);
  const f = await federation({ committee: C, liar, attestForged: true });
  honestAgree(t, f.nodes, f.honest);
  const forged = new Set(f.seen.forged.map((x) => x.newHash));
  t.true(forged.size >= 1);
  const onForged = f.seen.attestations.filter((a) => forged.has(hex(a.newHash)));
  t.deepEqual([...new Set(onForged.map((a) => a.signer))], [ids[liar]], 'only the liar attested a forged hash: one of the three committee signatures a majority needs two of');
  for (const i of f.honest) for (const h of f.nodes[i].hashes) t.false(forged.has(h), `node ${i} never held a forged state`);
});
