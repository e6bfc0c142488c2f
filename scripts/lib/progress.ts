import cliProgress from 'cli-progress';

/** A step progress bar on stderr for training scripts: `step` starts it lazily, `done` closes it (e.g. per epoch). */
export function stepBar(label: string): { step: (s: number, total: number, loss: number) => void; done: () => void } {
  const bar = new cliProgress.SingleBar({ format: `${label} [{bar}] {value}/{total} steps  loss {loss}`, stream: process.stderr }, cliProgress.Presets.shades_classic);
  let started = false;
  return {
    step(s, total, loss) {
      if (!started) {
        bar.start(total, 0, { loss: '-' });
        started = true;
      }
      bar.update(s, { loss: loss.toFixed(3) });
    },
    done() {
      if (started) bar.stop();
      started = false;
    },
  };
}
