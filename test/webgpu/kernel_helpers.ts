/**
 * Helpers of the WGSL kernel tests: seeded uniform inputs, one kernel run on buffers made from
 * arrays (every buffer read back), a computation on the cpu backend for the reference, and the
 * fused decode GEMV's reference built from the project's ops.
 *   const [x, out] = await runKernel(code, [x0, out0], [groups, 1, 1]);
 *   const [want] = await onCpu(() => tf.add(a, b));
 *   const want = await gemvReference(spec, {x, g, ws, bias, out0});
 *   const m = packedMatrix(w, rows, cols, {dtype: 'int8'});   // m.words, m.scales, m.zeros; m.values unpacked
 *   const buffers = gemvBindings(spec).map((k) => gemvInputs({x, g, bias, out: out0}, [m])[k]);
 */
import {geluTanh, softCap} from '../../ops/activations';
import {type CompactSpec, dequantize, quantize} from '../../ops/compact/format';
import {linear} from '../../ops/linear';
import {rmsNorm} from '../../ops/norm';
import {type GemvSpec, gemvRows} from '../../src/engines/webgpu_decode/shaders';
import {tf} from '../../src/tf';
import {seededUniform} from '../helpers';

const device = () => (tf.backend() as unknown as {device: GPUDevice}).device;

export function uniform(seed: number, n: number, lo = -1, hi = 1): Float32Array {
  const r = seededUniform(seed);
  return Float32Array.from({length: n}, () => lo + (hi - lo) * r());
}

/** Runs one WGSL kernel on buffers made from `inputs`; returns the final contents of every buffer. */
export async function runKernel(
  code: string,
  inputs: (Float32Array | Uint32Array)[],
  grid: [number, number, number],
): Promise<Float32Array[]> {
  const dev = device();
  dev.pushErrorScope('validation');
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
  const bufs = inputs.map((a) => {
    const b = dev.createBuffer({size: Math.max(16, Math.ceil(a.byteLength / 16) * 16), usage, mappedAtCreation: true});
    new Uint8Array(b.getMappedRange()).set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
    b.unmap();
    return b;
  });
  const pipeline = dev.createComputePipeline({
    layout: 'auto',
    compute: {module: dev.createShaderModule({code}), entryPoint: 'main'},
  });
  const bind = dev.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: bufs.map((buffer, i) => ({binding: i, resource: {buffer}})),
  });
  const enc = dev.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bind);
  pass.dispatchWorkgroups(...grid);
  pass.end();
  const reads = bufs.map((b) => {
    const r = dev.createBuffer({size: b.size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST});
    enc.copyBufferToBuffer(b, 0, r, 0, b.size);
    return r;
  });
  dev.queue.submit([enc.finish()]);
  const err = await dev.popErrorScope();
  if (err) throw new Error(`WebGPU: ${err.message}`);
  const out = await Promise.all(
    reads.map(async (r, i) => {
      await r.mapAsync(GPUMapMode.READ);
      const a = new Float32Array(r.getMappedRange().slice(0, inputs[i].byteLength));
      r.unmap();
      r.destroy();
      return a;
    }),
  );
  bufs.forEach((b) => b.destroy());
  return out;
}

/** f(tf) on the cpu backend, values read back. */
export async function onCpu(f: () => tf.Tensor | tf.Tensor[]): Promise<Float32Array[]> {
  const prev = tf.getBackend();
  await tf.setBackend('cpu');
  try {
    const r = tf.tidy(f);
    const list = Array.isArray(r) ? r : [r];
    const out = list.map((t) => t.dataSync() as Float32Array).map((a) => Float32Array.from(a));
    tf.dispose(list);
    return out;
  } finally {
    await tf.setBackend(prev);
  }
}

/**
 * What the GEMV kernel (src/engines/webgpu_decode/shaders/gemv.ts) leaves in its out buffer, on
 * the cpu backend from the project's ops: x [B, IN], normed by g when spec.norm, times each
 * segment's float matrix ws[i] [n_i, IN] with its slice of bias (none for softcap); then per mode:
 * the segments side by side (gelu where spec.gelu says), added to or multiplied into out0
 * [B, outStride] (residual, mul), gelu(gate) * up (geglu), or soft-capped into columns
 * [outOffset, outOffset + rows) of out0 with the rest untouched (softcap).
 */
export async function gemvReference(
  spec: GemvSpec,
  a: {x: Float32Array; g: Float32Array; ws: Float32Array[]; bias: Float32Array; out0: Float32Array},
): Promise<Float32Array> {
  const {B, IN, segments, mode, outStride} = spec;
  const rows = gemvRows(spec);
  const [want] = await onCpu(() => {
    const xt = tf.tensor2d(a.x, [B, IN]);
    const xn = spec.norm ? rmsNorm(xt, tf.tensor1d(a.g), spec.eps ?? 1e-6) : xt;
    const lin = (i: number, b: Float32Array | null) =>
      linear(xn, tf.tensor2d(a.ws[i], [segments[i], IN]), b ? tf.tensor1d(b) : null);
    if (mode === 'geglu') return tf.mul(geluTanh(lin(0, a.bias.slice(0, rows))), lin(1, a.bias.slice(rows)));
    const o = tf.tensor2d(a.out0, [B, outStride]);
    if (mode === 'softcap') {
      const at = spec.outOffset ?? 0;
      const y = softCap(lin(0, null), spec.cap as number);
      return tf.concat([tf.slice(o, [0, 0], [B, at]), y, tf.slice(o, [0, at + rows], [B, outStride - at - rows])], 1);
    }
    let off = 0;
    const parts = segments.map((n, i) => {
      const p = lin(i, a.bias.slice(off, off + n));
      off += n;
      return spec.gelu?.[i] ? geluTanh(p) : p;
    });
    const y = parts.length > 1 ? tf.concat(parts, 1) : parts[0];
    if (mode === 'residual') return tf.add(y, o);
    if (mode === 'mul') return tf.mul(y, o);
    return y;
  });
  return want;
}

/** A weight matrix as the kernels bind it (words, then scales and zero points) and the values it holds; spec null: float32. */
export function packedMatrix(w: Float32Array, rows: number, cols: number, spec: CompactSpec | null) {
  if (spec == null) return {words: w, scales: undefined, zeros: undefined, values: w};
  const p = quantize(w, rows, cols, spec);
  return {
    words: new Uint32Array(p.data.buffer, p.data.byteOffset, p.data.length),
    scales: p.scales,
    zeros: p.zeros,
    values: dequantize(p),
  };
}

/** The GEMV's buffers by binding name: `base` (x, g, bias, out) and w{i}, s{i}, z{i} of each matrix. */
export function gemvInputs(
  base: Record<string, Float32Array>,
  mats: ReturnType<typeof packedMatrix>[],
): Record<string, Float32Array | Uint32Array> {
  const inputs: Record<string, Float32Array | Uint32Array> = {...base};
  mats.forEach((m, i) => {
    inputs[`w${i}`] = m.words;
    if (m.scales) inputs[`s${i}`] = m.scales;
    if (m.zeros) inputs[`z${i}`] = m.zeros;
  });
  return inputs;
}
