import { loadBackbone, MODELS_DIR } from '../model/backbone.ts';
import { loadModelCheckpoint } from '../model/model-checkpoint.ts';
import type { ExecutionProvider } from '../runtime/index.ts';
import { AnytimeModel } from './anytime.ts';

/** Options of {@link openModel}. */
export interface OpenModelOptions {
  /** Folder of backbones (default the project's models/). */
  modelsDir?: string;
  /** Deepest exit served (1..depth, default all). */
  maxExits?: number;
  threads?: number;
  provider?: ExecutionProvider;
  /** Calibrate per-exit latency after loading (default true); a number sets the repeats. */
  calibrate?: boolean | number;
}

/**
 * Load a model checkpoint (src/model/model-checkpoint.ts), its backbone, build the anytime model and calibrate
 * its per-exit latency at batch 1 and 64.
 */
export async function openModel(checkpointPath: string, o: OpenModelOptions = {}): Promise<AnytimeModel> {
  const ck = await loadModelCheckpoint(checkpointPath, { modelsDir: o.modelsDir });
  const bb = await loadBackbone(ck.backbone, o.modelsDir ?? MODELS_DIR);
  const m = await AnytimeModel.create({ checkpoint: ck, backbone: bb, maxExits: o.maxExits, threads: o.threads, provider: o.provider });
  const cal = o.calibrate ?? true;
  if (cal !== false) await m.calibrate({ repeats: typeof cal === 'number' ? cal : 20 });
  return m;
}
