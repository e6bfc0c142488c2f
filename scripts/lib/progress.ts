import cliProgress from 'cli-progress';

/**
 * A step progress bar on stderr for training scripts (a terminal only): epoch k/n, steps over the whole run, loss and
 * the ETA of the run. `step` starts it lazily, `done` closes it (e.g. per epoch, before printing the epoch line).
 */
export function stepBar(label: string, epochs = 1): { step: (s: number, total: number, loss: number) => void; done: () => void } {
  const bar = new cliProgress.SingleBar({ format: `${label} [{bar}] epoch {epoch}/{epochs} | step {value}/{total} | loss {loss} | ETA {eta_formatted}`, stream: process.stderr, etaBuffer: 50 }, cliProgress.Presets.shades_classic);
  let started = false;
  return {
    step(s, total, loss) {
      const epoch = Math.min(epochs, Math.floor(((s - 1) * epochs) / Math.max(1, total)) + 1);
      if (!started) {
        bar.start(total, s - 1, { loss: '-', epoch, epochs });
        started = true;
      }
      bar.update(s, { loss: loss.toFixed(3), epoch });
    },
    done() {
      if (started) bar.stop();
      started = false;
    },
  };
}

/**
 * Per-round progress of a whole simulated federation: `round(node, version)` after each node's round. On a terminal
 * a bar over nodes x rounds shows the slowest and fastest node's round and an ETA; otherwise one line each time every
 * node has finished one more round (with the ETA).
 */
export function federationBar(nodes: number, rounds: number, opts: { tty: boolean; log: (line: string) => void }): { round: (node: number, version: number) => void; done: () => void } {
  const at = new Array<number>(nodes).fill(0);
  const t0 = Date.now();
  let slowest = 0;
  const bar = opts.tty
    ? new cliProgress.SingleBar({ format: 'federation [{bar}] rounds {lo}..{hi}/{rounds} of {nodes} nodes  ETA {eta_formatted}', stream: process.stderr, etaBuffer: Math.max(10, nodes * 3) }, cliProgress.Presets.shades_classic)
    : null;
  let started = false;
  const eta = (): string => {
    const done = at.reduce((a, b) => a + b, 0);
    if (done === 0) return '?';
    const s = ((Date.now() - t0) / 1000) * (nodes * rounds - done) / done;
    return s >= 60 ? `${Math.floor(s / 60)} min ${Math.round(s % 60)} s` : `${Math.round(s)} s`;
  };
  return {
    round(node, version) {
      if (node < 0 || node >= nodes) return;
      at[node] = Math.min(rounds, Math.max(at[node], version));
      const lo = Math.min(...at);
      const hi = Math.max(...at);
      if (bar && !started) {
        bar.start(nodes * rounds, 0, { lo: 0, hi: 0, rounds, nodes });
        started = true;
      }
      if (bar) bar.update(at.reduce((a, b) => a + b, 0), { lo, hi });
      else if (lo > slowest) opts.log(`federation: round ${lo}/${rounds} done on all ${nodes} nodes (fastest at ${hi}); ETA ${eta()}`);
      slowest = lo;
    },
    done() {
      if (started) bar?.stop();
      started = false;
    },
  };
}
