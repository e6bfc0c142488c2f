/**
 * Personal adapters in one live federation, for each kind: `--personal head` (FedRep's head phase) and `--personal
 * lora` (Ditto: a personal LoRA adapter and heads with a proximal term to the global model). Four real libp2p nodes on
 * 127.0.0.1 train the tiny ViT on Dirichlet 0.1 shards. Every byte each node's round protocol hands to the mesh
 * (published messages on every topic, request bodies, response bodies) is recorded; the personal tensors each node
 * holds after a round (heads; for lora also every LoRA A and B) never occur in any of them, neither as values nor as a
 * delta against that round's global model, and the updates decoded from the published bytes carry the global step,
 * not the personal one. Every node ends on
 * one global state and reports the global and the personal model's accuracy on its own test split, whose labels
 * follow its shard's. A node restarted on its state folder resumes its personal tensors.
 */
import test, { type ExecutionContext } from 'ava';
import { Federation, UPDATE_TOPIC } from '../../src/round/index.ts';
import type { MeshPort } from '../../src/round/mesh-port.ts';
import { SignedUpdate } from '../../src/round/pb/round.ts';
import { decodeUpdate, type ModelUpdate } from '../../src/update/index.ts';
import { PersonalError } from '../../src/train/personal.ts';
import { silentLogger } from '../../src/util/log.ts';
import { tempDir } from '../temp-dirs.ts';
import { tapMeshPort } from '../mesh-port-tap.ts';
import { link, startMeshes, stopAll, topologies, viewsConverged, waitFor } from './mesh-helpers.ts';
import { finalHashes, releaseAll, tinyFl } from './fed-helpers.ts';

const N = 4;
const ROUNDS = 2;

interface Sent { t: number; bytes: Uint8Array; topic?: string }

/** Records every byte this node's protocol sends: publishes (all topics), request bodies and its responses. */
function recording(inner: MeshPort, sent: Sent[]): MeshPort {
  const keep = (bytes: Uint8Array, topic?: string): void => {
    sent.push({ t: performance.now(), bytes: Uint8Array.from(bytes), topic });
  };
  return tapMeshPort(inner, { publish: (n, payload) => keep(payload, n), request: (b) => keep(b), respond: (b) => keep(b) });
}

const f32bytes = (a: Float32Array, at: number, n: number): Buffer => Buffer.from(a.buffer, a.byteOffset + at * 4, n * 4);

async function personalRun(t: ExecutionContext, kind: 'head' | 'lora'): Promise<void> {
  const meshes = await startMeshes(N);
  t.teardown(() => stopAll(meshes));
  link(meshes, topologies.full(N));
  await waitFor(() => viewsConverged(meshes), 'membership views');
  const sent: Sent[][] = meshes.map(() => []);
  const cfgOf = (i: number): Promise<Record<string, unknown>> => tinyFl(i, N, {
    rounds: ROUNDS, localSteps: 2, alpha: 0.1, personal: kind, personalSteps: 4, testSlice: 100, bits: 32, downlinkBits: 32, brotli: false,
    errorFeedback: false, topk: 1, prototypeEvery: 0, partitionSeed: 42,
  });
  const stateDir = await tempDir('fmfl-personal-');
  const feds = await Promise.all(meshes.map(async (m, i) => Federation.create(m, await cfgOf(i), {
    logger: silentLogger(), decorate: (p) => recording(p, sent[i]), stateDir: i === 0 ? stateDir : undefined,
  })));
  t.teardown(() => releaseAll(feds));
  // Per node, per round: the personal tensors and the global model right after the round (what must stay home).
  const after: { t: number; personal: Map<string, Float32Array>; global: Map<string, Float32Array> }[][] = feds.map(() => []);
  const metrics = await Promise.all(feds.map((f, i) => f.run({
    onRound: () => after[i].push({ t: performance.now(), personal: f.personal!.tensors(), global: new Map([...f.protocol.model()].map(([k, v]) => [k, Float32Array.from(v)])) }),
  })));

  const hashes = finalHashes(feds);
  t.is(new Set(hashes).size, 1, `final hashes ${hashes.map((h) => h.slice(0, 8)).join(' ')}`);
  for (const m of metrics) t.deepEqual(m.map((x) => x.version), [1, 2]);

  // The own test split follows the shard's labels; both models are evaluated on it every round.
  for (const [i, f] of feds.entries()) {
    t.is(f.personalTestIdx.length, 100);
    const { shard: trainH, test: testH } = f.ownLabelHistograms();
    const total = trainH.reduce((a, b) => a + b, 0);
    for (let c = 0; c < 10; c++) t.true(Math.abs(testH[c] - (100 * trainH[c]) / total) <= 1, `node ${i} class ${c}: ${testH[c]} test vs ${trainH[c]}/${total} train`);
    for (const r of metrics[i]) {
      t.truthy(r.personal, `node ${i} round ${r.version} reports personal accuracy`);
      t.is(r.personal!.n, 100);
      t.is(r.personal!.global.length, 2);
      t.is(r.personal!.personal.length, 2);
      for (const a of [...r.personal!.global, ...r.personal!.personal]) t.true(a >= 0 && a <= 1);
    }
  }

  // The personal tensors moved away from the global ones (so a leak would be visible); lora's include every LoRA tensor.
  for (const [i, list] of after.entries()) {
    t.is(list.length, ROUNDS);
    const lora = feds[i].personal!.names.filter((n) => n.includes('.lora_'));
    t.is(lora.length, kind === 'lora' ? feds[i].trainer.trainedSpecs.filter((s) => s.name.includes('.lora_')).length : 0);
    if (kind === 'lora') t.true(lora.length >= 4, `node ${i} personal LoRA tensors: ${lora.join(' ')}`);
    for (const a of list) {
      t.is(a.personal.size, feds[i].personal!.names.length);
      for (const [k, p] of a.personal) {
        const g = a.global.get(k)!;
        t.true(p.some((x, j) => Math.abs(x - g[j]) > 1e-6), `node ${i} ${k} personal differs from global`);
      }
    }
  }

  // On the wire: no window of 3 consecutive personal values, nor of the personal-minus-global delta, in any byte a
  // node sent after it held those heads (float32 little-endian: --bits 32, --downlink-bits 32, no brotli).
  let checked = 0;
  for (const [i, list] of after.entries()) {
    const later = (tm: number): Buffer => Buffer.concat(sent[i].filter((s) => s.t >= tm).map((s) => s.bytes));
    for (const a of list) {
      const hay = later(a.t);
      for (const [k, p] of a.personal) {
        const g = a.global.get(k)!;
        const delta = Float32Array.from(p, (x, j) => x - g[j]);
        for (let at = 0; at + 3 <= p.length; at += 3) {
          t.is(hay.indexOf(f32bytes(p, at, 3)), -1, `node ${i} sent personal ${k}[${at}..]`);
          t.is(hay.indexOf(f32bytes(delta, at, 3)), -1, `node ${i} sent personal delta ${k}[${at}..]`);
          checked++;
        }
      }
    }
  }
  t.true(checked > 100, `${checked} windows checked`);
  // The updates decoded from the published bytes carry the global heads (round 2's step starts at round 1's global).
  const manifest = feds[0].manifest;
  for (const [i, list] of sent.entries()) {
    const ups: ModelUpdate[] = list.filter((s) => s.topic === UPDATE_TOPIC).map((s) => decodeUpdate(SignedUpdate.decode(s.bytes).update, manifest));
    t.is(ups.length, ROUNDS, `node ${i} published one update per round`);
    const r2 = ups.find((u) => u.round === 2)!;
    const a1 = after[i][0];
    for (const [k, p] of a1.personal) {
      const d = r2.deltas.get(k)!;
      const g = a1.global.get(k)!;
      t.true(d.some((x, j) => Math.abs(g[j] + x - p[j]) > 1e-5), `node ${i} round-2 update of ${k} is not the personal tensor`);
    }
  }

  // The personal tensors survive a restart: a node created on node 0's state folder resumes them.
  const again = await Federation.create(meshes[0], await cfgOf(0), { logger: silentLogger(), stateDir });
  t.teardown(() => again.release());
  const before = feds[0].personal!.tensors();
  const resumed = again.personal!.tensors();
  t.is(resumed.size, before.size);
  for (const [k, v] of before) t.deepEqual([...resumed.get(k)!], [...v], k);
  // The state folder records the kind: resuming it as the other kind is a typed error, not a silent fresh start.
  const other = kind === 'lora' ? 'head' : 'lora';
  await t.throwsAsync(async () => Federation.create(meshes[0], { ...(await cfgOf(0)), personal: other }, { logger: silentLogger(), stateDir }), { instanceOf: PersonalError, message: new RegExp(`--personal ${kind}`) });
}

test.serial('--personal head: personal heads never on the wire, personal accuracy on the own split, one global state', (t) => personalRun(t, 'head'));
test.serial('--personal lora: personal LoRA and heads never on the wire, personal accuracy on the own split, one global state', (t) => personalRun(t, 'lora'));
