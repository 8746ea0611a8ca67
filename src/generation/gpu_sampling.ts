/**
 * The GPU sampler (ops/sample_webgpu) for generate and stream on the webgpu backend: each step's
 * logits tensor is sampled where it lives and only the ids come back (4 bytes per row). One per
 * generation; each input row keeps its seen-id bitmap (the prompt, then every pick) on the GPU.
 *   const gpu = GenerationGpuSampler.create(V, [{seed: 1, prompt: [2, 651]}], {temperature: 0.8});   // null: sample on the host
 *   const ids = await gpu!.pick(logits, [0], [0]);   // logits [b, V]; input row and step per row -> [b] ids, or null
 *   gpu!.dispose();
 *
 * Off with GRIFFIN_GPU_SAMPLING=0 (or gpuSamplingConfig.enabled = false): the host sampler then
 * reads the logits back, as on cpu and wasm. Shape letters: b rows of the logits, V vocabulary.
 */
import * as tf from '@tensorflow/tfjs';
import {GpuSampler, type RowSampling} from '../../ops/sample_webgpu';
import {flushTf, gpuBufferOf, webgpuBackend} from '../engines/webgpu_decode/tfjs_webgpu';
import type {SamplingOptions} from './sampling';

/** enabled: null = env GRIFFIN_GPU_SAMPLING (0/false/off: off; unset or anything else: on). */
export const gpuSamplingConfig: {enabled: boolean | null} = {enabled: null};

export function gpuSamplingEnabled(): boolean {
  if (gpuSamplingConfig.enabled != null) return gpuSamplingConfig.enabled;
  const v = typeof process !== 'undefined' ? process.env?.GRIFFIN_GPU_SAMPLING : undefined;
  return v == null || !['0', 'false', 'off'].includes(v.toLowerCase());
}

export class GenerationGpuSampler {
  private constructor(
    private readonly sampler: GpuSampler,
    private readonly seeds: number[],
    private readonly opts: SamplingOptions,
  ) {}

  /** A sampler for these input rows (their seeds and prompts), or null where the host must sample. */
  static create(
    V: number,
    rows: {seed: number; prompt: number[]}[],
    opts: SamplingOptions,
  ): GenerationGpuSampler | null {
    if (tf.getBackend() !== 'webgpu' || !gpuSamplingEnabled() || rows.length === 0) return null;
    const s = new GpuSampler(webgpuBackend().device, V, rows.length, rows.length);
    rows.forEach((r, i) => s.setSeen(i, r.prompt));
    return new GenerationGpuSampler(
      s,
      rows.map((r) => r.seed),
      opts,
    );
  }

  /**
   * The ids drawn from `logits` [b, V]: row k of it is input row rows[k] at its step steps[k]
   * (the Philox counter). Null when a row had nothing to draw (NaN logits): the host decides.
   */
  async pick(logits: tf.Tensor, rows: number[], steps: number[]): Promise<Int32Array | null> {
    const be = webgpuBackend();
    const buf = gpuBufferOf(be, logits);
    flushTf(be); // whatever tfjs encoded that writes the logits runs first
    const ids = await this.sampler.sample(
      buf,
      rows.map((row, k) => this.row(row, steps[k])),
    );
    return ids.every((id) => id >= 0) ? ids : null;
  }

  /** Builds the kernels the draws need, once: encode() then runs without waiting. */
  async prepare(): Promise<void> {
    await this.sampler.prepare([this.row(0, 0)]);
  }

  /**
   * Encodes the draw from `logits` (a GPU buffer of [b, V], written by commands submitted before
   * `enc`) for input rows `rows` at steps `steps`; returns the buffer that then holds the ids
   * (int32 [b] from byte 0), which stay on the GPU. A row with nothing to draw gets -1.
   */
  encode(enc: GPUCommandEncoder, logits: GPUBuffer, rows: number[], steps: number[]): GPUBuffer {
    return this.sampler.encode(
      enc,
      logits,
      rows.map((row, k) => this.row(row, steps[k])),
    );
  }

  private row(row: number, step: number): RowSampling {
    const o = this.opts;
    return {
      seenRow: row,
      seed: this.seeds[row],
      step,
      temperature: o.temperature ?? 0,
      topK: o.topK,
      topP: o.topP,
      minP: o.minP,
      repetitionPenalty: o.repetitionPenalty,
    };
  }

  dispose(): void {
    this.sampler.dispose();
  }
}
