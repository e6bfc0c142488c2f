export { PrivacyError, RdpAccountant, computeRdp, rdpSampledGaussian, rdpToEpsilon, calibrateNoiseMultiplier, logErfc, DEFAULT_RDP_ORDERS } from './rdp.ts';
export type { RdpConversion } from './rdp.ts';
export { l2Norm, clipToNorm, addGaussianNoise, privatizeUpdate } from './dp.ts';
export type { ClientDpOptions } from './dp.ts';
export {
  SecAggError, SecAggRefusal, generateSecAggKeyPair, bindingMessage, announce, verifyAnnouncements, derivePairSeeds,
  expandMask, fixedPointFor, toFixedPoint, fromFixedPoint, maskInput, newSelfMaskSeed, revealFor, unmaskSum,
} from './secagg.ts';
export type { SecAggContext, SecAggKeyPair, SecAggAnnouncement, Signer, Verifier, FixedPoint, MaskSecrets, SecAggRevealData } from './secagg.ts';
export {
  SECAGG_FORMAT_VERSION, DEFAULT_SECAGG_LIMITS, encodeAnnounce, decodeAnnounce, encodeMasked, decodeMasked, encodeReveal, decodeReveal,
} from './secagg-wire.ts';
export type { SecAggLimits } from './secagg-wire.ts';
