import test from 'ava';
import fc from 'fast-check';
import { generateKeyPair } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id';
import {
  announce, derivePairSeeds, expandMask, fixedPointFor, generateSecAggKeyPair, maskInput, newSelfMaskSeed, revealFor, SecAggError, SecAggRefusal,
  toFixedPoint, unmaskSum, verifyAnnouncements, type MaskSecrets, type SecAggAnnouncement, type SecAggKeyPair, type Verifier,
} from '../../src/privacy/index.ts';
import { Rng } from '../../src/util/rng.ts';

interface Member { id: string; sign: (d: Uint8Array) => Uint8Array | Promise<Uint8Array>; keys: SecAggKeyPair; seeds?: Map<string, Uint8Array>; selfSeed: Uint8Array }

const verify: Verifier = (peerId, data, sig) => {
  const pk = peerIdFromString(peerId).publicKey;
  return pk === undefined ? false : pk.verify(data, sig);
};
const ctx = { federation: 'fed-secagg', round: 7 };

async function makeMembers(n: number): Promise<{ members: Member[]; anns: SecAggAnnouncement[] }> {
  const members: Member[] = [];
  for (let i = 0; i < n; i++) {
    const identity = await generateKeyPair('Ed25519');
    members.push({ id: peerIdFromPrivateKey(identity).toString(), sign: (d) => identity.sign(d), keys: generateSecAggKeyPair(), selfSeed: newSelfMaskSeed() });
  }
  const anns = await Promise.all(members.map((m) => announce(ctx, m.id, m.keys, m.sign)));
  await verifyAnnouncements(ctx, anns, verify);
  for (const m of members) m.seeds = derivePairSeeds(ctx, m.id, m.keys, anns);
  return { members, anns };
}

let pool: { members: Member[]; anns: SecAggAnnouncement[] };
test.before(async () => {
  pool = await makeMembers(8);
});

test('pair seeds agree on both ends and differ between pairs', (t) => {
  const [a, b, c] = pool.members;
  t.deepEqual(a.seeds!.get(b.id), b.seeds!.get(a.id));
  t.notDeepEqual(a.seeds!.get(b.id), a.seeds!.get(c.id));
  t.is(a.seeds!.size, 7);
});

test('masks cancel exactly in the sum, also when members drop out after masking', (t) => {
  fc.assert(fc.property(
    fc.integer({ min: 2, max: 8 }), fc.integer({ min: 1, max: 300 }), fc.integer(), fc.array(fc.boolean(), { minLength: 8, maxLength: 8 }), fc.boolean(),
    (n, len, seed, dropMask, stochastic) => {
      const rng = new Rng(seed);
      const members = pool.members.slice(0, n);
      // everyone's seeds cover exactly this round's member set
      const secretsOf = (m: Member): MaskSecrets => ({ pairSeeds: new Map([...m.seeds!].filter(([p]) => members.some((x) => x.id === p))), selfSeed: m.selfSeed });
      const fp = fixedPointFor(1, n);
      const inputs = members.map(() => Float64Array.from({ length: len }, () => rng.uniform(-1, 1)));
      const masked = new Map(members.map((m, i) => [m.id, maskInput(inputs[i], m.id, secretsOf(m), fp, stochastic ? new Rng(seed + i) : undefined)]));
      // at least one survivor
      let dropped = members.filter((_, i) => dropMask[i]).map((m) => m.id);
      if (dropped.length === n) dropped = dropped.slice(1);
      for (const d of dropped) masked.delete(d);
      const revealed = new Map([...masked.keys()].map((s) => [s, revealFor(s, secretsOf(members.find((m) => m.id === s)!), dropped)]));
      const { sum, count } = unmaskSum(masked, dropped, revealed, fp, len);
      if (count !== n - dropped.length) return false;
      // exact: equals the sum of the survivors' fixed-point encodings (deterministic rounding reproduces them)
      const scale = 2 ** fp.fracBits;
      for (let j = 0; j < len; j++) {
        let want = 0;
        members.forEach((m, i) => { if (!dropped.includes(m.id)) want += inputs[i][j]; });
        if (!stochastic) {
          let exact = 0;
          members.forEach((m, i) => { if (!dropped.includes(m.id)) exact += toFixedPoint([inputs[i][j]], fp)[0] | 0; });
          if (sum[j] !== exact / scale) return false;
        }
        if (Math.abs(sum[j] - want) > n / scale) return false;
      }
      return true;
    }), { numRuns: 40 });
  t.pass();
});

test('a single masked input reveals nothing obvious: it differs from the plaintext encoding', (t) => {
  const [a, b] = pool.members;
  const fp = fixedPointFor(1, 2);
  const x = new Float64Array(64).fill(0.5);
  const m = maskInput(x, a.id, { pairSeeds: new Map([[b.id, a.seeds!.get(b.id)!]]), selfSeed: a.selfSeed }, fp);
  const plain = toFixedPoint(x, fp);
  t.true(m.filter((w, i) => w === plain[i]).length < 2);
});

test('double masking: a dropped member\'s late input stays hidden after its pair seeds are revealed', (t) => {
  const [a, b, c] = pool.members;
  const fp = fixedPointFor(1, 3);
  const ids = [a.id, b.id, c.id];
  const secrets = (m: Member): MaskSecrets => ({ pairSeeds: new Map([...m.seeds!].filter(([p]) => ids.includes(p))), selfSeed: m.selfSeed });
  const x = new Float64Array(32).fill(0.75);
  const late = maskInput(x, c.id, secrets(c), fp);
  // everything the aggregator learns when c is declared dropped
  const ra = revealFor(a.id, secrets(a), [c.id]);
  const rb = revealFor(b.id, secrets(b), [c.id]);
  // strip c's pair masks with the revealed seeds: c's self mask still hides x
  const attempt = Uint32Array.from(late);
  for (const [who, r] of [[a.id, ra], [b.id, rb]] as const) {
    const m = maskInput(new Float64Array(32), who, { pairSeeds: new Map([[c.id, r.pairSeeds.get(c.id)!]]), selfSeed: new Uint8Array(32) }, fp);
    const zeroSelf = maskInput(new Float64Array(32), who, { pairSeeds: new Map(), selfSeed: new Uint8Array(32) }, fp);
    // c's mask with `who` is the negation of who's mask with c
    for (let i = 0; i < 32; i++) attempt[i] = (attempt[i] + (m[i] - zeroSelf[i])) >>> 0;
  }
  const plain = toFixedPoint(x, fp);
  t.true(attempt.filter((w, i) => w === plain[i]).length < 2, 'the self mask must still hide the input');
  // sanity: only the self mask is left (removing it would expose x)
  const self = expandMask(c.selfSeed, 32);
  t.deepEqual(Array.from(attempt, (w, i) => (w - self[i]) >>> 0), Array.from(plain));
  // and c refuses to reveal its self seed once declared dropped
  t.is(t.throws(() => revealFor(c.id, secrets(c), [c.id]), { instanceOf: SecAggError })?.reason, SecAggRefusal.DUPLICATE_MEMBER);
});

test('key binding: tampered keys, foreign signatures and other rounds are refused', async (t) => {
  const anns = pool.anns.slice(0, 3);
  const tampered = anns.map((a, i) => (i === 1 ? { ...a, publicKey: generateSecAggKeyPair().publicKey } : a));
  const e1 = await t.throwsAsync(verifyAnnouncements(ctx, tampered, verify), { instanceOf: SecAggError });
  t.is(e1?.reason, SecAggRefusal.BAD_SIGNATURE);
  const swapped = [{ ...anns[0], signature: anns[1].signature }, anns[1]];
  t.is((await t.throwsAsync(verifyAnnouncements(ctx, swapped, verify), { instanceOf: SecAggError }))?.reason, SecAggRefusal.BAD_SIGNATURE);
  t.is((await t.throwsAsync(verifyAnnouncements({ ...ctx, round: 8 }, anns, verify), { instanceOf: SecAggError }))?.reason, SecAggRefusal.BAD_SIGNATURE);
  t.is((await t.throwsAsync(verifyAnnouncements(ctx, [anns[0], anns[0]], verify), { instanceOf: SecAggError }))?.reason, SecAggRefusal.DUPLICATE_MEMBER);
  t.is((await t.throwsAsync(verifyAnnouncements(ctx, [{ ...anns[0], publicKey: new Uint8Array(31) }], verify), { instanceOf: SecAggError }))?.reason, SecAggRefusal.BAD_KEY);
  await t.notThrowsAsync(verifyAnnouncements(ctx, anns, verify));
});

test('refusals: missing reveals, out-of-range values, bad lengths, low-order keys', (t) => {
  const [a, b, c] = pool.members;
  const fp = fixedPointFor(1, 3);
  const seeds = (m: Member): MaskSecrets => ({ pairSeeds: new Map([...m.seeds!].filter(([p]) => [a.id, b.id, c.id].includes(p))), selfSeed: m.selfSeed });
  const masked = new Map([[a.id, maskInput([0.1], a.id, seeds(a), fp)], [b.id, maskInput([0.2], b.id, seeds(b), fp)]]);
  const e = t.throws(() => unmaskSum(masked, [c.id], new Map([[a.id, revealFor(a.id, seeds(a), [c.id])]]), fp, 1), { instanceOf: SecAggError });
  t.is(e?.reason, SecAggRefusal.MISSING_SEED);
  const partial = new Map([[a.id, revealFor(a.id, seeds(a), [c.id])], [b.id, { selfSeed: b.selfSeed, pairSeeds: new Map() }]]);
  t.is(t.throws(() => unmaskSum(masked, [c.id], partial, fp, 1), { instanceOf: SecAggError })?.reason, SecAggRefusal.MISSING_SEED);
  t.is(t.throws(() => maskInput([1.5], a.id, seeds(a), fp), { instanceOf: SecAggError })?.reason, SecAggRefusal.OUT_OF_RANGE);
  t.is(t.throws(() => unmaskSum(masked, [], new Map(), fp, 2), { instanceOf: SecAggError })?.reason, SecAggRefusal.LENGTH_MISMATCH);
  t.is(t.throws(() => unmaskSum(masked, [a.id], new Map(), fp, 1), { instanceOf: SecAggError })?.reason, SecAggRefusal.DUPLICATE_MEMBER);
  const zeroKey = { peerId: 'evil', publicKey: new Uint8Array(32), signature: new Uint8Array(64) };
  t.is(t.throws(() => derivePairSeeds(ctx, a.id, a.keys, [zeroKey]), { instanceOf: SecAggError })?.reason, SecAggRefusal.BAD_KEY);
});

test('wire: the full exchange through bytes sums correctly; hostile bytes only raise SecAggError', async (t) => {
  const { encodeAnnounce, decodeAnnounce, encodeMasked, decodeMasked, encodeReveal, decodeReveal } = await import('../../src/privacy/index.ts');
  const members = pool.members.slice(0, 4);
  const annBytes = pool.anns.slice(0, 4).map((a) => encodeAnnounce(ctx, a));
  const anns = annBytes.map((b) => decodeAnnounce(b, ctx));
  await verifyAnnouncements(ctx, anns, verify);
  const fp = fixedPointFor(1, 4);
  const seeds = members.map((m) => ({ pairSeeds: derivePairSeeds(ctx, m.id, m.keys, anns), selfSeed: newSelfMaskSeed() }));
  const xs = members.map((_, i) => [0.25 * i, -0.5]);
  const wire = members.map((m, i) => encodeMasked(ctx, m.id, fp.fracBits, maskInput(xs[i], m.id, seeds[i], fp)));
  const dropped = [members[3].id];
  const masked = new Map(wire.slice(0, 3).map((b) => { const d = decodeMasked(b, ctx, { length: 2, fracBits: fp.fracBits }); return [d.peerId, d.words]; }));
  const reveals = new Map(members.slice(0, 3).map((m, i) => {
    const r = decodeReveal(encodeReveal(ctx, m.id, revealFor(m.id, seeds[i], dropped)), ctx);
    return [r.peerId, r.reveal];
  }));
  const { sum } = unmaskSum(masked, dropped, reveals, fp, 2);
  t.deepEqual(Array.from(sum), [0 + 0.25 + 0.5, -1.5]);
  t.is(t.throws(() => decodeMasked(wire[0], { ...ctx, round: 8 }, { length: 2, fracBits: fp.fracBits }), { instanceOf: SecAggError })?.reason, SecAggRefusal.WRONG_ROUND);
  t.is(t.throws(() => decodeMasked(wire[0], ctx, { length: 3, fracBits: fp.fracBits }), { instanceOf: SecAggError })?.reason, SecAggRefusal.LENGTH_MISMATCH);
  fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (b) => {
    for (const f of [() => decodeAnnounce(b, ctx), () => decodeMasked(b, ctx, { length: 2, fracBits: fp.fracBits }), () => decodeReveal(b, ctx)]) {
      try { f(); } catch (e) { if (!(e instanceof SecAggError)) return false; }
    }
    return true;
  }), { numRuns: 300 });
});
