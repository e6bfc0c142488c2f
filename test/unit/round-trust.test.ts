/** Pure parts of verified aggregates and certified state: certificates, the deterministic step, the adaptive deadline. */
import test from 'ava';
import { generateKeyPair } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { ArrivalTracker, AttestationStore, checkCertificate, computeGlobalStep, majority, makeState, WithholdRecord } from '../../src/round/index.ts';
import { certifyingSubset, makeAttestation, MAX_ATTESTATIONS_PER_SIGNER, MAX_HASHES_PER_SIGNER_ROUND } from '../../src/round/certificate.ts';
import { ARRIVAL_SLACK, WITHHOLD_ROUNDS } from '../../src/round/verify.ts';
import type { ModelUpdate, UpdateManifest } from '../../src/update/index.ts';

const manifest: UpdateManifest = { tensors: [{ name: 'x', shape: [4] }] };

async function signers(n: number) {
  return Promise.all(Array.from({ length: n }, async () => {
    const k = await generateKeyPair('Ed25519');
    return { id: peerIdFromPrivateKey(k).toString(), sign: async (d: Uint8Array) => k.sign(d) };
  }));
}

test('majority: more than half', (t) => {
  t.deepEqual([1, 2, 3, 4, 5, 8].map(majority), [1, 2, 2, 3, 3, 5]);
});

test('a certificate needs a majority of distinct roster signatures over the exact (round, hash)', async (t) => {
  const members = await signers(5);
  const outsiders = await signers(5);
  const roster = new Set(members.map((m) => m.id));
  const onRoster = (p: string): boolean => roster.has(p);
  const base = new Uint8Array(32).fill(1);
  const hash = new Uint8Array(32).fill(2);
  const other = new Uint8Array(32).fill(3);
  const att = (s: { id: string; sign: (d: Uint8Array) => Promise<Uint8Array> }, round = 4, h = hash) => makeAttestation(s.sign, 'f', s.id, round, base, h);
  const three = await Promise.all(members.slice(0, 3).map((m) => att(m)));
  t.true(await checkCertificate(three, 4, hash, 3, 'f', onRoster), 'three of five members');
  t.false(await checkCertificate(three.slice(0, 2), 4, hash, 3, 'f', onRoster), 'two of five is no majority');
  t.false(await checkCertificate([three[0], three[0], three[0]], 4, hash, 3, 'f', onRoster), 'one signer three times counts once');
  t.false(await checkCertificate([...three.slice(0, 2), ...(await Promise.all(outsiders.map((o) => att(o))))], 4, hash, 3, 'f', onRoster), 'keys off the roster count for nothing');
  t.false(await checkCertificate(three, 5, hash, 3, 'f', onRoster), 'another round');
  t.false(await checkCertificate(three, 4, other, 3, 'f', onRoster), 'another hash');
  t.false(await checkCertificate(three, 4, hash, 3, 'g', onRoster), 'another federation');
  const forged = { ...three[2], signature: Uint8Array.from(three[2].signature, (b, i) => (i === 0 ? b ^ 1 : b)) };
  t.false(await checkCertificate([three[0], three[1], forged], 4, hash, 3, 'f', onRoster), 'a bad signature does not count');
  t.false(await checkCertificate([{ ...three[1], signer: members[4].id }, three[1], three[2]], 4, hash, 3, 'f', onRoster), 'a signer field swapped onto another signature does not count');
  const extra = [await att(members[3], 5, other), { ...(await att(members[4])), signature: new Uint8Array(64) }];
  const subset = await certifyingSubset([...extra, ...three], 4, hash, 3, 'f', onRoster);
  t.deepEqual(subset?.map((a) => a.signer), three.map((a) => a.signer), 'the certifying subset leaves out other rounds and bad signatures (a state pull stores only it)');
  const store = new AttestationStore();
  for (const a of three.slice(0, 2)) t.true(store.add(a));
  t.false(store.add(three[0]), 'duplicate');
  t.is(store.certificate(4, hash, 3), null);
  store.add(three[2]);
  t.is(store.certificate(4, hash, 3)?.length, 3);
});

test('one member flooding attestations of made-up hashes and far-future rounds displaces only its own: the honest certificate still forms, memory stays bounded', async (t) => {
  const [liar, ...honest] = await signers(4);
  const base = new Uint8Array(32).fill(1);
  const hash = new Uint8Array(32).fill(2);
  const store = new AttestationStore();
  const made = (r: number, i: number) => makeAttestation(liar.sign, 'f', liar.id, r, base, Uint8Array.from({ length: 32 }, (_, k) => (k === 0 ? i & 255 : (i >> 8) & 255) + 3));
  let kept = 0;
  for (let i = 0; i < 17; i++) if (store.add(await made(5, i))) kept++;
  t.is(kept, MAX_HASHES_PER_SIGNER_ROUND, 'one signer holds at most two hashes of one round');
  for (let r = 6; r < 1006; r++) store.add(await made(r, r));
  t.is(store.size, MAX_ATTESTATIONS_PER_SIGNER, "the liar's far-future rounds displaced its own older entries only");
  for (const h of honest) t.true(store.add(await makeAttestation(h.sign, 'f', h.id, 5, base, hash)), 'an honest attestation is still taken');
  t.is(store.certificate(5, hash, 3)?.length, 3, 'the honest certificate forms');
  t.is(store.size, MAX_ATTESTATIONS_PER_SIGNER + 3);
  store.prune(1010);
  t.is(store.size, 0, 'pruning forgets every round below the kept window');
});

test('computeGlobalStep is deterministic; any change of inputs or server state changes the announced hash', (t) => {
  const base = makeState(0, new Map([['x', Float32Array.from([0.1, 0.2, 0.3, 0.4])]]), [], manifest);
  const u = (sender: string, v: number[]): ModelUpdate => ({ federation: 'f', round: 1, baseVersion: 0, sender, sampleCount: 10, loraRank: 0, deltas: new Map([['x', Float32Array.from(v)]]), prototypes: [] });
  const updates = [u('b', [0.01, -0.02, 0.03, 0.001]), u('a', [0.02, 0.02, -0.01, 0.004])];
  const step = (ups: ModelUpdate[], bits: 32 | 16 | 8, state?: { step: number; m: Map<string, Float64Array>; v: Map<string, Float64Array> }) => computeGlobalStep({
    federation: 'f', manifest, round: 1, base, updates: ups, rule: 'fedavgm', options: {}, serverState: state, sender: 'a', loraRank: 0, downlinkBits: bits,
  });
  for (const bits of [32, 16, 8] as const) {
    const a = step(updates, bits);
    const b = step([...updates].reverse(), bits);
    t.deepEqual(a.next.hash, b.next.hash, `bits ${bits}: same inputs in any order, same state hash`);
  }
  const h = step(updates, 16).next.hash;
  t.notDeepEqual(step([updates[0], u('a', [0.2, 0.2, -0.1, 0.04])], 16).next.hash, h, 'a scaled input');
  t.notDeepEqual(step([updates[0]], 16).next.hash, h, 'a missing input');
  t.notDeepEqual(step(updates, 16, { step: 1, m: new Map([['x', Float64Array.from([1, 1, 1, 1])]]), v: new Map() }).next.hash, h, 'another momentum buffer');
});

test('adaptive deadline: the maximum until measured, then p90 of the arrival delays x slack within the bounds', (t) => {
  const a = new ArrivalTracker();
  t.is(a.deadlineMs(1000, 60_000), 60_000);
  for (const ms of [100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]) a.record(ms);
  t.is(a.deadlineMs(100, 60_000), 900 * ARRIVAL_SLACK);
  t.is(a.deadlineMs(5000, 60_000), 5000, 'lower bound');
  t.is(a.deadlineMs(100, 1000), 1000, 'upper bound');
});

test('withholding: a member that missed one of the last rounds does not hold the next ones open', (t) => {
  const w = new WithholdRecord();
  w.record(3, ['a', 'b', 'c'], ['a', 'b']);
  t.true(w.excused('c', 4));
  t.true(w.excused('c', 3 + WITHHOLD_ROUNDS));
  t.false(w.excused('c', 4 + WITHHOLD_ROUNDS), 'waited for again after WITHHOLD_ROUNDS rounds');
  t.false(w.excused('a', 4));
});
