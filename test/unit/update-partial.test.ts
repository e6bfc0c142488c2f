import test from 'ava';
import { decodeUpdate, encodeUpdate, UpdateError, UpdateRefusal, type ModelUpdate, type UpdateManifest } from '../../src/update/index.ts';
import * as pb from '../../src/update/pb/update.ts';

// Two blocks with a LoRA pair each and two exit heads; rank axis 1 on A, 0 on B (manifest rank 4).
const manifest: UpdateManifest = {
  tensors: [
    { name: 'blocks.0.attn.q.lora_a', shape: [3, 4], loraAxis: 1 },
    { name: 'blocks.0.attn.q.lora_b', shape: [4, 3], loraAxis: 0 },
    { name: 'blocks.1.attn.q.lora_a', shape: [3, 4], loraAxis: 1 },
    { name: 'blocks.1.attn.q.lora_b', shape: [4, 3], loraAxis: 0 },
    { name: 'exits.0.head.weight', shape: [3, 2] },
    { name: 'exits.1.head.weight', shape: [3, 2] },
  ],
};
const ramp = (n: number, k: number): Float32Array => Float32Array.from({ length: n }, (_, i) => (i + 1) * k);
const shallow = (rank: number): ModelUpdate => ({
  federation: 'f', round: 3, baseVersion: 2, sender: 'edge', sampleCount: 10, loraRank: rank, partial: true, prototypes: [],
  deltas: new Map([
    ['blocks.0.attn.q.lora_a', ramp(3 * rank, 0.5)], ['blocks.0.attn.q.lora_b', ramp(3 * rank, -0.25)], ['exits.0.head.weight', ramp(6, 0.125)],
  ]),
});

test('a partial update (depth 1 at rank 2) decodes to exactly the tensors its sender trained', (t) => {
  const u = shallow(2);
  for (const opts of [{}, { topk: { fraction: 0.5, scope: 'tensor' as const } }, { tensorRefs: 'name' as const }, { brotli: true }]) {
    const d = decodeUpdate(encodeUpdate(u, manifest, opts).bytes, manifest);
    t.true(d.partial);
    t.deepEqual([...d.deltas.keys()], ['blocks.0.attn.q.lora_a', 'blocks.0.attn.q.lora_b', 'exits.0.head.weight']);
    t.is(d.loraRank, 2);
    t.is(d.deltas.get('blocks.0.attn.q.lora_a')!.length, 6);
  }
  const exact = decodeUpdate(encodeUpdate(u, manifest).bytes, manifest);
  for (const [k, v] of u.deltas) t.deepEqual(Array.from(exact.deltas.get(k)!), Array.from(v), k);
});

test('a full update still decodes with every manifest tensor (absent ones as zeros), not partial', (t) => {
  const u = { ...shallow(4), partial: undefined };
  const d = decodeUpdate(encodeUpdate(u, manifest).bytes, manifest);
  t.is(d.partial, undefined);
  t.is(d.deltas.size, manifest.tensors.length);
  t.true(d.deltas.get('exits.1.head.weight')!.every((x) => x === 0));
});

/** Re-encode a valid partial update with its Update body changed by `edit`. */
function tampered(edit: (m: pb.Update) => void): Uint8Array {
  const env = pb.UpdateEnvelope.decode(encodeUpdate(shallow(2), manifest).bytes);
  const m = pb.Update.decode(env.body);
  edit(m);
  const body = pb.Update.encode(m);
  return pb.UpdateEnvelope.encode({ compression: pb.PayloadCompression.COMPRESSION_NONE, bodyLength: body.length, body });
}

test('garbage trained sets are refused with typed reasons', (t) => {
  const reason = (bytes: Uint8Array): string => t.throws(() => decodeUpdate(bytes, manifest), { instanceOf: UpdateError }).reason;
  t.is(reason(tampered((m) => { m.trainedTensors = new Uint8Array([0b010011, 0]); })), UpdateRefusal.BAD_HEADER, 'wrong length');
  t.is(reason(tampered((m) => { m.trainedTensors = new Uint8Array([0b1010011]); })), UpdateRefusal.BAD_HEADER, 'bit past the manifest');
  t.is(reason(tampered((m) => { m.trainedTensors = new Uint8Array([0]); })), UpdateRefusal.BAD_HEADER, 'empty set');
  t.is(reason(tampered((m) => { m.trainedTensors = new Uint8Array([0b010001]); })), UpdateRefusal.BAD_SHAPE, 'LoRA A without its B');
  // A tensor on the wire that the trained set does not name (exit 0's head dropped from the set).
  t.is(reason(tampered((m) => { m.trainedTensors = new Uint8Array([0b000011]); })), UpdateRefusal.BAD_SHAPE, 'tensor outside the set');
});

test('the encoder refuses a partial update that splits a LoRA pair or carries nothing', (t) => {
  const u = shallow(2);
  u.deltas.delete('blocks.0.attn.q.lora_b');
  t.is(t.throws(() => encodeUpdate(u, manifest), { instanceOf: UpdateError }).reason, UpdateRefusal.INVALID_ARGUMENT);
  t.is(t.throws(() => encodeUpdate({ ...u, deltas: new Map() }, manifest), { instanceOf: UpdateError }).reason, UpdateRefusal.INVALID_ARGUMENT);
});
