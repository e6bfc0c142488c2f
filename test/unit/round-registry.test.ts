/** The round protocol registry: one entry per name, option schemas that name what to change, snapshot codecs that round-trip. */
import test from 'ava';
import { DEFAULT_ROUND_OPTIONS, leaderOrder, makeState, PROTOCOL_NAMES, protocolOptionIssues, ROUND_PROTOCOLS, roundProtocol, UnknownProtocolError } from '../../src/round/index.ts';
import type { ProtocolSnapshot, RoundOptions } from '../../src/round/index.ts';
import type { UpdateManifest } from '../../src/update/index.ts';

const manifest: UpdateManifest = { tensors: [{ name: 'x', shape: [3] }] };
const state = makeState(4, new Map([['x', Float32Array.from([1, 2, 3])]]), [], manifest);

test('every protocol name has exactly its own entry; an unknown name is a typed error naming the choices', (t) => {
  t.deepEqual(Object.keys(ROUND_PROTOCOLS).sort(), [...PROTOCOL_NAMES].sort());
  for (const n of PROTOCOL_NAMES) t.is(roundProtocol(n).name, n);
  const err = t.throws(() => roundProtocol('raft'), { instanceOf: UnknownProtocolError });
  t.regex(err.message, /leader, gossip/);
  t.throws(() => roundProtocol('toString'), { instanceOf: UnknownProtocolError });
  const members = ['c', 'a', 'b', 'd'];
  t.is(roundProtocol('leader').leaderOf?.('f', 3, members), leaderOrder('f', 3, [...members].sort())[0]);
  t.is(roundProtocol('gossip').leaderOf, undefined, 'gossip has no leader');
});

test('option schemas: secure aggregation only with the leader and a mean-based aggregator', (t) => {
  const o = (x: Partial<RoundOptions>): RoundOptions => ({ ...DEFAULT_ROUND_OPTIONS, ...x });
  t.deepEqual(protocolOptionIssues('leader', o({})), []);
  t.deepEqual(protocolOptionIssues('gossip', o({})), []);
  t.deepEqual(protocolOptionIssues('leader', o({ secagg: { clip: 1 } })), []);
  t.regex(protocolOptionIssues('leader', o({ secagg: { clip: 1 }, aggregator: 'median' })).join(), /aggregator: secure aggregation reveals only the mean update/);
  t.regex(protocolOptionIssues('gossip', o({ secagg: { clip: 1 } })).join(), /secagg: secure aggregation \(secagg\) needs the leader protocol/);
  t.regex(protocolOptionIssues('leader', o({ quorum: 2 })).join(), /quorum/);
  t.deepEqual(protocolOptionIssues('leader', o({ committee: 3 })), []);
  for (const committee of [1, 2]) t.regex(protocolOptionIssues('leader', o({ committee })).join(), /committee: a verifying committee of \d .* at least 3/);
  t.regex(protocolOptionIssues('leader', o({ committee: 3, aggregator: 'fedadam' })).join(), /committee: a verifying committee needs a server state/);
});

test('snapshot codecs round-trip each protocol\'s own part of a checkpoint', (t) => {
  const leader: ProtocolSnapshot = {
    protocol: 'leader', state, residual: new Map(), serverKnown: false, certificate: [Uint8Array.from([1, 2, 3])],
    serverOpt: { step: 3, m: new Map([['x', Float64Array.from([0.5, -1, 2])]]), v: new Map([['x', Float64Array.from([0.25, 1, 4])]]) },
  };
  const gossip: ProtocolSnapshot = { protocol: 'gossip', state, residual: new Map(), publicModel: { round: 3, tensors: new Map([['x', Float32Array.from([7, 8, 9])]]) } };
  for (const snap of [leader, gossip]) {
    const codec = roundProtocol(snap.protocol).snapshot;
    const parts = codec.encode(snap);
    const meta = JSON.parse(JSON.stringify(parts.meta)) as Record<string, unknown>;
    const pick = (prefix: string): Map<string, Float32Array> =>
      new Map([...parts.tensors].filter(([k]) => k.startsWith(prefix)).map(([k, v]) => [k.slice(prefix.length), v]));
    const back = codec.decode(meta, pick, state);
    if (snap.protocol === 'leader') {
      t.deepEqual(back.serverOpt, snap.serverOpt);
      t.deepEqual(back.certificate, snap.certificate);
      t.is(back.serverKnown, false);
      t.is(back.publicModel, undefined);
    } else {
      t.deepEqual(back.publicModel, snap.publicModel);
      t.is(back.serverOpt, undefined);
    }
  }
  t.deepEqual(roundProtocol('leader').snapshot.decode({ serverOptStep: null, certificate: null, serverKnown: null }, () => new Map(), state), {}, 'nothing stored, nothing restored');
});
