import test from 'ava';
import fc from 'fast-check';
import { InferRequest, InferResponse, InferStatus } from '../../src/infer/pb/infer.ts';
import {
  InferService, TokenBucket, latencyFeatures, parseLatencyFeatures, validateInferRequest, validateInferResponse, type AnswerExpectation,
} from '../../src/infer/service.ts';
import { combineProbs, isProbVector, prototypeProbs } from '../../src/infer/combine.ts';
import { INFER_VERSION, MAX_INFER_IMAGES, MAX_INFER_REQUEST_BYTES } from '../../src/infer/limits.ts';
import type { AnytimeModel } from '../../src/infer/anytime.ts';
import type { Mesh } from '../../src/mesh/mesh.ts';

const px = (n: number, v = 7): Uint8Array => new Uint8Array(n * 784).fill(v);
const req = (o: Partial<InferRequest> = {}): Uint8Array =>
  InferRequest.encode({ version: INFER_VERSION, requestId: 'abc-1', count: 1, pixels: px(1), deadlineMs: 1000, maxExit: 0, backbone: 'bb', ...o });

test('request validation: every malformed field is refused with its reason; random bytes never throw', (t) => {
  t.true(validateInferRequest(req()).ok);
  const status = (b: Uint8Array): InferStatus | 'ok' => {
    const v = validateInferRequest(b);
    return v.ok ? 'ok' : v.status;
  };
  t.is(status(req({ version: 2 })), InferStatus.UNSUPPORTED_VERSION);
  t.is(status(req({ count: MAX_INFER_IMAGES + 1, pixels: px(MAX_INFER_IMAGES + 1) })), InferStatus.OVERSIZED);
  t.is(status(req({ count: 2, pixels: new Uint8Array(785) })), InferStatus.MALFORMED, 'pixels not count equal-sized images');
  t.is(status(req({ count: 1, pixels: new Uint8Array(3 * 128 * 128 + 1) })), InferStatus.OVERSIZED);
  t.is(status(req({ count: 0, pixels: new Uint8Array(0) })), InferStatus.MALFORMED);
  t.is(status(req({ deadlineMs: 1 })), InferStatus.MALFORMED);
  t.is(status(req({ deadlineMs: 10 ** 6 })), InferStatus.MALFORMED);
  t.is(status(req({ requestId: 'has space' })), InferStatus.MALFORMED);
  t.is(status(req({ backbone: '' })), InferStatus.MALFORMED);
  t.is(status(new Uint8Array([0xff, 0xff, 0xff])), InferStatus.MALFORMED);
  t.is(status(new Uint8Array(MAX_INFER_REQUEST_BYTES + 1)), InferStatus.OVERSIZED);
  fc.assert(fc.property(fc.uint8Array({ maxLength: 2000 }), (b) => {
    const v = validateInferRequest(b);
    return v.ok === false || v.req.pixels.length === v.req.count * 784;
  }), { seed: 42, numRuns: 500 });
});

const EXP: AnswerExpectation = { requestId: 'abc-1', count: 2, classes: 3, backbone: 'bb', maxExit: 4 };
const resp = (o: Partial<InferResponse> = {}): Uint8Array =>
  InferResponse.encode({ version: 1, status: InferStatus.OK, requestId: 'abc-1', classes: 3, probs: [0.2, 0.3, 0.5, 1, 0, 0], exit: 2, modelVersion: 'v1', backbone: 'bb', ...o });

test('response validation: garbage, refusals, mismatches and non-probabilities are ignored with a reason', (t) => {
  const ok = validateInferResponse(resp(), EXP);
  t.true(ok.ok);
  if (ok.ok) {
    t.is(ok.exit, 2);
    t.is(ok.probs.length, 2);
  }
  const reason = (b: Uint8Array, e: AnswerExpectation = EXP): string => {
    const v = validateInferResponse(b, e);
    return v.ok ? 'ok' : v.reason;
  };
  t.is(reason(resp({ status: InferStatus.BUSY, probs: [] })), 'refused');
  t.is(reason(resp({ requestId: 'other' })), 'mismatch');
  t.is(reason(resp({ backbone: 'other' })), 'mismatch');
  t.is(reason(resp({ classes: 4 })), 'mismatch');
  t.is(reason(resp(), { ...EXP, modelVersion: 'v2' }), 'mismatch');
  t.is(reason(resp({ probs: [0.2, 0.3, 0.5, 1, 0] })), 'invalid');
  t.is(reason(resp({ probs: [0.2, 0.3, 0.6, 1, 0, 0] })), 'invalid');
  t.is(reason(resp({ probs: [NaN, 0.5, 0.5, 1, 0, 0] })), 'invalid');
  t.is(reason(resp({ probs: [-0.5, 1, 0.5, 1, 0, 0] })), 'invalid');
  t.is(reason(resp({ exit: 0 })), 'invalid');
  t.is(reason(resp({ exit: 9 })), 'invalid');
  t.is(reason(resp({ version: 3 })), 'invalid');
  t.is(reason(new Uint8Array([1, 2, 3, 4, 5])), 'invalid');
  fc.assert(fc.property(fc.uint8Array({ maxLength: 500 }), (b) => {
    const v = validateInferResponse(b, EXP);
    return !v.ok || v.probs.every((p) => isProbVector(p, 3));
  }), { seed: 7, numRuns: 500 });
});

test('token bucket: burst, then refill at the rate', (t) => {
  let now = 0;
  const b = new TokenBucket(10, 3, () => now);
  t.deepEqual([b.take(), b.take(), b.take(), b.take()], [true, true, true, false]);
  now += 100; // 0.1 s at 10/s = one token
  t.deepEqual([b.take(), b.take()], [true, false]);
  now += 10_000;
  t.deepEqual([b.take(), b.take(), b.take(), b.take()], [true, true, true, false]);
});

test('combining: mean and confidence weighting; prototype probabilities favour the nearest prototype', (t) => {
  const a = [0.9, 0.1];
  const b = [0.4, 0.6];
  t.deepEqual(Array.from(combineProbs([a, b], 'mean')).map((x) => +x.toFixed(6)), [0.65, 0.35]);
  // weights 0.9 and 0.6: (0.81 + 0.24) / 1.5 = 0.7
  t.deepEqual(Array.from(combineProbs([a, b], 'confidence')).map((x) => +x.toFixed(6)), [0.7, 0.3]);
  const means = [0, 0, 10, 10, 5, 5];
  const p = prototypeProbs([9, 9], 0, 2, means, 0, [1, 1, 0], 0, 3);
  t.true(p[1] > 0.99);
  t.is(p[2], 0, 'a class without prototype gets probability 0');
  t.true(isProbVector(p, 3));
  t.deepEqual(latencyFeatures({ batch1: [0.21, 0.7], batch64: [3, 12.34] }), ['infer-lat1:0.21,0.70', 'infer-lat64:3.00,12.3']);
  t.deepEqual(parseLatencyFeatures(['infer', 'infer-lat1:0.21,0.70', 'infer-lat64:3.00,12.3']), { batch1: [0.21, 0.7], batch64: [3, 12.3] });
  t.is(parseLatencyFeatures(['infer-lat1:x']), null);
});

/** A service on a stand-in mesh and model: exercises the handler's refusal logic without sockets or ORT. */
function fakeService(o: { maxConcurrent?: number; ratePerSec?: number; rateBurst?: number; hold?: Promise<void>; latency?: number[] } = {}) {
  let now = 0;
  const caps = { device: 'cpu', trainThroughput: 0, maxExitDepth: 0, datasetSize: 0, loraRank: 0, features: [] as string[] };
  const mesh = {
    createProtocol: () => ({ handle: () => {}, start: async () => {}, stop: async () => {} }),
    membership: { getCapabilities: () => caps, setCapabilities: (c: Partial<typeof caps>) => Object.assign(caps, c), members: () => [] },
    peerId: { toString: () => 'self' },
    isRunning: false,
  } as unknown as Mesh;
  const calls: { exit: unknown; budgetMs: unknown }[] = [];
  const model = {
    exits: 3, backboneName: 'bb', version: 'v7', cfg: { classes: 3 }, input: { size: 28, channels: 1, mean: [0.5], std: [0.5] }, latency: o.latency ? { batch1: o.latency, batch64: o.latency } : null,
    predict: async (_x: Float32Array, n: number, opts: { exit?: number; budgetMs?: number }) => {
      calls.push({ exit: opts.exit, budgetMs: opts.budgetMs });
      await o.hold;
      return { predictions: Array.from({ length: n }, () => ({ probs: Float64Array.from([0.5, 0.25, 0.25]) })), result: { exit: opts.exit ?? 2 } };
    },
  } as unknown as AnytimeModel;
  const svc = new InferService({ mesh, model, maxConcurrent: o.maxConcurrent, ratePerSec: o.ratePerSec, rateBurst: o.rateBurst, now: () => now });
  return { svc, calls, caps, tick: (ms: number) => (now += ms) };
}

const statusOf = (b: Uint8Array): InferStatus => InferResponse.decode(b).status;

test('serving: answers, refuses malformed/mismatched requests, rate-limits per peer, answers BUSY at the cap', async (t) => {
  const { svc, calls, caps } = fakeService({ ratePerSec: 1, rateBurst: 3 });
  svc.advertise();
  t.true(caps.features.includes('infer'));
  t.is(caps.maxExitDepth, 3);
  const r = InferResponse.decode(await svc.handle(req({ maxExit: 2, deadlineMs: 100 }), 'p1'));
  t.is(r.status, InferStatus.OK);
  t.is(r.exit, 2);
  t.is(r.modelVersion, 'v7');
  t.deepEqual(calls[0], { exit: 1, budgetMs: 50 }, 'max_exit is 1-based; the budget is half the deadline');
  t.is(statusOf(await svc.handle(req({ backbone: 'other' }), 'p1')), InferStatus.MODEL_MISMATCH);
  t.is(statusOf(await svc.handle(req({ pixels: new Uint8Array(3 * 32 * 32) }), 'p2')), InferStatus.MODEL_MISMATCH, 'images of another input size');
  t.is(statusOf(await svc.handle(new Uint8Array([9, 9, 9]), 'p1')), InferStatus.MALFORMED);
  t.is(statusOf(await svc.handle(req(), 'p1')), InferStatus.RATE_LIMITED, 'burst of 3 spent');
  t.is(statusOf(await svc.handle(req(), 'p2')), InferStatus.OK, 'buckets are per peer');

  let release!: () => void;
  const hold = new Promise<void>((r) => (release = r));
  const busy = fakeService({ maxConcurrent: 2, hold }).svc;
  const inflight = [busy.handle(req(), 'a'), busy.handle(req(), 'b')];
  t.is(statusOf(await busy.handle(req(), 'c')), InferStatus.BUSY);
  release();
  t.deepEqual((await Promise.all(inflight)).map(statusOf), [InferStatus.OK, InferStatus.OK]);
  t.is(statusOf(await busy.handle(req(), 'c')), InferStatus.OK, 'capacity is freed');

  const slow = fakeService({ latency: [80, 160, 240] }).svc;
  t.is(statusOf(await slow.handle(req({ deadlineMs: 100 }), 'p')), InferStatus.DEADLINE_TOO_SHORT);
  t.is(statusOf(await slow.handle(req({ deadlineMs: 1000 }), 'p')), InferStatus.OK);
});
