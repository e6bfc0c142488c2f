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

export interface Heartbeat {
  version: number
  peerId: Uint8Array
  seq: bigint
  timestampMs: bigint
  addrs: string[]
  protocolVersion: string
  capabilities?: Capabilities
  leaving: boolean
}

export namespace Heartbeat {
  let _codec: Codec<Heartbeat>

  export const codec = (): Codec<Heartbeat> => {
    if (_codec == null) {
      _codec = message<Heartbeat>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.version != null && obj.version !== 0)) {
          w.uint32(8)
          w.uint32(obj.version)
        }

        if ((obj.peerId != null && obj.peerId.byteLength > 0)) {
          w.uint32(18)
          w.bytes(obj.peerId)
        }

        if ((obj.seq != null && obj.seq !== 0n)) {
          w.uint32(24)
          w.uint64(obj.seq)
        }

        if ((obj.timestampMs != null && obj.timestampMs !== 0n)) {
          w.uint32(32)
          w.uint64(obj.timestampMs)
        }

        if (obj.addrs != null) {
          for (const value of obj.addrs) {
            w.uint32(42)
            w.string(value)
          }
        }

        if ((obj.protocolVersion != null && obj.protocolVersion !== '')) {
          w.uint32(50)
          w.string(obj.protocolVersion)
        }

        if (obj.capabilities != null) {
          w.uint32(58)
          Capabilities.codec().encode(obj.capabilities, w)
        }

        if ((obj.leaving != null && obj.leaving !== false)) {
          w.uint32(64)
          w.bool(obj.leaving)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          version: 0,
          peerId: uint8ArrayAlloc(0),
          seq: 0n,
          timestampMs: 0n,
          addrs: [],
          protocolVersion: '',
          leaving: false
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
              obj.peerId = reader.bytes()
              break
            }
            case 3: {
              obj.seq = reader.uint64()
              break
            }
            case 4: {
              obj.timestampMs = reader.uint64()
              break
            }
            case 5: {
              if (opts.limits?.addrs != null && obj.addrs.length === opts.limits.addrs) {
                throw new MaxLengthError('Decode error - map field "addrs" had too many elements')
              }

              obj.addrs.push(reader.string())
              break
            }
            case 6: {
              obj.protocolVersion = reader.string()
              break
            }
            case 7: {
              obj.capabilities = Capabilities.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.capabilities
              })
              break
            }
            case 8: {
              obj.leaving = reader.bool()
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

  export const encode = (obj: Partial<Heartbeat>): Uint8Array => {
    return encodeMessage(obj, Heartbeat.codec())
  }

  export const decode = (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Heartbeat>): Heartbeat => {
    return decodeMessage(buf, Heartbeat.codec(), opts)
  }
}

export interface Capabilities {
  device: string
  trainThroughput: number
  maxExitDepth: number
  datasetSize: bigint
  loraRank: number
  features: string[]
}

export namespace Capabilities {
  let _codec: Codec<Capabilities>

  export const codec = (): Codec<Capabilities> => {
    if (_codec == null) {
      _codec = message<Capabilities>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.device != null && obj.device !== '')) {
          w.uint32(10)
          w.string(obj.device)
        }

        if ((obj.trainThroughput != null && obj.trainThroughput !== 0)) {
          w.uint32(17)
          w.double(obj.trainThroughput)
        }

        if ((obj.maxExitDepth != null && obj.maxExitDepth !== 0)) {
          w.uint32(24)
          w.uint32(obj.maxExitDepth)
        }

        if ((obj.datasetSize != null && obj.datasetSize !== 0n)) {
          w.uint32(32)
          w.uint64(obj.datasetSize)
        }

        if ((obj.loraRank != null && obj.loraRank !== 0)) {
          w.uint32(40)
          w.uint32(obj.loraRank)
        }

        if (obj.features != null) {
          for (const value of obj.features) {
            w.uint32(50)
            w.string(value)
          }
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          device: '',
          trainThroughput: 0,
          maxExitDepth: 0,
          datasetSize: 0n,
          loraRank: 0,
          features: []
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.device = reader.string()
              break
            }
            case 2: {
              obj.trainThroughput = reader.double()
              break
            }
            case 3: {
              obj.maxExitDepth = reader.uint32()
              break
            }
            case 4: {
              obj.datasetSize = reader.uint64()
              break
            }
            case 5: {
              obj.loraRank = reader.uint32()
              break
            }
            case 6: {
              if (opts.limits?.features != null && obj.features.length === opts.limits.features) {
                throw new MaxLengthError('Decode error - map field "features" had too many elements')
              }

              obj.features.push(reader.string())
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

  export const encode = (obj: Partial<Capabilities>): Uint8Array => {
    return encodeMessage(obj, Capabilities.codec())
  }

  export const decode = (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Capabilities>): Capabilities => {
    return decodeMessage(buf, Capabilities.codec(), opts)
  }
}
