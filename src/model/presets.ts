/**
 * Named model configurations: the architecture a backbone is built and pretrained with. A federation picks a
 * backbone (weights + manifest); `npm run pretrain -- --model <name>` makes one from a preset or a custom config.
 */
import { ConfigError } from '../util/errors.ts';
import { validateVitConfig, VitConfigSchema, type VitConfig } from './vit.ts';

/** The presets: every field of {@link VitConfig} spelled out so the table documents itself. */
export const MODEL_PRESETS = {
  /** Today's embedded model: 28x28 greyscale, patch 4 (49 patches), dim 64, depth 4, 4 heads, MLP 128. */
  'vit-tiny': { image: 28, channels: 1, patch: 4, dim: 64, depth: 4, heads: 4, mlp: 128, classes: 10, eps: 1e-5 },
  /** 32x32 RGB (CIFAR-sized photos), patch 4 (64 patches), otherwise vit-tiny. */
  'vit-tiny-32': { image: 32, channels: 3, patch: 4, dim: 64, depth: 4, heads: 4, mlp: 128, classes: 10, eps: 1e-5 },
  /** 64x64 RGB, patch 8 (64 patches), dim 192, depth 6, 3 heads, MLP 768 (DeiT-Tiny's width at 6 blocks). */
  'vit-small-64': { image: 64, channels: 3, patch: 8, dim: 192, depth: 6, heads: 3, mlp: 768, classes: 10, eps: 1e-5 },
} as const satisfies Record<string, VitConfig>;

export type ModelPresetName = keyof typeof MODEL_PRESETS;
export const MODEL_PRESET_NAMES = Object.keys(MODEL_PRESETS) as ModelPresetName[];

/** What may override a preset: any architecture field (a custom size from a profile or flags). */
export type ModelOverrides = Partial<VitConfig>;

/**
 * The architecture for a preset name or a custom config object (a profile's `"model": {...}`; missing fields come
 * from `vit-tiny`), with `overrides` (e.g. `--image-size`, `--channels`, the federation's class count) applied.
 * @throws ConfigError naming the presets, or the field that does not fit (image not a multiple of patch, ...).
 */
export function resolveModelConfig(model: string | ModelOverrides, overrides: ModelOverrides = {}): VitConfig {
  let base: VitConfig;
  if (typeof model === 'string') {
    const preset = (MODEL_PRESETS as Record<string, VitConfig>)[model];
    if (!preset) throw new ConfigError(`unknown model '${model}': use one of ${MODEL_PRESET_NAMES.join(', ')} or a custom {"image", "channels", "patch", "dim", "depth", "heads", "mlp"} object in a profile`);
    base = preset;
  } else {
    const parsed = VitConfigSchema.partial().strict().safeParse(model);
    if (!parsed.success) throw new ConfigError(`invalid custom model: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
    base = { ...MODEL_PRESETS['vit-tiny'], ...parsed.data };
  }
  const merged = { ...base, ...Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined)) };
  if (merged.channels !== 1 && merged.channels !== 3) throw new ConfigError(`model channels must be 1 (greyscale) or 3 (RGB), got ${merged.channels}`);
  return validateVitConfig(merged);
}
