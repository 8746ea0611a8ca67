/// <reference types="@webgpu/types" />
/**
 * The row argmax in plain WebGPU, over a GPUBuffer that is no tfjs tensor (the fused decode
 * engine's logits): encoded into the caller's command encoder, the ids left in a GPU buffer, so
 * that they can feed the next step without coming back to the host. Same WGSL as the tfjs kernel
 * (wgsl.ts): the first index of the maximum, NaN never wins, -1 for a row of NaN.
 *   const am = new RowArgmaxRunner(backend.device, V, 8);                  // rows of V floats, up to 8 rows a call
 *   const encodeArgmax = (enc: GPUCommandEncoder, x: GPUBuffer) => am.encode(enc, x, 2);   // -> int32 [2] at byte 0 of the returned buffer
 *
 * Shape letters: b rows of a call, n (V) values per row.
 */
import {ARGMAX_THREADS, rowArgmaxWgsl} from './wgsl';

const pipelines = new WeakMap<GPUDevice, Map<number, GPUComputePipeline>>();
/** Bind groups kept for long-lived source buffers (the engine's logits, reused every step). */
const MAX_BIND_GROUPS = 4;

export class RowArgmaxRunner {
  /** int32 [maxRows]: the last call's ids. */
  readonly out: GPUBuffer;
  private readonly pipeline: GPUComputePipeline;
  private readonly binds = new Map<GPUBuffer, GPUBindGroup>();
  private disposed = false;

  constructor(
    readonly device: GPUDevice,
    readonly n: number,
    readonly maxRows: number,
  ) {
    if (!(Number.isInteger(n) && n >= 1 && Number.isInteger(maxRows) && maxRows >= 1))
      throw new Error(`RowArgmaxRunner: row length ${n} and rows ${maxRows} must be integers >= 1`);
    let cache = pipelines.get(device);
    if (cache == null) pipelines.set(device, (cache = new Map()));
    let p = cache.get(n);
    if (p == null) {
      const {decls, body} = rowArgmaxWgsl('x', 'out', `${n}`, 'i32(wg.x)', 'i32(lid.x)');
      const code = `
      @group(0) @binding(0) var<storage, read> x : array<f32>;
      @group(0) @binding(1) var<storage, read_write> out : array<i32>;
      ${decls}
      @compute @workgroup_size(${ARGMAX_THREADS})
      fn main(@builtin(workgroup_id) wg : vec3<u32>, @builtin(local_invocation_id) lid : vec3<u32>) {${body}
      }`;
      p = device.createComputePipeline({
        layout: 'auto',
        compute: {module: device.createShaderModule({code, label: 'row argmax'}), entryPoint: 'main'},
        label: 'row argmax',
      });
      cache.set(n, p);
    }
    this.pipeline = p;
    this.out = device.createBuffer({
      size: Math.ceil((maxRows * 4) / 16) * 16,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
      label: 'row argmax ids',
    });
  }

  /**
   * Encodes the argmax of rows 0..b-1 of `x` (b * n float32 from byte 0); returns `out`. keep:
   * `x` lives on (its bind group is kept for the next call); a tfjs tensor's pooled buffer does not.
   */
  encode(enc: GPUCommandEncoder, x: GPUBuffer, b: number, keep = false): GPUBuffer {
    if (this.disposed) throw new Error('RowArgmaxRunner: disposed');
    if (!(Number.isInteger(b) && b >= 1 && b <= this.maxRows))
      throw new RangeError(`RowArgmaxRunner: ${b} rows, made for 1..${this.maxRows}`);
    let bind = this.binds.get(x);
    if (bind == null) {
      bind = this.device.createBindGroup({
        layout: this.pipeline.getBindGroupLayout(0),
        entries: [
          {binding: 0, resource: {buffer: x}},
          {binding: 1, resource: {buffer: this.out}},
        ],
      });
      if (keep) {
        if (this.binds.size >= MAX_BIND_GROUPS) this.binds.clear();
        this.binds.set(x, bind);
      }
    }
    const pass = enc.beginComputePass();
    pass.setPipeline(this.pipeline);
    pass.setBindGroup(0, bind);
    pass.dispatchWorkgroups(b);
    pass.end();
    return this.out;
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.binds.clear();
    this.out.destroy();
  }
}
