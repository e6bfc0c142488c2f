/**
 * Members that train another model refuse each other at join: a different label set or a different input size
 * gives a different federation model digest, and heartbeats carrying it are refused (MODEL_MISMATCH) before the
 * first round, so such a peer never enters the view, the leader order or the quorum.
 */
import test from 'ava';
import { RefusalReason } from '../../src/mesh/index.ts';
import { saveBackbone } from '../../src/model/backbone.ts';
import { VitConfigSchema, backboneSpecs, exitSpecs, initWeights } from '../../src/model/vit.ts';
import { FASHION_MNIST_CLASSES } from '../../src/data/index.ts';
import { startMeshes, stopAll, link, waitFor, viewsConverged } from './mesh-helpers.ts';
import { createFeds, releaseAll, tinyBackboneDir, tinyFl } from './fed-helpers.ts';

test.serial('a member with another label set or input size is refused at join with MODEL_MISMATCH; equal members still join', async (t) => {
  // Node 3 runs a backbone of the same architecture at 32x32 RGB (another input spec).
  const dir = await tinyBackboneDir();
  const cfg32 = VitConfigSchema.parse({ image: 28, channels: 3, patch: 7, dim: 16, depth: 2, heads: 2, mlp: 32 });
  await saveBackbone('tiny-rgb', cfg32, initWeights([...backboneSpecs(cfg32), ...exitSpecs(cfg32)], 5), { training: { note: 'test' }, testAccuracy: [0, 0] }, dir);

  const meshes = await startMeshes(4);
  t.teardown(() => stopAll(meshes));
  link(meshes, [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]]);
  await waitFor(() => viewsConverged(meshes), 'membership views before the federations start');

  const reversed = [...FASHION_MNIST_CLASSES].reverse();
  const feds = await createFeds(meshes, async (i) => {
    if (i === 2) return tinyFl(i, 4, { classes: reversed });
    if (i === 3) return tinyFl(i, 4, { backbone: 'tiny-rgb' });
    return tinyFl(i, 4);
  });
  t.teardown(() => releaseAll(feds));

  t.is(feds[0].modelDigest, feds[1].modelDigest);
  t.not(feds[0].modelDigest, feds[2].modelDigest, 'the label set enters the digest');
  t.not(feds[0].modelDigest, feds[3].modelDigest, 'the input spec enters the digest');
  t.deepEqual(feds[2].classes, reversed);

  const ids = meshes.map((m) => m.peerId.toString());
  const view = (i: number): string[] => meshes[i].membership.memberIds(false).sort();
  // Nodes 0 and 1 keep each other and drop the two mismatched members (they had joined before the digests were set).
  await waitFor(() => view(0).length === 1 && view(1).length === 1, 'mismatched members leave the views');
  t.deepEqual(view(0), [ids[1]]);
  t.deepEqual(view(1), [ids[0]]);
  t.deepEqual(view(2), [], 'another label set: nobody else is of its federation');
  t.deepEqual(view(3), []);
  // Their later heartbeats keep being refused with the documented reason, and never re-enter the view.
  await waitFor(() => meshes[0].refusalCount(RefusalReason.MODEL_MISMATCH) >= 4, 'refusals counted');
  t.true(meshes[2].refusalCount(RefusalReason.MODEL_MISMATCH) > 0);
  t.deepEqual(view(0), [ids[1]]);
});
