/* eslint-disable import/export */
/* eslint-disable complexity */
/* eslint-disable @typescript-eslint/no-namespace */
/* eslint-disable @typescript-eslint/no-unnecessary-boolean-literal-compare */
/* eslint-disable @typescript-eslint/no-empty-interface */
/* eslint-disable import/consistent-type-specifier-style */
/* eslint-disable @typescript-eslint/no-unused-vars */

import { decodeMessage, encodeMessage, enumeration, MaxLengthError, message } from 'protons-runtime'
import { alloc as uint8ArrayAlloc } from 'uint8arrays/alloc'
import type { Codec, DecodeOptions } from 'protons-runtime'
import type { Uint8ArrayList } from 'uint8arraylist'

export enum ValueCodec {
  VALUE_CODEC_UNSPECIFIED = 'VALUE_CODEC_UNSPECIFIED',
  VALUE_F32 = 'VALUE_F32',
  VALUE_F16 = 'VALUE_F16',
  VALUE_Q8 = 'VALUE_Q8',
  VALUE_Q4 = 'VALUE_Q4',
  VALUE_SIGN = 'VALUE_SIGN'
}

enum __ValueCodecValues {
  VALUE_CODEC_UNSPECIFIED = 0,
  VALUE_F32 = 1,
  VALUE_F16 = 2,
  VALUE_Q8 = 3,
  VALUE_Q4 = 4,
  VALUE_SIGN = 5
}

export namespace ValueCodec {
  export const codec = (): Codec<ValueCodec> => {
    return enumeration<ValueCodec>(__ValueCodecValues)
  }
}

export enum IndexCodec {
  INDEX_DENSE = 'INDEX_DENSE',
  INDEX_DELTA_VARINT = 'INDEX_DELTA_VARINT',
  INDEX_BITMAP = 'INDEX_BITMAP',
  INDEX_RICE = 'INDEX_RICE'
}

enum __IndexCodecValues {
  INDEX_DENSE = 0,
  INDEX_DELTA_VARINT = 1,
  INDEX_BITMAP = 2,
  INDEX_RICE = 3
}

export namespace IndexCodec {
  export const codec = (): Codec<IndexCodec> => {
    return enumeration<IndexCodec>(__IndexCodecValues)
  }
}

export interface TensorDelta {
  name: string
  shape: number[]
  codec: ValueCodec
  blockSize: number
  values: Uint8Array
  indexCodec: IndexCodec
  nnz: number
  indices: Uint8Array
  tensorSkip: number
}

export namespace TensorDelta {
  let _codec: Codec<TensorDelta>

  export const codec = (): Codec<TensorDelta> => {
    if (_codec == null) {
      _codec = message<TensorDelta>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.name != null && obj.name !== '')) {
          w.uint32(10)
          w.string(obj.name)
        }

        if (obj.shape != null) {
          for (const value of obj.shape) {
            w.uint32(16)
            w.uint32(value)
          }
        }

        if (obj.codec != null && __ValueCodecValues[obj.codec] !== 0) {
          w.uint32(24)
          ValueCodec.codec().encode(obj.codec, w)
        }

        if ((obj.blockSize != null && obj.blockSize !== 0)) {
          w.uint32(32)
          w.uint32(obj.blockSize)
        }

        if ((obj.values != null && obj.values.byteLength > 0)) {
          w.uint32(42)
          w.bytes(obj.values)
        }

        if (obj.indexCodec != null && __IndexCodecValues[obj.indexCodec] !== 0) {
          w.uint32(48)
          IndexCodec.codec().encode(obj.indexCodec, w)
        }

        if ((obj.nnz != null && obj.nnz !== 0)) {
          w.uint32(56)
          w.uint32(obj.nnz)
        }

        if ((obj.indices != null && obj.indices.byteLength > 0)) {
          w.uint32(66)
          w.bytes(obj.indices)
        }

        if ((obj.tensorSkip != null && obj.tensorSkip !== 0)) {
          w.uint32(72)
          w.uint32(obj.tensorSkip)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          name: '',
          shape: [],
          codec: ValueCodec.VALUE_CODEC_UNSPECIFIED,
          blockSize: 0,
          values: uint8ArrayAlloc(0),
          indexCodec: IndexCodec.INDEX_DENSE,
          nnz: 0,
          indices: uint8ArrayAlloc(0),
          tensorSkip: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.name = reader.string()
              break
            }
            case 2: {
              if (opts.limits?.shape != null && obj.shape.length === opts.limits.shape) {
                throw new MaxLengthError('Decode error - map field "shape" had too many elements')
              }

              obj.shape.push(reader.uint32())
              break
            }
            case 3: {
              obj.codec = ValueCodec.codec().decode(reader)
              break
            }
            case 4: {
              obj.blockSize = reader.uint32()
              break
            }
            case 5: {
              obj.values = reader.bytes()
              break
            }
            case 6: {
              obj.indexCodec = IndexCodec.codec().decode(reader)
              break
            }
            case 7: {
              obj.nnz = reader.uint32()
              break
            }
            case 8: {
              obj.indices = reader.bytes()
              break
            }
            case 9: {
              obj.tensorSkip = reader.uint32()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      })
    }

    return _codec
  }

  export const encode = (obj: Partial<TensorDelta>): Uint8Array => {
    return encodeMessage(obj, TensorDelta.codec())
  }

  export const decode = (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<TensorDelta>): TensorDelta => {
    return decodeMessage(buf, TensorDelta.codec(), opts)
  }
}

export interface PrototypeTable {
  exit: number
  counts: bigint[]
  sums?: TensorDelta
}

export namespace PrototypeTable {
  let _codec: Codec<PrototypeTable>

  export const codec = (): Codec<PrototypeTable> => {
    if (_codec == null) {
      _codec = message<PrototypeTable>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.exit != null && obj.exit !== 0)) {
          w.uint32(8)
          w.uint32(obj.exit)
        }

        if (obj.counts != null) {
          for (const value of obj.counts) {
            w.uint32(16)
            w.uint64(value)
          }
        }

        if (obj.sums != null) {
          w.uint32(26)
          TensorDelta.codec().encode(obj.sums, w)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          exit: 0,
          counts: []
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.exit = reader.uint32()
              break
            }
            case 2: {
              if (opts.limits?.counts != null && obj.counts.length === opts.limits.counts) {
                throw new MaxLengthError('Decode error - map field "counts" had too many elements')
              }

              obj.counts.push(reader.uint64())
              break
            }
            case 3: {
              obj.sums = TensorDelta.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.sums
              })
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      })
    }

    return _codec
  }

  export const encode = (obj: Partial<PrototypeTable>): Uint8Array => {
    return encodeMessage(obj, PrototypeTable.codec())
  }

  export const decode = (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<PrototypeTable>): PrototypeTable => {
    return decodeMessage(buf, PrototypeTable.codec(), opts)
  }
}

export interface Update {
  formatVersion: number
  federation: string
  round: bigint
  baseVersion: bigint
  sender: string
  sampleCount: bigint
  loraRank: number
  tensors: TensorDelta[]
  prototypes: PrototypeTable[]
  manifestDigest: Uint8Array
  tensorCodec: ValueCodec
  tensorIndexCodec: IndexCodec
  trainedTensors: Uint8Array
}

export namespace Update {
  let _codec: Codec<Update>

  export const codec = (): Codec<Update> => {
    if (_codec == null) {
      _codec = message<Update>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.formatVersion != null && obj.formatVersion !== 0)) {
          w.uint32(8)
          w.uint32(obj.formatVersion)
        }

        if ((obj.federation != null && obj.federation !== '')) {
          w.uint32(18)
          w.string(obj.federation)
        }

        if ((obj.round != null && obj.round !== 0n)) {
          w.uint32(24)
          w.uint64(obj.round)
        }

        if ((obj.baseVersion != null && obj.baseVersion !== 0n)) {
          w.uint32(32)
          w.uint64(obj.baseVersion)
        }

        if ((obj.sender != null && obj.sender !== '')) {
          w.uint32(42)
          w.string(obj.sender)
        }

        if ((obj.sampleCount != null && obj.sampleCount !== 0n)) {
          w.uint32(48)
          w.uint64(obj.sampleCount)
        }

        if ((obj.loraRank != null && obj.loraRank !== 0)) {
          w.uint32(56)
          w.uint32(obj.loraRank)
        }

        if (obj.tensors != null) {
          for (const value of obj.tensors) {
            w.uint32(66)
            TensorDelta.codec().encode(value, w)
          }
        }

        if (obj.prototypes != null) {
          for (const value of obj.prototypes) {
            w.uint32(74)
            PrototypeTable.codec().encode(value, w)
          }
        }

        if ((obj.manifestDigest != null && obj.manifestDigest.byteLength > 0)) {
          w.uint32(82)
          w.bytes(obj.manifestDigest)
        }

        if (obj.tensorCodec != null && __ValueCodecValues[obj.tensorCodec] !== 0) {
          w.uint32(88)
          ValueCodec.codec().encode(obj.tensorCodec, w)
        }

        if (obj.tensorIndexCodec != null && __IndexCodecValues[obj.tensorIndexCodec] !== 0) {
          w.uint32(96)
          IndexCodec.codec().encode(obj.tensorIndexCodec, w)
        }

        if ((obj.trainedTensors != null && obj.trainedTensors.byteLength > 0)) {
          w.uint32(106)
          w.bytes(obj.trainedTensors)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          formatVersion: 0,
          federation: '',
          round: 0n,
          baseVersion: 0n,
          sender: '',
          sampleCount: 0n,
          loraRank: 0,
          tensors: [],
          prototypes: [],
          manifestDigest: uint8ArrayAlloc(0),
          tensorCodec: ValueCodec.VALUE_CODEC_UNSPECIFIED,
          tensorIndexCodec: IndexCodec.INDEX_DENSE,
          trainedTensors: uint8ArrayAlloc(0)
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.formatVersion = reader.uint32()
              break
            }
            case 2: {
              obj.federation = reader.string()
              break
            }
            case 3: {
              obj.round = reader.uint64()
              break
            }
            case 4: {
              obj.baseVersion = reader.uint64()
              break
            }
            case 5: {
              obj.sender = reader.string()
              break
            }
            case 6: {
              obj.sampleCount = reader.uint64()
              break
            }
            case 7: {
              obj.loraRank = reader.uint32()
              break
            }
            case 8: {
              if (opts.limits?.tensors != null && obj.tensors.length === opts.limits.tensors) {
                throw new MaxLengthError('Decode error - map field "tensors" had too many elements')
              }

              obj.tensors.push(TensorDelta.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.tensors$
              }))
              break
            }
            case 9: {
              if (opts.limits?.prototypes != null && obj.prototypes.length === opts.limits.prototypes) {
                throw new MaxLengthError('Decode error - map field "prototypes" had too many elements')
              }

              obj.prototypes.push(PrototypeTable.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.prototypes$
              }))
              break
            }
            case 10: {
              obj.manifestDigest = reader.bytes()
              break
            }
            case 11: {
              obj.tensorCodec = ValueCodec.codec().decode(reader)
              break
            }
            case 12: {
              obj.tensorIndexCodec = IndexCodec.codec().decode(reader)
              break
            }
            case 13: {
              obj.trainedTensors = reader.bytes()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      })
    }

    return _codec
  }

  export const encode = (obj: Partial<Update>): Uint8Array => {
    return encodeMessage(obj, Update.codec())
  }

  export const decode = (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Update>): Update => {
    return decodeMessage(buf, Update.codec(), opts)
  }
}

export enum PayloadCompression {
  COMPRESSION_NONE = 'COMPRESSION_NONE',
  COMPRESSION_BROTLI = 'COMPRESSION_BROTLI'
}

enum __PayloadCompressionValues {
  COMPRESSION_NONE = 0,
  COMPRESSION_BROTLI = 1
}

export namespace PayloadCompression {
  export const codec = (): Codec<PayloadCompression> => {
    return enumeration<PayloadCompression>(__PayloadCompressionValues)
  }
}

export interface UpdateEnvelope {
  compression: PayloadCompression
  bodyLength: number
  body: Uint8Array
}

export namespace UpdateEnvelope {
  let _codec: Codec<UpdateEnvelope>

  export const codec = (): Codec<UpdateEnvelope> => {
    if (_codec == null) {
      _codec = message<UpdateEnvelope>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if (obj.compression != null && __PayloadCompressionValues[obj.compression] !== 0) {
          w.uint32(8)
          PayloadCompression.codec().encode(obj.compression, w)
        }

        if ((obj.bodyLength != null && obj.bodyLength !== 0)) {
          w.uint32(16)
          w.uint32(obj.bodyLength)
        }

        if ((obj.body != null && obj.body.byteLength > 0)) {
          w.uint32(26)
          w.bytes(obj.body)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          compression: PayloadCompression.COMPRESSION_NONE,
          bodyLength: 0,
          body: uint8ArrayAlloc(0)
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.compression = PayloadCompression.codec().decode(reader)
              break
            }
            case 2: {
              obj.bodyLength = reader.uint32()
              break
            }
            case 3: {
              obj.body = reader.bytes()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      })
    }

    return _codec
  }

  export const encode = (obj: Partial<UpdateEnvelope>): Uint8Array => {
    return encodeMessage(obj, UpdateEnvelope.codec())
  }

  export const decode = (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<UpdateEnvelope>): UpdateEnvelope => {
    return decodeMessage(buf, UpdateEnvelope.codec(), opts)
  }
}

export interface SecAggAnnounce {
  formatVersion: number
  federation: string
  round: bigint
  peerId: string
  x25519PublicKey: Uint8Array
  signature: Uint8Array
}

export namespace SecAggAnnounce {
  let _codec: Codec<SecAggAnnounce>

  export const codec = (): Codec<SecAggAnnounce> => {
    if (_codec == null) {
      _codec = message<SecAggAnnounce>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.formatVersion != null && obj.formatVersion !== 0)) {
          w.uint32(8)
          w.uint32(obj.formatVersion)
        }

        if ((obj.federation != null && obj.federation !== '')) {
          w.uint32(18)
          w.string(obj.federation)
        }

        if ((obj.round != null && obj.round !== 0n)) {
          w.uint32(24)
          w.uint64(obj.round)
        }

        if ((obj.peerId != null && obj.peerId !== '')) {
          w.uint32(34)
          w.string(obj.peerId)
        }

        if ((obj.x25519PublicKey != null && obj.x25519PublicKey.byteLength > 0)) {
          w.uint32(42)
          w.bytes(obj.x25519PublicKey)
        }

        if ((obj.signature != null && obj.signature.byteLength > 0)) {
          w.uint32(50)
          w.bytes(obj.signature)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          formatVersion: 0,
          federation: '',
          round: 0n,
          peerId: '',
          x25519PublicKey: uint8ArrayAlloc(0),
          signature: uint8ArrayAlloc(0)
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.formatVersion = reader.uint32()
              break
            }
            case 2: {
              obj.federation = reader.string()
              break
            }
            case 3: {
              obj.round = reader.uint64()
              break
            }
            case 4: {
              obj.peerId = reader.string()
              break
            }
            case 5: {
              obj.x25519PublicKey = reader.bytes()
              break
            }
            case 6: {
              obj.signature = reader.bytes()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      })
    }

    return _codec
  }

  export const encode = (obj: Partial<SecAggAnnounce>): Uint8Array => {
    return encodeMessage(obj, SecAggAnnounce.codec())
  }

  export const decode = (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<SecAggAnnounce>): SecAggAnnounce => {
    return decodeMessage(buf, SecAggAnnounce.codec(), opts)
  }
}

export interface SecAggMasked {
  formatVersion: number
  federation: string
  round: bigint
  peerId: string
  fracBits: number
  words: Uint8Array
}

export namespace SecAggMasked {
  let _codec: Codec<SecAggMasked>

  export const codec = (): Codec<SecAggMasked> => {
    if (_codec == null) {
      _codec = message<SecAggMasked>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.formatVersion != null && obj.formatVersion !== 0)) {
          w.uint32(8)
          w.uint32(obj.formatVersion)
        }

        if ((obj.federation != null && obj.federation !== '')) {
          w.uint32(18)
          w.string(obj.federation)
        }

        if ((obj.round != null && obj.round !== 0n)) {
          w.uint32(24)
          w.uint64(obj.round)
        }

        if ((obj.peerId != null && obj.peerId !== '')) {
          w.uint32(34)
          w.string(obj.peerId)
        }

        if ((obj.fracBits != null && obj.fracBits !== 0)) {
          w.uint32(40)
          w.uint32(obj.fracBits)
        }

        if ((obj.words != null && obj.words.byteLength > 0)) {
          w.uint32(50)
          w.bytes(obj.words)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          formatVersion: 0,
          federation: '',
          round: 0n,
          peerId: '',
          fracBits: 0,
          words: uint8ArrayAlloc(0)
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.formatVersion = reader.uint32()
              break
            }
            case 2: {
              obj.federation = reader.string()
              break
            }
            case 3: {
              obj.round = reader.uint64()
              break
            }
            case 4: {
              obj.peerId = reader.string()
              break
            }
            case 5: {
              obj.fracBits = reader.uint32()
              break
            }
            case 6: {
              obj.words = reader.bytes()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      })
    }

    return _codec
  }

  export const encode = (obj: Partial<SecAggMasked>): Uint8Array => {
    return encodeMessage(obj, SecAggMasked.codec())
  }

  export const decode = (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<SecAggMasked>): SecAggMasked => {
    return decodeMessage(buf, SecAggMasked.codec(), opts)
  }
}

export interface PairSeed {
  peerId: string
  seed: Uint8Array
}

export namespace PairSeed {
  let _codec: Codec<PairSeed>

  export const codec = (): Codec<PairSeed> => {
    if (_codec == null) {
      _codec = message<PairSeed>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.peerId != null && obj.peerId !== '')) {
          w.uint32(10)
          w.string(obj.peerId)
        }

        if ((obj.seed != null && obj.seed.byteLength > 0)) {
          w.uint32(18)
          w.bytes(obj.seed)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          peerId: '',
          seed: uint8ArrayAlloc(0)
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.peerId = reader.string()
              break
            }
            case 2: {
              obj.seed = reader.bytes()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      })
    }

    return _codec
  }

  export const encode = (obj: Partial<PairSeed>): Uint8Array => {
    return encodeMessage(obj, PairSeed.codec())
  }

  export const decode = (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<PairSeed>): PairSeed => {
    return decodeMessage(buf, PairSeed.codec(), opts)
  }
}

export interface SecAggReveal {
  formatVersion: number
  federation: string
  round: bigint
  peerId: string
  seeds: PairSeed[]
  selfMaskSeed: Uint8Array
}

export namespace SecAggReveal {
  let _codec: Codec<SecAggReveal>

  export const codec = (): Codec<SecAggReveal> => {
    if (_codec == null) {
      _codec = message<SecAggReveal>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.formatVersion != null && obj.formatVersion !== 0)) {
          w.uint32(8)
          w.uint32(obj.formatVersion)
        }

        if ((obj.federation != null && obj.federation !== '')) {
          w.uint32(18)
          w.string(obj.federation)
        }

        if ((obj.round != null && obj.round !== 0n)) {
          w.uint32(24)
          w.uint64(obj.round)
        }

        if ((obj.peerId != null && obj.peerId !== '')) {
          w.uint32(34)
          w.string(obj.peerId)
        }

        if (obj.seeds != null) {
          for (const value of obj.seeds) {
            w.uint32(42)
            PairSeed.codec().encode(value, w)
          }
        }

        if ((obj.selfMaskSeed != null && obj.selfMaskSeed.byteLength > 0)) {
          w.uint32(50)
          w.bytes(obj.selfMaskSeed)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          formatVersion: 0,
          federation: '',
          round: 0n,
          peerId: '',
          seeds: [],
          selfMaskSeed: uint8ArrayAlloc(0)
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.formatVersion = reader.uint32()
              break
            }
            case 2: {
              obj.federation = reader.string()
              break
            }
            case 3: {
              obj.round = reader.uint64()
              break
            }
            case 4: {
              obj.peerId = reader.string()
              break
            }
            case 5: {
              if (opts.limits?.seeds != null && obj.seeds.length === opts.limits.seeds) {
                throw new MaxLengthError('Decode error - map field "seeds" had too many elements')
              }

              obj.seeds.push(PairSeed.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.seeds$
              }))
              break
            }
            case 6: {
              obj.selfMaskSeed = reader.bytes()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      })
    }

    return _codec
  }

  export const encode = (obj: Partial<SecAggReveal>): Uint8Array => {
    return encodeMessage(obj, SecAggReveal.codec())
  }

  export const decode = (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<SecAggReveal>): SecAggReveal => {
    return decodeMessage(buf, SecAggReveal.codec(), opts)
  }
}
