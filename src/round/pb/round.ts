/* eslint-disable import/export */
/* eslint-disable complexity */
/* eslint-disable @typescript-eslint/no-namespace */
/* eslint-disable @typescript-eslint/no-unnecessary-boolean-literal-compare */
/* eslint-disable @typescript-eslint/no-empty-interface */
/* eslint-disable import/consistent-type-specifier-style */
/* eslint-disable @typescript-eslint/no-unused-vars */

import { decodeMessage, encodeMessage, MaxLengthError, message } from 'protons-runtime'
import { alloc as uint8ArrayAlloc } from 'uint8arrays/alloc'
import type { Codec, DecodeOptions } from 'protons-runtime'
import type { Uint8ArrayList } from 'uint8arraylist'

export interface GlobalUpdate {
  version: number
  round: bigint
  baseHash: Uint8Array
  newHash: Uint8Array
  contributors: string[]
  leaderRank: number
  contributorDigests: Uint8Array[]
}

export namespace GlobalUpdate {
  let _codec: Codec<GlobalUpdate>

  export const codec = (): Codec<GlobalUpdate> => {
    if (_codec == null) {
      _codec = message<GlobalUpdate>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.version != null && obj.version !== 0)) {
          w.uint32(8)
          w.uint32(obj.version)
        }

        if ((obj.round != null && obj.round !== 0n)) {
          w.uint32(16)
          w.uint64(obj.round)
        }

        if ((obj.baseHash != null && obj.baseHash.byteLength > 0)) {
          w.uint32(26)
          w.bytes(obj.baseHash)
        }

        if ((obj.newHash != null && obj.newHash.byteLength > 0)) {
          w.uint32(34)
          w.bytes(obj.newHash)
        }

        if (obj.contributors != null) {
          for (const value of obj.contributors) {
            w.uint32(42)
            w.string(value)
          }
        }

        if ((obj.leaderRank != null && obj.leaderRank !== 0)) {
          w.uint32(48)
          w.uint32(obj.leaderRank)
        }

        if (obj.contributorDigests != null) {
          for (const value of obj.contributorDigests) {
            w.uint32(66)
            w.bytes(value)
          }
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          version: 0,
          round: 0n,
          baseHash: uint8ArrayAlloc(0),
          newHash: uint8ArrayAlloc(0),
          contributors: [],
          leaderRank: 0,
          contributorDigests: []
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.version = reader.uint32()
              break
            }
            case 2: {
              obj.round = reader.uint64()
              break
            }
            case 3: {
              obj.baseHash = reader.bytes()
              break
            }
            case 4: {
              obj.newHash = reader.bytes()
              break
            }
            case 5: {
              if (opts.limits?.contributors != null && obj.contributors.length === opts.limits.contributors) {
                throw new MaxLengthError('Decode error - map field "contributors" had too many elements')
              }

              obj.contributors.push(reader.string())
              break
            }
            case 6: {
              obj.leaderRank = reader.uint32()
              break
            }
            case 8: {
              if (opts.limits?.contributorDigests != null && obj.contributorDigests.length === opts.limits.contributorDigests) {
                throw new MaxLengthError('Decode error - map field "contributorDigests" had too many elements')
              }

              obj.contributorDigests.push(reader.bytes())
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

  export const encode = (obj: Partial<GlobalUpdate>): Uint8Array => {
    return encodeMessage(obj, GlobalUpdate.codec())
  }

  export const decode = (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<GlobalUpdate>): GlobalUpdate => {
    return decodeMessage(buf, GlobalUpdate.codec(), opts)
  }
}

export interface StepRequest {
  version: number
  round: bigint
  newHash: Uint8Array
}

export namespace StepRequest {
  let _codec: Codec<StepRequest>

  export const codec = (): Codec<StepRequest> => {
    if (_codec == null) {
      _codec = message<StepRequest>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.version != null && obj.version !== 0)) {
          w.uint32(8)
          w.uint32(obj.version)
        }

        if ((obj.round != null && obj.round !== 0n)) {
          w.uint32(16)
          w.uint64(obj.round)
        }

        if ((obj.newHash != null && obj.newHash.byteLength > 0)) {
          w.uint32(26)
          w.bytes(obj.newHash)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          version: 0,
          round: 0n,
          newHash: uint8ArrayAlloc(0)
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.version = reader.uint32()
              break
            }
            case 2: {
              obj.round = reader.uint64()
              break
            }
            case 3: {
              obj.newHash = reader.bytes()
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

  export const encode = (obj: Partial<StepRequest>): Uint8Array => {
    return encodeMessage(obj, StepRequest.codec())
  }

  export const decode = (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<StepRequest>): StepRequest => {
    return decodeMessage(buf, StepRequest.codec(), opts)
  }
}

export interface SignedUpdate {
  version: number
  update: Uint8Array
  signature: Uint8Array
}

export namespace SignedUpdate {
  let _codec: Codec<SignedUpdate>

  export const codec = (): Codec<SignedUpdate> => {
    if (_codec == null) {
      _codec = message<SignedUpdate>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.version != null && obj.version !== 0)) {
          w.uint32(8)
          w.uint32(obj.version)
        }

        if ((obj.update != null && obj.update.byteLength > 0)) {
          w.uint32(18)
          w.bytes(obj.update)
        }

        if ((obj.signature != null && obj.signature.byteLength > 0)) {
          w.uint32(26)
          w.bytes(obj.signature)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          version: 0,
          update: uint8ArrayAlloc(0),
          signature: uint8ArrayAlloc(0)
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.version = reader.uint32()
              break
            }
            case 2: {
              obj.update = reader.bytes()
              break
            }
            case 3: {
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

  export const encode = (obj: Partial<SignedUpdate>): Uint8Array => {
    return encodeMessage(obj, SignedUpdate.codec())
  }

  export const decode = (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<SignedUpdate>): SignedUpdate => {
    return decodeMessage(buf, SignedUpdate.codec(), opts)
  }
}

export interface InputRequest {
  version: number
  round: bigint
  sender: string
  digest: Uint8Array
}

export namespace InputRequest {
  let _codec: Codec<InputRequest>

  export const codec = (): Codec<InputRequest> => {
    if (_codec == null) {
      _codec = message<InputRequest>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.version != null && obj.version !== 0)) {
          w.uint32(8)
          w.uint32(obj.version)
        }

        if ((obj.round != null && obj.round !== 0n)) {
          w.uint32(16)
          w.uint64(obj.round)
        }

        if ((obj.sender != null && obj.sender !== '')) {
          w.uint32(26)
          w.string(obj.sender)
        }

        if ((obj.digest != null && obj.digest.byteLength > 0)) {
          w.uint32(34)
          w.bytes(obj.digest)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          version: 0,
          round: 0n,
          sender: '',
          digest: uint8ArrayAlloc(0)
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.version = reader.uint32()
              break
            }
            case 2: {
              obj.round = reader.uint64()
              break
            }
            case 3: {
              obj.sender = reader.string()
              break
            }
            case 4: {
              obj.digest = reader.bytes()
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

  export const encode = (obj: Partial<InputRequest>): Uint8Array => {
    return encodeMessage(obj, InputRequest.codec())
  }

  export const decode = (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<InputRequest>): InputRequest => {
    return decodeMessage(buf, InputRequest.codec(), opts)
  }
}

export interface Attestation {
  version: number
  round: bigint
  baseHash: Uint8Array
  newHash: Uint8Array
  signer: string
  signature: Uint8Array
  residualDigest: Uint8Array
}

export namespace Attestation {
  let _codec: Codec<Attestation>

  export const codec = (): Codec<Attestation> => {
    if (_codec == null) {
      _codec = message<Attestation>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.version != null && obj.version !== 0)) {
          w.uint32(8)
          w.uint32(obj.version)
        }

        if ((obj.round != null && obj.round !== 0n)) {
          w.uint32(16)
          w.uint64(obj.round)
        }

        if ((obj.baseHash != null && obj.baseHash.byteLength > 0)) {
          w.uint32(26)
          w.bytes(obj.baseHash)
        }

        if ((obj.newHash != null && obj.newHash.byteLength > 0)) {
          w.uint32(34)
          w.bytes(obj.newHash)
        }

        if ((obj.signer != null && obj.signer !== '')) {
          w.uint32(42)
          w.string(obj.signer)
        }

        if ((obj.signature != null && obj.signature.byteLength > 0)) {
          w.uint32(50)
          w.bytes(obj.signature)
        }

        if ((obj.residualDigest != null && obj.residualDigest.byteLength > 0)) {
          w.uint32(58)
          w.bytes(obj.residualDigest)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          version: 0,
          round: 0n,
          baseHash: uint8ArrayAlloc(0),
          newHash: uint8ArrayAlloc(0),
          signer: '',
          signature: uint8ArrayAlloc(0),
          residualDigest: uint8ArrayAlloc(0)
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.version = reader.uint32()
              break
            }
            case 2: {
              obj.round = reader.uint64()
              break
            }
            case 3: {
              obj.baseHash = reader.bytes()
              break
            }
            case 4: {
              obj.newHash = reader.bytes()
              break
            }
            case 5: {
              obj.signer = reader.string()
              break
            }
            case 6: {
              obj.signature = reader.bytes()
              break
            }
            case 7: {
              obj.residualDigest = reader.bytes()
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

  export const encode = (obj: Partial<Attestation>): Uint8Array => {
    return encodeMessage(obj, Attestation.codec())
  }

  export const decode = (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Attestation>): Attestation => {
    return decodeMessage(buf, Attestation.codec(), opts)
  }
}

export interface AttestRequest {
  version: number
  round: bigint
  newHash: Uint8Array
}

export namespace AttestRequest {
  let _codec: Codec<AttestRequest>

  export const codec = (): Codec<AttestRequest> => {
    if (_codec == null) {
      _codec = message<AttestRequest>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.version != null && obj.version !== 0)) {
          w.uint32(8)
          w.uint32(obj.version)
        }

        if ((obj.round != null && obj.round !== 0n)) {
          w.uint32(16)
          w.uint64(obj.round)
        }

        if ((obj.newHash != null && obj.newHash.byteLength > 0)) {
          w.uint32(26)
          w.bytes(obj.newHash)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          version: 0,
          round: 0n,
          newHash: uint8ArrayAlloc(0)
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.version = reader.uint32()
              break
            }
            case 2: {
              obj.round = reader.uint64()
              break
            }
            case 3: {
              obj.newHash = reader.bytes()
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

  export const encode = (obj: Partial<AttestRequest>): Uint8Array => {
    return encodeMessage(obj, AttestRequest.codec())
  }

  export const decode = (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<AttestRequest>): AttestRequest => {
    return decodeMessage(buf, AttestRequest.codec(), opts)
  }
}

export interface AttestResponse {
  version: number
  attestations: Attestation[]
}

export namespace AttestResponse {
  let _codec: Codec<AttestResponse>

  export const codec = (): Codec<AttestResponse> => {
    if (_codec == null) {
      _codec = message<AttestResponse>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.version != null && obj.version !== 0)) {
          w.uint32(8)
          w.uint32(obj.version)
        }

        if (obj.attestations != null) {
          for (const value of obj.attestations) {
            w.uint32(18)
            Attestation.codec().encode(value, w)
          }
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          version: 0,
          attestations: []
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.version = reader.uint32()
              break
            }
            case 2: {
              if (opts.limits?.attestations != null && obj.attestations.length === opts.limits.attestations) {
                throw new MaxLengthError('Decode error - map field "attestations" had too many elements')
              }

              obj.attestations.push(Attestation.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.attestations$
              }))
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

  export const encode = (obj: Partial<AttestResponse>): Uint8Array => {
    return encodeMessage(obj, AttestResponse.codec())
  }

  export const decode = (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<AttestResponse>): AttestResponse => {
    return decodeMessage(buf, AttestResponse.codec(), opts)
  }
}

export interface StateRequest {
  version: number
  haveVersion: bigint
}

export namespace StateRequest {
  let _codec: Codec<StateRequest>

  export const codec = (): Codec<StateRequest> => {
    if (_codec == null) {
      _codec = message<StateRequest>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.version != null && obj.version !== 0)) {
          w.uint32(8)
          w.uint32(obj.version)
        }

        if ((obj.haveVersion != null && obj.haveVersion !== 0n)) {
          w.uint32(16)
          w.uint64(obj.haveVersion)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          version: 0,
          haveVersion: 0n
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.version = reader.uint32()
              break
            }
            case 2: {
              obj.haveVersion = reader.uint64()
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

  export const encode = (obj: Partial<StateRequest>): Uint8Array => {
    return encodeMessage(obj, StateRequest.codec())
  }

  export const decode = (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<StateRequest>): StateRequest => {
    return decodeMessage(buf, StateRequest.codec(), opts)
  }
}

export interface StateResponse {
  version: number
  globalVersion: bigint
  hash: Uint8Array
  state: Uint8Array
  certificate: Attestation[]
}

export namespace StateResponse {
  let _codec: Codec<StateResponse>

  export const codec = (): Codec<StateResponse> => {
    if (_codec == null) {
      _codec = message<StateResponse>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.version != null && obj.version !== 0)) {
          w.uint32(8)
          w.uint32(obj.version)
        }

        if ((obj.globalVersion != null && obj.globalVersion !== 0n)) {
          w.uint32(16)
          w.uint64(obj.globalVersion)
        }

        if ((obj.hash != null && obj.hash.byteLength > 0)) {
          w.uint32(26)
          w.bytes(obj.hash)
        }

        if ((obj.state != null && obj.state.byteLength > 0)) {
          w.uint32(34)
          w.bytes(obj.state)
        }

        if (obj.certificate != null) {
          for (const value of obj.certificate) {
            w.uint32(42)
            Attestation.codec().encode(value, w)
          }
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          version: 0,
          globalVersion: 0n,
          hash: uint8ArrayAlloc(0),
          state: uint8ArrayAlloc(0),
          certificate: []
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.version = reader.uint32()
              break
            }
            case 2: {
              obj.globalVersion = reader.uint64()
              break
            }
            case 3: {
              obj.hash = reader.bytes()
              break
            }
            case 4: {
              obj.state = reader.bytes()
              break
            }
            case 5: {
              if (opts.limits?.certificate != null && obj.certificate.length === opts.limits.certificate) {
                throw new MaxLengthError('Decode error - map field "certificate" had too many elements')
              }

              obj.certificate.push(Attestation.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.certificate$
              }))
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

  export const encode = (obj: Partial<StateResponse>): Uint8Array => {
    return encodeMessage(obj, StateResponse.codec())
  }

  export const decode = (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<StateResponse>): StateResponse => {
    return decodeMessage(buf, StateResponse.codec(), opts)
  }
}

export interface UpdateRequest {
  version: number
  round: bigint
}

export namespace UpdateRequest {
  let _codec: Codec<UpdateRequest>

  export const codec = (): Codec<UpdateRequest> => {
    if (_codec == null) {
      _codec = message<UpdateRequest>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.version != null && obj.version !== 0)) {
          w.uint32(8)
          w.uint32(obj.version)
        }

        if ((obj.round != null && obj.round !== 0n)) {
          w.uint32(16)
          w.uint64(obj.round)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          version: 0,
          round: 0n
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.version = reader.uint32()
              break
            }
            case 2: {
              obj.round = reader.uint64()
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

  export const encode = (obj: Partial<UpdateRequest>): Uint8Array => {
    return encodeMessage(obj, UpdateRequest.codec())
  }

  export const decode = (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<UpdateRequest>): UpdateRequest => {
    return decodeMessage(buf, UpdateRequest.codec(), opts)
  }
}

export interface MixUpdate {
  version: number
  round: bigint
  update: Uint8Array
}

export namespace MixUpdate {
  let _codec: Codec<MixUpdate>

  export const codec = (): Codec<MixUpdate> => {
    if (_codec == null) {
      _codec = message<MixUpdate>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.version != null && obj.version !== 0)) {
          w.uint32(8)
          w.uint32(obj.version)
        }

        if ((obj.round != null && obj.round !== 0n)) {
          w.uint32(16)
          w.uint64(obj.round)
        }

        if ((obj.update != null && obj.update.byteLength > 0)) {
          w.uint32(26)
          w.bytes(obj.update)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          version: 0,
          round: 0n,
          update: uint8ArrayAlloc(0)
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.version = reader.uint32()
              break
            }
            case 2: {
              obj.round = reader.uint64()
              break
            }
            case 3: {
              obj.update = reader.bytes()
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

  export const encode = (obj: Partial<MixUpdate>): Uint8Array => {
    return encodeMessage(obj, MixUpdate.codec())
  }

  export const decode = (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<MixUpdate>): MixUpdate => {
    return decodeMessage(buf, MixUpdate.codec(), opts)
  }
}

export interface PublicRequest {
  version: number
}

export namespace PublicRequest {
  let _codec: Codec<PublicRequest>

  export const codec = (): Codec<PublicRequest> => {
    if (_codec == null) {
      _codec = message<PublicRequest>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.version != null && obj.version !== 0)) {
          w.uint32(8)
          w.uint32(obj.version)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          version: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.version = reader.uint32()
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

  export const encode = (obj: Partial<PublicRequest>): Uint8Array => {
    return encodeMessage(obj, PublicRequest.codec())
  }

  export const decode = (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<PublicRequest>): PublicRequest => {
    return decodeMessage(buf, PublicRequest.codec(), opts)
  }
}

export interface PublicResponse {
  version: number
  round: bigint
  state: Uint8Array
}

export namespace PublicResponse {
  let _codec: Codec<PublicResponse>

  export const codec = (): Codec<PublicResponse> => {
    if (_codec == null) {
      _codec = message<PublicResponse>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.version != null && obj.version !== 0)) {
          w.uint32(8)
          w.uint32(obj.version)
        }

        if ((obj.round != null && obj.round !== 0n)) {
          w.uint32(16)
          w.uint64(obj.round)
        }

        if ((obj.state != null && obj.state.byteLength > 0)) {
          w.uint32(26)
          w.bytes(obj.state)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          version: 0,
          round: 0n,
          state: uint8ArrayAlloc(0)
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.version = reader.uint32()
              break
            }
            case 2: {
              obj.round = reader.uint64()
              break
            }
            case 3: {
              obj.state = reader.bytes()
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

  export const encode = (obj: Partial<PublicResponse>): Uint8Array => {
    return encodeMessage(obj, PublicResponse.codec())
  }

  export const decode = (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<PublicResponse>): PublicResponse => {
    return decodeMessage(buf, PublicResponse.codec(), opts)
  }
}

export interface MaskedUpdate {
  version: number
  round: bigint
  baseVersion: bigint
  members: string[]
  masked: Uint8Array
}

export namespace MaskedUpdate {
  let _codec: Codec<MaskedUpdate>

  export const codec = (): Codec<MaskedUpdate> => {
    if (_codec == null) {
      _codec = message<MaskedUpdate>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.version != null && obj.version !== 0)) {
          w.uint32(8)
          w.uint32(obj.version)
        }

        if ((obj.round != null && obj.round !== 0n)) {
          w.uint32(16)
          w.uint64(obj.round)
        }

        if ((obj.baseVersion != null && obj.baseVersion !== 0n)) {
          w.uint32(24)
          w.uint64(obj.baseVersion)
        }

        if (obj.members != null) {
          for (const value of obj.members) {
            w.uint32(34)
            w.string(value)
          }
        }

        if ((obj.masked != null && obj.masked.byteLength > 0)) {
          w.uint32(42)
          w.bytes(obj.masked)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          version: 0,
          round: 0n,
          baseVersion: 0n,
          members: [],
          masked: uint8ArrayAlloc(0)
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.version = reader.uint32()
              break
            }
            case 2: {
              obj.round = reader.uint64()
              break
            }
            case 3: {
              obj.baseVersion = reader.uint64()
              break
            }
            case 4: {
              if (opts.limits?.members != null && obj.members.length === opts.limits.members) {
                throw new MaxLengthError('Decode error - map field "members" had too many elements')
              }

              obj.members.push(reader.string())
              break
            }
            case 5: {
              obj.masked = reader.bytes()
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

  export const encode = (obj: Partial<MaskedUpdate>): Uint8Array => {
    return encodeMessage(obj, MaskedUpdate.codec())
  }

  export const decode = (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<MaskedUpdate>): MaskedUpdate => {
    return decodeMessage(buf, MaskedUpdate.codec(), opts)
  }
}

export interface RevealRequest {
  version: number
  round: bigint
  members: string[]
  survivors: string[]
  dropped: string[]
}

export namespace RevealRequest {
  let _codec: Codec<RevealRequest>

  export const codec = (): Codec<RevealRequest> => {
    if (_codec == null) {
      _codec = message<RevealRequest>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.version != null && obj.version !== 0)) {
          w.uint32(8)
          w.uint32(obj.version)
        }

        if ((obj.round != null && obj.round !== 0n)) {
          w.uint32(16)
          w.uint64(obj.round)
        }

        if (obj.members != null) {
          for (const value of obj.members) {
            w.uint32(26)
            w.string(value)
          }
        }

        if (obj.survivors != null) {
          for (const value of obj.survivors) {
            w.uint32(34)
            w.string(value)
          }
        }

        if (obj.dropped != null) {
          for (const value of obj.dropped) {
            w.uint32(42)
            w.string(value)
          }
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          version: 0,
          round: 0n,
          members: [],
          survivors: [],
          dropped: []
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.version = reader.uint32()
              break
            }
            case 2: {
              obj.round = reader.uint64()
              break
            }
            case 3: {
              if (opts.limits?.members != null && obj.members.length === opts.limits.members) {
                throw new MaxLengthError('Decode error - map field "members" had too many elements')
              }

              obj.members.push(reader.string())
              break
            }
            case 4: {
              if (opts.limits?.survivors != null && obj.survivors.length === opts.limits.survivors) {
                throw new MaxLengthError('Decode error - map field "survivors" had too many elements')
              }

              obj.survivors.push(reader.string())
              break
            }
            case 5: {
              if (opts.limits?.dropped != null && obj.dropped.length === opts.limits.dropped) {
                throw new MaxLengthError('Decode error - map field "dropped" had too many elements')
              }

              obj.dropped.push(reader.string())
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

  export const encode = (obj: Partial<RevealRequest>): Uint8Array => {
    return encodeMessage(obj, RevealRequest.codec())
  }

  export const decode = (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<RevealRequest>): RevealRequest => {
    return decodeMessage(buf, RevealRequest.codec(), opts)
  }
}
