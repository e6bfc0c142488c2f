/**
 * `fmfl-node status`: fetch a node's /status and render it as terminal tables (members, round, leader, bytes).
 * The document comes over HTTP, so it is checked (size, JSON, version) before use.
 */
import { FmflError } from '../util/errors.ts';
import { MAX_STATUS_RESPONSE_BYTES, STATUS_FETCH_TIMEOUT_MS } from './limits.ts';
import { STATUS_VERSION, type StatusDocument } from './status.ts';

/** A status fetch failed: unreachable, not an fmfl node, or an unknown document version. */
export class StatusFetchError extends FmflError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('STATUS_FETCH', message, options);
  }
}

/** GET `<base>/status` (bounded in size and time). */
export async function fetchStatus(base: string): Promise<StatusDocument> {
  let url: URL;
  try {
    url = new URL('/status', base);
  } catch (err) {
    throw new FmflError('CONFIG', `--http must be a URL such as http://127.0.0.1:8470, got "${base}"`, { cause: err });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new FmflError('CONFIG', `--http must be an http:// URL, got "${base}"`);
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(STATUS_FETCH_TIMEOUT_MS), headers: { accept: 'application/json' } });
  } catch (err) {
    throw new StatusFetchError(`cannot reach ${url.origin}: ${(err as Error).message}; is the node running with --http-port?`, { cause: err });
  }
  if (!res.ok) throw new StatusFetchError(`${url} answered HTTP ${res.status}; is this an fmfl node's --http-port?`);
  const declared = Number(res.headers.get('content-length'));
  if (Number.isFinite(declared) && declared > MAX_STATUS_RESPONSE_BYTES) throw new StatusFetchError(`${url}: answer of ${declared} bytes is over ${MAX_STATUS_RESPONSE_BYTES}`);
  const text = await res.text();
  if (text.length > MAX_STATUS_RESPONSE_BYTES) throw new StatusFetchError(`${url}: answer over ${MAX_STATUS_RESPONSE_BYTES} bytes`);
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new StatusFetchError(`${url} did not answer JSON; is this an fmfl node's --http-port?`, { cause: err });
  }
  const d = doc as Partial<StatusDocument> | null;
  if (d === null || typeof d !== 'object' || d.v !== STATUS_VERSION || !Array.isArray(d.members) || typeof d.node !== 'object') {
    throw new StatusFetchError(`${url}: not an fmfl status document of version ${STATUS_VERSION}`);
  }
  return d as StatusDocument;
}

function bytes(n: number): string {
  const u = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  let x = n;
  while (x >= 1000 && i < u.length - 1) {
    x /= 1000;
    i++;
  }
  return `${i === 0 || x >= 100 ? Math.round(x) : x.toFixed(1)} ${u[i]}`;
}

function ago(ms: number, now: number): string {
  const s = Math.max(0, (now - ms) / 1000);
  return s < 1 ? 'now' : s < 120 ? `${Math.round(s)}s ago` : `${Math.round(s / 60)}m ago`;
}

/** Strip control characters (a peer chooses its device name) and cap the length. */
function clean(s: unknown, max = 64): string {
  return String(s ?? '').replace(/[\u0000-\u001f\u007f-\u009f]/g, '?').slice(0, max);
}

/** Lay out rows as a table with a header line, columns padded to their widest cell. */
export function table(header: string[], rows: string[][]): string {
  const w = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]): string => r.map((c, i) => (c ?? '').padEnd(w[i])).join('  ').trimEnd();
  return [line(header), line(w.map((n) => '-'.repeat(n))), ...rows.map(line)].join('\n');
}

/** The status document as text: a summary, the members table, the last rounds, refusals. */
export function formatStatus(d: StatusDocument): string {
  const f = d.federation;
  const out: string[] = [];
  out.push(`node ${clean(d.node.id, 128)}  federation ${clean(d.node.federation)}  members ${d.members.length}`);
  if (f) {
    const leader = f.current.leader ?? f.last?.leader ?? null;
    out.push(`round ${f.round}/${f.rounds}  phase ${f.phase}${f.phase === 'training' ? ` (step ${f.current.step}/${f.current.steps})` : ''}  protocol ${f.protocol}  leader ${leader ? clean(leader, 128) : '-'}`);
    if (f.last) out.push(`last round ${f.last.version}: ${f.last.contributors} contributors, accuracy per exit ${f.last.accuracy.map((a) => (a * 100).toFixed(1)).join('/')}%, ${(f.last.roundMs / 1000).toFixed(1)} s`);
  } else out.push('not federating');
  out.push(`bytes: updates up ${bytes(d.bytes.updateUp)} down ${bytes(d.bytes.updateDown)}; wire in ${bytes(d.bytes.wireIn)} out ${bytes(d.bytes.wireOut)}`);
  out.push('');
  out.push(table(
    ['member', 'device', 'round', 'phase', 'rtt', 'last seen', 'link'],
    d.members.map((m) => [
      `${clean(m.id, 128)}${m.self ? ' *' : ''}`,
      clean(m.capabilities?.device),
      m.round === null || m.round === undefined ? '-' : String(m.round),
      clean(m.phase ?? '-'),
      m.rttMs === null || m.rttMs === undefined ? '-' : `${m.rttMs.toFixed(1)}ms`,
      m.self ? 'now' : ago(m.lastSeenMs, d.timeMs),
      m.self ? 'self' : m.connected ? 'direct' : 'via mesh',
    ]),
  ));
  if (d.rounds.length > 0) {
    out.push('');
    out.push(table(
      ['round', 'leader', 'contributors', 'via', 'hash', 'up', 'down', 'seconds'],
      d.rounds.slice(-5).map((r) => [String(r.version), r.leader ? clean(r.leader, 128).slice(-12) : '-', `${r.contributors}/${r.members}`, clean(r.via), clean(r.hash, 12), bytes(r.bytesUp), bytes(r.bytesDown), (r.roundMs / 1000).toFixed(1)]),
    ));
  }
  const refusals = Object.entries(d.refusals.byReason);
  if (refusals.length > 0) out.push('', `refusals: ${refusals.map(([k, v]) => `${clean(k)} ${v}`).join(', ')}`);
  for (const x of d.dialing ?? []) out.push(`dialing ${clean(x.addr, 256)}: ${x.attempts} tries${x.cause ? `, ${clean(x.cause, 256)}` : ''}`);
  return out.join('\n') + '\n';
}
