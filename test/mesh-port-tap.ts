/**
 * A MeshPort decorator for tests: forwards everything to the real port and shows the taps what this node sends
 * (its publishes, its request bodies, its answers to requests). Used as `Federation.create(..., { decorate })`.
 */
import type { MeshPort } from '../src/round/mesh-port.ts';

export interface SendTaps {
  publish?(topic: string, payload: Uint8Array): void;
  request?(body: Uint8Array): void;
  respond?(body: Uint8Array): void;
}

export function tapMeshPort(inner: MeshPort, taps: SendTaps): MeshPort {
  return {
    get federation() { return inner.federation; },
    get selfId() { return inner.selfId; },
    get roster() { return inner.roster; },
    onRoster: (p) => inner.onRoster(p),
    subscribe: (n, h, o) => inner.subscribe(n, h, o),
    unsubscribe: (n) => inner.unsubscribe(n),
    publish: (n, payload) => {
      taps.publish?.(n, payload);
      return inner.publish(n, payload);
    },
    handleRequest: (m, h) => inner.handleRequest(m, taps.respond === undefined ? h : async (body, ctx) => {
      const out = await h(body, ctx);
      taps.respond!(out);
      return out;
    }),
    request: (p, m, b, o) => {
      taps.request?.(b);
      return inner.request(p, m, b, o);
    },
    signWithIdentity: (d) => inner.signWithIdentity(d),
  };
}
