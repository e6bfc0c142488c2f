import test from 'ava';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { makeTestCheckpoint, fixtureImage } from './infer-helpers.ts';
import { openModel } from '../../src/infer/load.ts';
import { startPredictServer, type PredictServer } from '../../src/infer/http.ts';
import type { AnytimeModel } from '../../src/infer/anytime.ts';

let model: AnytimeModel;
let srv: PredictServer;
let small: PredictServer;

test.before(async () => {
  model = await openModel(await makeTestCheckpoint('http-v1'), { threads: 1, calibrate: 2 });
  srv = await startPredictServer({ model, port: 0 });
  small = await startPredictServer({ model, port: 0, maxBodyBytes: 2048 });
});

test.after.always(async () => {
  await srv?.close();
  await small?.close();
  await model?.release();
});

const post = async (body: unknown, opts: { url?: string; type?: string; raw?: string } = {}): Promise<{ status: number; json: any }> => {
  const res = await fetch(`${opts.url ?? srv.url}/predict`, { method: 'POST', headers: { 'content-type': opts.type ?? 'application/json' }, body: opts.raw ?? JSON.stringify(body) });
  return { status: res.status, json: await res.json() };
};

test('binds to loopback by default; GET /healthz reports the model and its calibrated latency', async (t) => {
  t.regex(srv.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  const res = await fetch(`${srv.url}/healthz`);
  t.is(res.status, 200);
  const h = (await res.json()) as { ok: boolean; modelVersion: string; exits: number; latencyMs: { batch1: number[]; batch64: number[] } };
  t.true(h.ok);
  t.is(h.modelVersion, 'http-v1');
  t.is(h.exits, 4);
  t.is(h.latencyMs.batch1.length, 4);
  t.is(h.latencyMs.batch64.length, 4);
});

test('POST /predict: pixels, images, base64 PNG, exits and modes', async (t) => {
  const img = Array.from(await fixtureImage());
  const a = await post({ pixels: img });
  t.is(a.status, 200, JSON.stringify(a.json));
  t.is(a.json.predictions.length, 1);
  const p = a.json.predictions[0];
  t.is(p.exit, 4);
  t.is(p.probs.length, 10);
  t.true(Math.abs(p.probs.reduce((x: number, y: number) => x + y, 0) - 1) < 1e-4);
  t.is(a.json.modelVersion, 'http-v1');

  const png = (await readFile(join(import.meta.dirname, '..', 'fixtures', 'infer', 'fmnist-rgb.png'))).toString('base64');
  const b = await post({ png });
  t.is(b.status, 200);
  t.deepEqual(b.json.predictions[0].probs, p.probs, 'the PNG and the pixel array are the same image');
  t.is(typeof b.json.predictions[0].className, 'string', 'answers name the class');
  // A JPEG at another size (sharp writes it here) is decoded and resized to the model's 28x28 input.
  const jpeg = await sharp(Buffer.from(await readFile(join(import.meta.dirname, '..', 'fixtures', 'infer', 'fmnist-gray.png')))).resize(56, 56).jpeg({ quality: 95 }).toBuffer();
  const j = await post({ image: jpeg.toString('base64') });
  t.is(j.status, 200);
  t.is(j.json.predictions[0].probs.length, 10);

  const c = await post({ images: [img, img.map((v) => 255 - v)], exit: 1, mode: 'ensemble' });
  t.is(c.status, 200);
  t.is(c.json.predictions.length, 2);
  t.true(c.json.predictions.every((q: { exit: number }) => q.exit === 1));
  t.is((await post({ pixels: img, mode: 'prototype', exit: 2 })).json.predictions[0].exit, 2);
  const auto = await post({ pixels: img, exit: 'auto', budgetMs: 10_000 });
  t.is(auto.json.predictions[0].exit, 4, 'a generous budget plans the deepest exit');
});

test('POST /predict refuses bad requests with a status and a reason', async (t) => {
  const img = Array.from(await fixtureImage());
  const bad = async (body: unknown, status: number, code: RegExp, opts?: Parameters<typeof post>[1]): Promise<void> => {
    const r = await post(body, opts);
    t.is(r.status, status, JSON.stringify(r.json));
    t.regex(r.json.error.code, code);
    t.is(typeof r.json.error.message, 'string');
  };
  await bad({ pixels: img.slice(1) }, 400, /BAD_INPUT/);
  await bad({ pixels: img, exit: 9 }, 400, /BAD_OPTION/);
  await bad({ pixels: img, mode: 'magic' }, 400, /BAD_OPTION/);
  await bad({ pixels: img, exit: 'auto' }, 400, /BAD_OPTION/);
  await bad({ pixels: img, peersK: 2 }, 400, /BAD_OPTION/);
  await bad({ png: 'aGVsbG8=' }, 400, /UNDECODABLE/);
  await bad(null, 400, /BAD_JSON/, { raw: '{nope' });
  await bad({ pixels: img }, 415, /MEDIA_TYPE/, { type: 'text/plain' });
  await bad({ pixels: img }, 413, /TOO_LARGE/, { url: small.url });
  const get = await fetch(`${srv.url}/predict`);
  t.is(get.status, 405);
  const nf = await fetch(`${srv.url}/nope`);
  t.is(nf.status, 404);
});
