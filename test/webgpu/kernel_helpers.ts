/**
 * Helpers of the WGSL kernel tests: seeded uniform inputs, one kernel run on buffers made from
 * arrays (every buffer read back), and a computation on the cpu backend for the reference.
 *   const [x, out] = await runKernel(code, [x0, out0], [groups, 1, 1]);
 *   const [want] = await onCpu(() => tf.add(a, b));
 */
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
