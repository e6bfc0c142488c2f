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

export interface InferRequest {
  version: number
  requestId: string
  count: number
  pixels: Uint8Array
  deadlineMs: number
  maxExit: number
  backbone: string
}

export namespace InferRequest {
  let _codec: Codec<InferRequest>

  export const codec = (): Codec<InferRequest> => {
    if (_codec == null) {
      _codec = message<InferRequest>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.version != null && obj.version !== 0)) {
          w.uint32(8)
          w.uint32(obj.version)
        }

        if ((obj.requestId != null && obj.requestId !== '')) {
          w.uint32(18)
          w.string(obj.requestId)
        }

        if ((obj.count != null && obj.count !== 0)) {
          w.uint32(24)
          w.uint32(obj.count)
        }

        if ((obj.pixels != null && obj.pixels.byteLength > 0)) {
          w.uint32(34)
          w.bytes(obj.pixels)
        }

        if ((obj.deadlineMs != null && obj.deadlineMs !== 0)) {
          w.uint32(40)
          w.uint32(obj.deadlineMs)
        }

        if ((obj.maxExit != null && obj.maxExit !== 0)) {
          w.uint32(48)
          w.uint32(obj.maxExit)
        }

        if ((obj.backbone != null && obj.backbone !== '')) {
          w.uint32(58)
          w.string(obj.backbone)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          version: 0,
          requestId: '',
          count: 0,
          pixels: uint8ArrayAlloc(0),
          deadlineMs: 0,
          maxExit: 0,
          backbone: ''
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
              obj.requestId = reader.string()
              break
            }
            case 3: {
              obj.count = reader.uint32()
              break
            }
            case 4: {
              obj.pixels = reader.bytes()
              break
            }
            case 5: {
              obj.deadlineMs = reader.uint32()
              break
            }
            case 6: {
              obj.maxExit = reader.uint32()
              break
            }
            case 7: {
              obj.backbone = reader.string()
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

  export const encode = (obj: Partial<InferRequest>): Uint8Array => {
    return encodeMessage(obj, InferRequest.codec())
  }

  export const decode = (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<InferRequest>): InferRequest => {
    return decodeMessage(buf, InferRequest.codec(), opts)
  }
}

export enum InferStatus {
  OK = 'OK',
  MALFORMED = 'MALFORMED',
  UNSUPPORTED_VERSION = 'UNSUPPORTED_VERSION',
  OVERSIZED = 'OVERSIZED',
  MODEL_MISMATCH = 'MODEL_MISMATCH',
  BUSY = 'BUSY',
  RATE_LIMITED = 'RATE_LIMITED',
  DEADLINE_TOO_SHORT = 'DEADLINE_TOO_SHORT',
  UNAVAILABLE = 'UNAVAILABLE'
}

enum __InferStatusValues {
  OK = 0,
  MALFORMED = 1,
  UNSUPPORTED_VERSION = 2,
  OVERSIZED = 3,
  MODEL_MISMATCH = 4,
  BUSY = 5,
  RATE_LIMITED = 6,
  DEADLINE_TOO_SHORT = 7,
  UNAVAILABLE = 8
}

export namespace InferStatus {
  export const codec = (): Codec<InferStatus> => {
    return enumeration<InferStatus>(__InferStatusValues)
  }
}

export interface InferResponse {
  version: number
  status: InferStatus
  requestId: string
  message: string
  classes: number
  probs: number[]
  exit: number
  modelVersion: string
  backbone: string
}

export namespace InferResponse {
  let _codec: Codec<InferResponse>

  export const codec = (): Codec<InferResponse> => {
    if (_codec == null) {
      _codec = message<InferResponse>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.version != null && obj.version !== 0)) {
          w.uint32(8)
          w.uint32(obj.version)
        }

        if (obj.status != null && __InferStatusValues[obj.status] !== 0) {
          w.uint32(16)
          InferStatus.codec().encode(obj.status, w)
        }

        if ((obj.requestId != null && obj.requestId !== '')) {
          w.uint32(26)
          w.string(obj.requestId)
        }

        if ((obj.message != null && obj.message !== '')) {
          w.uint32(34)
          w.string(obj.message)
        }

        if ((obj.classes != null && obj.classes !== 0)) {
          w.uint32(40)
          w.uint32(obj.classes)
        }

        if (obj.probs != null) {
          for (const value of obj.probs) {
            w.uint32(53)
            w.float(value)
          }
        }

        if ((obj.exit != null && obj.exit !== 0)) {
          w.uint32(56)
          w.uint32(obj.exit)
        }

        if ((obj.modelVersion != null && obj.modelVersion !== '')) {
          w.uint32(66)
          w.string(obj.modelVersion)
        }

        if ((obj.backbone != null && obj.backbone !== '')) {
          w.uint32(74)
          w.string(obj.backbone)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          version: 0,
          status: InferStatus.OK,
          requestId: '',
          message: '',
          classes: 0,
          probs: [],
          exit: 0,
          modelVersion: '',
          backbone: ''
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
              obj.status = InferStatus.codec().decode(reader)
              break
            }
            case 3: {
              obj.requestId = reader.string()
              break
            }
            case 4: {
              obj.message = reader.string()
              break
            }
            case 5: {
              obj.classes = reader.uint32()
              break
            }
            case 6: {
              if (opts.limits?.probs != null && obj.probs.length === opts.limits.probs) {
                throw new MaxLengthError('Decode error - map field "probs" had too many elements')
              }

              obj.probs.push(reader.float())
              break
            }
            case 7: {
              obj.exit = reader.uint32()
              break
            }
            case 8: {
              obj.modelVersion = reader.string()
              break
            }
            case 9: {
              obj.backbone = reader.string()
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

  export const encode = (obj: Partial<InferResponse>): Uint8Array => {
    return encodeMessage(obj, InferResponse.codec())
  }

  export const decode = (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<InferResponse>): InferResponse => {
    return decodeMessage(buf, InferResponse.codec(), opts)
  }
}
