/**
 * `POST /predict` on a real node's HTTP server (FmflNode with a checkpoint and `http`): raw PNG / JPEG bodies,
 * multipart uploads of several files, the JSON batch, class names from the checkpoint's labels, and hostile bodies
 * (wrong types, lies about the type, truncated images, broken multipart, oversize uploads). Images are written by
 * sharp here; the expected pixels come from the data layer's own decoder.
 */
import test from 'ava';
import { request } from 'node:http';
import sharp from 'sharp';
import { FmflNode } from '../../src/node/index.ts';
import { FASHION_MNIST_CLASSES, decodeImage } from '../../src/data/index.ts';
import { MAX_HTTP_UPLOAD_BYTES } from '../../src/infer/index.ts';
import { silentLogger } from '../../src/util/log.ts';
import { fixtureImage, makeTestCheckpoint } from './infer-helpers.ts';

let node: FmflNode;
let url: string;
let png: Buffer;
let jpeg: Buffer;

test.before(async () => {
  const checkpoint = await makeTestCheckpoint('upload-v1', 1, [...FASHION_MNIST_CLASSES]);
  node = await FmflNode.create({ federation: 'upload', http: { port: 0 }, infer: { checkpoint, threads: 1 }, heartbeatIntervalMs: 200, memberExpiryMs: 1500 }, { logger: silentLogger() });
  await node.start();
  url = node.http!.url;
  // A 28x28 greyscale dress from Fashion-MNIST as PNG, and the same picture as an RGB 56x56 JPEG.
  const px = await fixtureImage();
  png = await sharp(Buffer.from(px), { raw: { width: 28, height: 28, channels: 1 } }).png().toBuffer();
  jpeg = await sharp(Buffer.from(px), { raw: { width: 28, height: 28, channels: 1 } }).resize(56, 56).toColourspace('srgb').jpeg({ quality: 95 }).toBuffer();
});

test.after.always(async () => {
  await node?.stop();
});

interface Answer {
  status: number;
  json: any;
}

const post = async (body: string | Uint8Array | FormData, type: string | null, query = ''): Promise<Answer> => {
  const headers: Record<string, string> = type === null ? {} : { 'content-type': type };
  const res = await fetch(`${url}/predict${query}`, { method: 'POST', headers, body });
  return { status: res.status, json: await res.json() };
};

const form = (files: [string, Buffer, string][], fields: Record<string, string> = {}): FormData => {
  const f = new FormData();
  for (const [name, bytes, type] of files) f.append('file', new Blob([new Uint8Array(bytes)], { type }), name);
  for (const [k, v] of Object.entries(fields)) f.append(k, v);
  return f;
};

const refused = (t: import('ava').ExecutionContext, r: Answer, status: number, code: string, message?: RegExp): void => {
  t.is(r.status, status, JSON.stringify(r.json));
  t.is(r.json.error?.code, code, JSON.stringify(r.json));
  t.is(typeof r.json.error.message, 'string');
  if (message) t.regex(r.json.error.message, message);
};

test('a raw PNG body is decoded like training data and answered with the class name', async (t) => {
  const r = await post(new Uint8Array(png), 'image/png');
  t.is(r.status, 200, JSON.stringify(r.json));
  t.is(r.json.predictions.length, 1);
  const p = r.json.predictions[0];
  t.is(p.exit, 4);
  t.is(p.probs.length, 10);
  t.is(p.className, FASHION_MNIST_CLASSES[p.label], 'class names come from the checkpoint labels');
  t.is(r.json.modelVersion, 'upload-v1');
  // Same image as the JSON pixels the data layer decodes from the PNG: identical probabilities.
  const pixels = Array.from(await decodeImage(new Uint8Array(png), 'x.png', { size: 28, channels: 1 }));
  const j = await post(JSON.stringify({ pixels }), 'application/json');
  t.is(j.status, 200);
  t.deepEqual(j.json.predictions[0].probs, p.probs);
  t.is(j.json.predictions[0].className, p.className);
});

test('a raw JPEG body at another size is resized; options come from the query string', async (t) => {
  const r = await post(new Uint8Array(jpeg), 'image/jpeg', '?exit=2&mode=prototype');
  t.is(r.status, 200, JSON.stringify(r.json));
  t.is(r.json.predictions[0].exit, 2);
  t.is(r.json.mode, 'prototype');
  t.true(FASHION_MNIST_CLASSES.includes(r.json.predictions[0].className));
  const auto = await post(new Uint8Array(jpeg), 'image/jpeg', '?exit=auto&budgetMs=10000');
  t.is(auto.json.predictions[0].exit, 4);
  refused(t, await post(new Uint8Array(jpeg), 'image/jpeg', '?exit=9'), 400, 'BAD_OPTION', /exit/);
  refused(t, await post(new Uint8Array(jpeg), 'image/jpeg', '?colour=red'), 400, 'BAD_OPTION', /unknown query parameter "colour"/);
});

test('multipart/form-data: several files in one request, fields as options, one answer per file in order', async (t) => {
  const inverted = await sharp(png).negate().png().toBuffer();
  const r = await post(form([['dress.png', png, 'image/png'], ['dress.jpg', jpeg, 'image/jpeg'], ['inverted.png', inverted, 'application/octet-stream']], { exit: '3' }), null);
  t.is(r.status, 200, JSON.stringify(r.json));
  t.deepEqual(r.json.predictions.map((p: { file: string }) => p.file), ['dress.png', 'dress.jpg', 'inverted.png']);
  t.true(r.json.predictions.every((p: { exit: number; className: string; label: number }) => p.exit === 3 && p.className === FASHION_MNIST_CLASSES[p.label]));
  const single = await post(new Uint8Array(png), 'image/png', '?exit=3');
  t.deepEqual(r.json.predictions[0].probs, single.json.predictions[0].probs, 'a multipart file answers like the same raw body');
});

test('hostile bodies get typed 4xx answers with a reason', async (t) => {
  refused(t, await post('hello', 'text/plain'), 415, 'MEDIA_TYPE', /not accepted/);
  refused(t, await post(new Uint8Array(png), null), 415, 'MEDIA_TYPE');
  refused(t, await post(new Uint8Array(jpeg), 'image/png'), 415, 'MEDIA_TYPE', /declared image\/png but holds a JPEG/);
  refused(t, await post(new Uint8Array(png.subarray(0, 60)), 'image/png'), 400, 'UNDECODABLE');
  refused(t, await post(new Uint8Array(Buffer.from('not an image at all')), 'image/jpeg'), 400, 'UNDECODABLE', /not a PNG, JPEG/);
  refused(t, await post(new Uint8Array(0), 'image/png'), 400, 'UNDECODABLE', /empty/);
  refused(t, await post('garbage without parts', 'multipart/form-data; boundary=xyz'), 400, 'BAD_MULTIPART', /cannot be parsed/);
  refused(t, await post('--x\r\n', 'multipart/form-data'), 400, 'BAD_MULTIPART', /boundary/);
  refused(t, await post(form([], { exit: '2' }), null), 400, 'BAD_MULTIPART', /no file/);
  refused(t, await post(form([['a.png', png, 'image/png']], { nonsense: '1' }), null), 400, 'BAD_MULTIPART', /unknown multipart field/);
  refused(t, await post(form([['notes.txt', Buffer.from('hi'), 'text/plain']]), null), 415, 'MEDIA_TYPE', /notes\.txt/);
  refused(t, await post(form([['broken.png', png.subarray(0, 40), 'image/png']]), null), 400, 'UNDECODABLE', /broken\.png|PNG/);
  refused(t, await post('{"pixels":[1,2', 'application/json'), 400, 'BAD_JSON');
  // Over the upload limit: refused from Content-Length before the body is read.
  const big = Buffer.alloc(MAX_HTTP_UPLOAD_BYTES + 1);
  png.copy(big);
  refused(t, await post(new Uint8Array(big), 'image/png'), 413, 'TOO_LARGE');
  // Same without a Content-Length (chunked): refused while it arrives.
  const chunked = await new Promise<Answer>((resolve, reject) => {
    const u = new URL(`${url}/predict`);
    const req = request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers: { 'content-type': 'image/png', 'transfer-encoding': 'chunked' } }, (res) => {
      let s = '';
      res.on('data', (c) => (s += c));
      res.on('end', () => resolve({ status: res.statusCode!, json: JSON.parse(s) }));
    });
    req.on('error', reject);
    for (let i = 0; i < 17 && !req.destroyed; i++) req.write(Buffer.alloc(1024 * 1024));
    req.end();
  });
  refused(t, chunked, 413, 'TOO_LARGE');
  const ok = await post(new Uint8Array(png), 'image/png');
  t.is(ok.status, 200, 'the node still answers after the hostile bodies');
});
