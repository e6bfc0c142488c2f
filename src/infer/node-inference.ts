/**
 * What a running node owns for deploy-time inference: the anytime model (calibrated at start), the
 * collaborative-prediction service on the mesh, and optionally the HTTP endpoint.
 */
import { z } from 'zod';
import type { Mesh } from '../mesh/mesh.ts';
import type { Logger } from '../util/log.ts';
import type { AnytimeModel } from './anytime.ts';
import type { Prototypes } from '../model/model-checkpoint.ts';
import type { Weights } from '../model/vit.ts';
import { DEFAULT_HTTP_HOST, startPredictServer, type PredictServer } from './http.ts';
import { openModel } from './load.ts';
import { InferService } from './service.ts';

/** The `infer` section of a node config. */
export const InferConfigSchema = z
  .object({
    /** Model checkpoint to serve (src/model/model-checkpoint.ts). */
    checkpoint: z.string().min(1),
    /** Deepest exit this node runs (default all): a weak node serves early exits only. */
    maxExits: z.number().int().min(1).max(64).optional(),
    /** Port of the HTTP endpoint (absent: no HTTP endpoint; 0: any free port). */
    httpPort: z.number().int().min(0).max(65535).optional(),
    /** Host of the HTTP endpoint (default 127.0.0.1: loopback only). */
    httpHost: z.string().min(1).max(255).default(DEFAULT_HTTP_HOST),
    /** onnxruntime threads. */
    threads: z.number().int().min(1).max(256).optional(),
  })
  .strict();
/** A validated `infer` config section. */
export type InferConfig = z.output<typeof InferConfigSchema>;

/** Inference attached to a node: model, mesh service, HTTP endpoint. */
export class NodeInference {
  readonly model: AnytimeModel;
  readonly service: InferService;
  http: PredictServer | null = null;

  private constructor(model: AnytimeModel, service: InferService, private readonly cfg: InferConfig, private readonly log: Logger | undefined) {
    this.model = model;
    this.service = service;
  }

  /** Load and calibrate the model and register the infer protocol on `mesh` (before or after it starts). */
  static async create(mesh: Mesh, cfg: InferConfig, log?: Logger): Promise<NodeInference> {
    const c = InferConfigSchema.parse(cfg);
    const model = await openModel(c.checkpoint, { maxExits: c.maxExits, threads: c.threads });
    log?.info({ version: model.version, exits: model.exits, latencyMsBatch1: model.latency?.batch1 }, 'inference model loaded');
    return new NodeInference(model, new InferService({ mesh, model, logger: log }), c, log);
  }

  /** Advertise the model in capabilities and start the HTTP endpoint when configured. */
  async start(): Promise<void> {
    await this.service.start();
    if (this.cfg.httpPort !== undefined) {
      this.http = await startPredictServer({ model: this.model, service: this.service, host: this.cfg.httpHost, port: this.cfg.httpPort, logger: this.log });
      this.log?.info({ url: this.http.url }, 'prediction endpoint listening');
    }
  }

  /**
   * Serve a new global model (e.g. after a federation round): trainable tensors by model name, its version,
   * and optionally new prototypes. Sessions are reused; shapes are checked.
   */
  updateModel(weights: Weights, version: string, prototypes?: Prototypes | null): void {
    this.model.setWeights(weights, version);
    if (prototypes !== undefined) this.model.setPrototypes(prototypes);
    this.log?.info({ version }, 'serving a new model version');
  }

  /** Stop the HTTP endpoint and the service, release the model. */
  async stop(): Promise<void> {
    await this.http?.close();
    this.http = null;
    await this.service.stop();
    await this.model.release();
  }
}
