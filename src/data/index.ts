export {
  DATASET_NAMES, SPLITS, IMAGE_SIZE, IMAGE_PIXELS, NUM_CLASSES, FASHION_MNIST_CLASSES, MNIST_CLASSES, MNIST_INPUT, CHANNEL_COUNTS,
  MIN_IMAGE_SIZE, MAX_IMAGE_SIZE, MAX_CLASSES, DatasetError, pixelsPerImage,
} from './types.ts';
export type { Dataset, DatasetName, Split, InputSpec } from './types.ts';
export { loadDataset, subsetDataset, balancedIndices, datasetOf, imageLength } from './dataset.ts';
export type { LoadDatasetOptions } from './dataset.ts';
export { defaultCacheDir, cachePath, DATASET_CACHE_VERSION } from './cache.ts';
export { FASHION_TEST_PER_CLASS, MNIST_TEST_PER_CLASS } from './sources.ts';
export { toFloatBatch, toLabelBatch, toLabelBatchInt64, toOneHotBatch, normalizationTables, PIXEL_MEAN, PIXEL_STD } from './batch.ts';
export type { Normalization } from './batch.ts';
export {
  partitionIid,
  partitionDirichlet,
  parseShardSpec,
  shardIndices,
  labelHistogram,
  partitionHistograms,
  formatHistograms,
  matchedTestIndices,
  DEFAULT_MIN_CLIENT_SAMPLES,
  DEFAULT_DIRICHLET_RETRIES,
} from './partition.ts';
export type { Partition, DirichletOptions, ShardSpec, ShardOptions } from './partition.ts';
export { DATA_SOURCES, resolveDataSource, loadData, labelMap } from './registry.ts';
export { channelStats } from './image-folder.ts';
export type { DataSource, DataRequest, LoadedData, SkippedFiles } from './registry.ts';
export {
  decodeImage,
  decodeDicomGrey,
  sniffImageFormat,
  checkInputSpec,
  ImageDecodeError,
  IMAGE_EXTENSIONS,
  MAX_IMAGE_FILE_BYTES,
  MAX_INPUT_PIXELS,
  MIN_INPUT_SIZE,
  MAX_INPUT_SIZE,
  DECODE_RULES_VERSION,
  DICOM_NATIVE_TRANSFER_SYNTAXES,
} from './decode.ts';
export type { DecodeSpec, ImageFormat } from './decode.ts';
export {
  loadImageFolder,
  DEFAULT_MAX_IMAGES,
  MAX_IMAGES_LIMIT,
  MAX_IMAGE_SET_BYTES,
  DEFAULT_TEST_FRACTION,
  DEFAULT_SPLIT_SEED,
  MAX_DECODE_CONCURRENCY,
} from './image-folder.ts';
export type { ImageFolderOptions, ImageSet, ImageSplit } from './image-folder.ts';
export {
  ImageFolderError,
  checkClasses,
  assignSplits,
  MAX_IMAGE_CLASSES,
  MAX_CLASS_NAME_CHARS,
  MAX_FOLDER_DEPTH,
  MAX_CSV_BYTES,
  MAX_CSV_PATH_CHARS,
  MAX_SKIPPED_EXAMPLES,
} from './image-listing.ts';
export type { ImageFolderErrorReason } from './image-listing.ts';
export { IMAGE_CACHE_VERSION, IMAGE_CACHE_MAGIC } from './image-cache.ts';
