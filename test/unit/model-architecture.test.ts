import test from 'ava';
import { ARCHITECTURES, architectureOf, modelTensors, trainableTensors } from '../../src/model/architecture.ts';
import { MODEL_PRESETS, MODEL_PRESET_NAMES, resolveModelConfig } from '../../src/model/presets.ts';
import { backboneSpecs, exitSpecs, loraSpecs, trainableSpecs, TRAINABLE_SETS } from '../../src/model/vit.ts';
import { ConfigError } from '../../src/util/errors.ts';

test('every consumer-facing tensor list comes from the architecture record and equals the ViT declaration', (t) => {
  const lora = { rank: 4, alpha: 8, targets: ['q', 'v'] as ('q' | 'v')[] };
  for (const name of MODEL_PRESET_NAMES) {
    const cfg = resolveModelConfig(name);
    t.is(architectureOf(cfg), ARCHITECTURES.vit);
    t.deepEqual(modelTensors(cfg, lora), [...backboneSpecs(cfg), ...exitSpecs(cfg), ...loraSpecs(cfg, lora)]);
    for (const set of TRAINABLE_SETS) t.deepEqual(trainableTensors(cfg, set, lora), trainableSpecs(cfg, set, lora));
    t.is(architectureOf(cfg).exits(cfg), cfg.depth);
  }
  t.throws(() => architectureOf({ arch: 'resnet' as 'vit' }), { instanceOf: ConfigError, message: /unknown model architecture 'resnet'.*vit/ });
});

test('presets and custom configs resolve; bad ones name the field', (t) => {
  t.deepEqual(resolveModelConfig('vit-tiny-32'), { ...MODEL_PRESETS['vit-tiny-32'] });
  const c = resolveModelConfig('vit-small-64', { channels: 1, classes: 2 });
  t.is(c.channels, 1);
  t.is(c.classes, 2);
  t.is(resolveModelConfig({ image: 48, patch: 6, dim: 96 }).image, 48);
  t.throws(() => resolveModelConfig('vit-huge'), { instanceOf: ConfigError, message: /vit-tiny, vit-tiny-32, vit-small-64/ });
  t.throws(() => resolveModelConfig({ image: 30, patch: 4 }), { instanceOf: ConfigError, message: /multiple of patch/ });
  t.throws(() => resolveModelConfig('vit-tiny', { channels: 2 }), { instanceOf: ConfigError, message: /1 \(greyscale\) or 3/ });
  t.throws(() => resolveModelConfig({ layers: 3 } as never), { instanceOf: ConfigError });
});
