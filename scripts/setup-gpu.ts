/**
 * `npm run setup:gpu`: install the CUDA execution provider of onnxruntime 1.29.0 into onnxruntime-node.
 *
 * onnxruntime-node's own install script downloads CUDA binaries from a host that is not reachable from the
 * machines fmfl targets, so the CPU-only package is installed (see .npmrc). The npm package
 * `com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9` ships `libonnxruntime_providers_{cuda,shared,tensorrt}.so`
 * built for ORT 1.29.0 (CUDA 13, cuDNN 9). This script fetches it with `npm pack` (no install scripts run),
 * copies the provider libraries next to onnxruntime-node's binding, then checks that a session with
 * `executionProviders: ['cuda']` loads. The machine needs an NVIDIA driver and the CUDA 13 / cuDNN 9 runtime
 * libraries on its library path. `--device auto` falls back to the CPU with one log line when they are missing.
 *
 *   npm run setup:gpu [-- --check-only]
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import * as G from '../src/graph/index.ts';
import { Session } from '../src/runtime/index.ts';

const PACKAGE = 'com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9';
const LIBS = ['libonnxruntime_providers_cuda.so', 'libonnxruntime_providers_shared.so', 'libonnxruntime_providers_tensorrt.so'];

if (process.platform !== 'linux' || process.arch !== 'x64') {
  console.error(`setup:gpu supports linux-x64 only (this is ${process.platform}-${process.arch}); fmfl runs on the CPU here.`);
  process.exit(2);
}
const require = createRequire(import.meta.url);
const ortDir = dirname(require.resolve('onnxruntime-node/package.json'));
const binDir = join(ortDir, 'bin', 'napi-v6', 'linux', 'x64');
if (!existsSync(binDir)) {
  console.error(`onnxruntime-node's binary folder ${binDir} is missing; run npm install first.`);
  process.exit(1);
}

if (!process.argv.includes('--check-only')) {
  const tmp = mkdtempSync(join(tmpdir(), 'fmfl-gpu-'));
  try {
    console.log(`fetching ${PACKAGE} (about 180 MB) ...`);
    const tgz = execFileSync('npm', ['pack', PACKAGE, '--pack-destination', tmp, '--silent'], { encoding: 'utf8' }).trim().split('\n').pop()!;
    execFileSync('tar', ['xzf', join(tmp, tgz), '-C', tmp]);
    const src = join(tmp, 'package', 'Plugins', 'Linux', 'x64');
    const found = readdirSync(src);
    for (const lib of LIBS) {
      if (!found.includes(lib)) throw new Error(`${PACKAGE} does not contain ${lib}`);
      copyFileSync(join(src, lib), join(binDir, lib));
      console.log(`installed ${lib} -> ${binDir}`);
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

// Check: a tiny model on the CUDA provider.
const g = new G.Graph();
const x = g.input('x', [2, 3]);
g.output(G.softmax(G.matmul(x, g.initializer('w', Float32Array.from([1, 2, 3, 4, 5, 6]), [3, 2]))), 'y');
try {
  const s = await Session.create(G.exportOnnx(g), { provider: 'cuda' });
  const out = await s.run({ x: { data: Float32Array.from([1, 0, 0, 0, 1, 0]), dims: [2, 3] } });
  console.log(`CUDA execution provider works (output ${Array.from(out.y as Float32Array, (v) => v.toFixed(3)).join(' ')}). Use --device cuda or --device auto.`);
} catch (err) {
  console.error(`The CUDA provider libraries are installed, but a CUDA session could not be created:\n  ${(err as Error).message.split('\n')[0]}`);
  console.error('This needs an NVIDIA GPU with its driver and the CUDA 13 + cuDNN 9 runtime libraries on LD_LIBRARY_PATH. --device auto keeps working on the CPU.');
  process.exit(1);
}
