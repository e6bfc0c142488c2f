import test from 'ava';
import { startMeshes, stopAll, link, topologies, waitFor } from './mesh-helpers.ts';
import { makeTestCheckpoint, fixtureImage } from './infer-helpers.ts';
import { openModel } from '../../src/infer/load.ts';
import { InferService, parseLatencyFeatures } from '../../src/infer/service.ts';
import { NodeInference } from '../../src/infer/node-inference.ts';
import { combineProbs, isProbVector } from '../../src/infer/combine.ts';
import { InferError } from '../../src/infer/errors.ts';
import { normalizeImages } from '../../src/infer/input.ts';
import { INFER_METHOD, INFER_PROTOCOL, INFER_SEMVER } from '../../src/infer/limits.ts';
import { InferRequest, InferResponse, InferStatus } from '../../src/infer/pb/infer.ts';
import { Rng } from '../../src/util/rng.ts';
import type { AnytimeModel } from '../../src/infer/anytime.ts';

test('collaborative prediction over 5 real nodes: mixed depths answer; garbage and silent peers are ignored', async (t) => {
  const ckpt = await makeTestCheckpoint('net-v1');
  // A: requester (4 exits), B: 2 exits, C: 1 exit, D: answers random bytes, E: never answers.
  const meshes = await startMeshes(5);
  const [a, b, c, d, e] = meshes;
  const models: AnytimeModel[] = [];
  const services: InferService[] = [];
  try {
    for (const [mesh, exits] of [[a, 4], [b, 2], [c, 1]] as const) {
      const m = await openModel(ckpt, { maxExits: exits, threads: 1, calibrate: false });
      models.push(m);
      const s = new InferService({ mesh, model: m });
      await s.start();
      services.push(s);
    }
    const rng = new Rng(5);
    const garbage = d.createProtocol(INFER_PROTOCOL, INFER_SEMVER);
    garbage.handle(INFER_METHOD, () => Uint8Array.from({ length: 64 }, () => rng.int(256)));
    const silent = e.createProtocol(INFER_PROTOCOL, INFER_SEMVER, { timeoutMs: 60_000 });
    silent.handle(INFER_METHOD, (_b, ctx) => new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(new Error('aborted')))));
    for (const m of [d, e]) m.membership.setCapabilities({ features: ['infer'], maxExitDepth: 4 });
    link(meshes, topologies.full(5));
    const [svcA] = services;
    await waitFor(() => svcA.candidates().length === 4, 'A sees 4 peers serving infer');
    // Deepest advertised first: D and E claim 4, then B (2), then C (1).
    t.deepEqual(svcA.candidates().slice(2), [b.peerId.toString(), c.peerId.toString()]);

    const img = await fixtureImage();
    const images = [img, img.map((v) => 255 - v)];
    const r = await svcA.collaborate(images, { k: 4, deadlineMs: 10_000 });
    t.is(r.answers.length, 2, JSON.stringify(r.ignored));
    const byPeer = new Map(r.answers.map((x) => [x.peer, x]));
    t.true(byPeer.get(b.peerId.toString())!.exit <= 2 && byPeer.get(b.peerId.toString())!.exit >= 1);
    t.is(byPeer.get(c.peerId.toString())!.exit, 1);
    t.true(r.answers.every((x) => x.modelVersion === 'net-v1'));
    const ignored = new Map(r.ignored.map((x) => [x.peer, x.reason]));
    t.is(ignored.get(d.peerId.toString()), 'invalid');
    t.is(ignored.get(e.peerId.toString()), 'timeout');
    t.not(r.local, null);
    for (let i = 0; i < 2; i++) {
      t.true(isProbVector(r.probs[i], 10));
      const want = combineProbs([...r.answers.map((x) => x.probs[i]), r.local!.probs[i]], 'mean');
      t.deepEqual(Array.from(r.probs[i]), Array.from(want), 'the combination is the mean of the valid answers and the local one');
    }
    // C (exit 1 only) agrees with A's own exit-1 prediction on the same weights.
    const localExit1 = (await models[0].predict(normalizeImages(images), 2, { exit: 0 })).predictions;
    for (let i = 0; i < 2; i++) {
      const diff = Math.max(...Array.from(localExit1[i].probs, (p, k) => Math.abs(p - byPeer.get(c.peerId.toString())!.probs[i][k])));
      t.true(diff < 1e-5, `peer C's exit-1 answer matches the local exit 1 (max diff ${diff})`);
    }

    // Requiring another model version: every peer answer is a mismatch, the local prediction still stands.
    const r2 = await svcA.collaborate([img], { k: 2, peers: [b.peerId.toString(), c.peerId.toString()], deadlineMs: 10_000, modelVersion: 'net-v2', combine: 'confidence' });
    t.is(r2.answers.length, 0);
    t.deepEqual(r2.ignored.map((x) => x.reason), ['mismatch', 'mismatch']);
    t.true(isProbVector(r2.probs[0], 10));

    // Only bad peers and no local model: a typed NO_ANSWER error, not a hang or a corrupt result.
    const lonely = new InferService({ mesh: a, model: null });
    await t.throwsAsync(lonely.collaborate([img], { k: 2, peers: [d.peerId.toString(), e.peerId.toString()], deadlineMs: 300 }), { instanceOf: InferError, message: /none of 2 peers/ });

    // Malformed requests over the wire are refused with a reason.
    const raw = async (body: Uint8Array): Promise<InferResponse> => InferResponse.decode(await garbage.request(b.peerId, INFER_METHOD, body, { timeoutMs: 5000 }));
    t.is((await raw(Uint8Array.from([0xde, 0xad, 0xbe, 0xef]))).status, InferStatus.MALFORMED);
    const short = await raw(InferRequest.encode({ version: 1, requestId: 'x1', count: 1, pixels: new Uint8Array(10), deadlineMs: 1000, backbone: models[1].backboneName }));
    // Images of another size than the responder's model takes: refused as a model mismatch, naming its input.
    t.is(short.status, InferStatus.MODEL_MISMATCH);
    t.is(short.requestId, 'x1');
    t.regex(short.message, /1x28x28/);
    const uneven = await raw(InferRequest.encode({ version: 1, requestId: 'x2', count: 2, pixels: new Uint8Array(785), deadlineMs: 1000, backbone: models[1].backboneName }));
    t.is(uneven.status, InferStatus.MALFORMED);
    t.regex(uneven.message, /pixels/);
    t.is((await raw(InferRequest.encode({ version: 1, requestId: 'x2', count: 1, pixels: img, deadlineMs: 1000, backbone: 'other-bb' }))).status, InferStatus.MODEL_MISMATCH);
    t.is((await raw(InferRequest.encode({ version: 9, requestId: 'x3', count: 1, pixels: img, deadlineMs: 1000, backbone: models[1].backboneName }))).status, InferStatus.UNSUPPORTED_VERSION);
    const ok = await raw(InferRequest.encode({ version: 1, requestId: 'x4', count: 1, pixels: img, deadlineMs: 1000, maxExit: 1, backbone: models[1].backboneName }));
    t.is(ok.status, InferStatus.OK);
    t.is(ok.exit, 1);
  } finally {
    await Promise.all(services.map((s) => s.stop()));
    await stopAll(meshes);
    await Promise.all(models.map((m) => m.release()));
  }
});

test('a node with NodeInference serves POST /predict with peersK over the mesh and advertises its latency', async (t) => {
  const ckpt = await makeTestCheckpoint('node-v1');
  const meshes = await startMeshes(2);
  const [a, b] = meshes;
  const nodes: NodeInference[] = [];
  try {
    nodes.push(await NodeInference.create(a, { checkpoint: ckpt, httpPort: 0, httpHost: '127.0.0.1', threads: 1 }));
    nodes.push(await NodeInference.create(b, { checkpoint: ckpt, maxExits: 1, httpHost: '127.0.0.1', threads: 1 }));
    for (const n of nodes) await n.start();
    t.is(nodes[1].http, null, 'no HTTP endpoint without httpPort');
    link(meshes, [[0, 1]]);
    await waitFor(() => nodes[0].service.candidates().length === 1, 'A sees B serving infer');
    const member = a.membership.get(b.peerId.toString())!;
    t.is(member.capabilities.maxExitDepth, 1);
    t.is(parseLatencyFeatures(member.capabilities.features)?.batch1.length, 1, 'B advertises its calibrated exit latency');
    const img = Array.from(await fixtureImage());
    const res = await fetch(`${nodes[0].http!.url}/predict`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ pixels: img, peersK: 1, deadlineMs: 5000, combine: 'confidence' }) });
    t.is(res.status, 200);
    const body = (await res.json()) as { answers: { peer: string; exit: number }[]; predictions: { probs: number[] }[]; combine: string };
    t.deepEqual(body.answers.map((x) => [x.peer, x.exit]), [[b.peerId.toString(), 1]]);
    t.is(body.combine, 'confidence');
    t.true(isProbVector(body.predictions[0].probs, 10));
    // A new global model is served without rebuilding: version and predictions change.
    const w = new Map(nodes[0].model.model.weights);
    w.set('exits.3.head.bias', Float32Array.from({ length: 10 }, (_, c) => (c === 7 ? 100 : 0)));
    nodes[0].updateModel(w, 'node-v2');
    const h = (await (await fetch(`${nodes[0].http!.url}/healthz`)).json()) as { modelVersion: string };
    t.is(h.modelVersion, 'node-v2');
    const p2 = (await (await fetch(`${nodes[0].http!.url}/predict`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ pixels: img }) })).json()) as { predictions: { label: number }[]; modelVersion: string };
    t.is(p2.predictions[0].label, 7);
    t.is(p2.modelVersion, 'node-v2');
    t.throws(() => nodes[0].updateModel(new Map(), 'bad'), { message: /missing or misshapen/ });
  } finally {
    await Promise.all(nodes.map((n) => n.stop()));
    await stopAll(meshes);
  }
});
