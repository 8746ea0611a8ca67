/**
 * Where the time of reading a result back goes on webgpu (Dawn in Node): raw mapAsync of a
 * staging buffer (4 B, 4 KB, 1 MB) after a copy, and tfjs's tensor.data() of 1 and 256,000
 * floats. Median and min latency in ms over --reps.
 *   node dist/bench/readback.js [--reps 50]
 */

import {useBackend} from '../src/backend';
import {tf} from '../src/tf';

function stats(xs: number[]) {
  const s = [...xs].sort((a, b) => a - b);
  return {median: +s[Math.floor(s.length / 2)].toFixed(3), min: +s[0].toFixed(3), max: +s[s.length - 1].toFixed(3)};
}

(async () => {
  const i = process.argv.indexOf('--reps');
  const reps = i > 0 ? Number(process.argv[i + 1]) : 50;
  await useBackend('webgpu');
  const device = (tf.backend() as unknown as {device: GPUDevice}).device;
  const out: Record<string, unknown> = {};
  for (const bytes of [4, 4096, 1 << 20]) {
    const src = device.createBuffer({
      size: bytes,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
    });
    const dst = device.createBuffer({size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST});
    const t: number[] = [],
      tDone: number[] = [];
    for (let r = 0; r < reps + 3; r++) {
      const t0 = performance.now();
      const enc = device.createCommandEncoder();
      enc.copyBufferToBuffer(src, 0, dst, 0, bytes);
      device.queue.submit([enc.finish()]);
      await dst.mapAsync(GPUMapMode.READ);
      new Float32Array(dst.getMappedRange().slice(0));
      dst.unmap();
      const t1 = performance.now();
      await device.queue.onSubmittedWorkDone();
      const t2 = performance.now();
      if (r >= 3) {
        t.push(t1 - t0);
        tDone.push(t2 - t1);
      }
    }
    out[`raw copy+mapAsync ${bytes} B`] = stats(t);
    out[`onSubmittedWorkDone after, ${bytes} B`] = stats(tDone);
    src.destroy();
    dst.destroy();
  }
  for (const n of [1, 256000]) {
    const a = tf.randomNormal([n]);
    const t: number[] = [];
    for (let r = 0; r < reps + 3; r++) {
      const t0 = performance.now();
      const b = tf.add(a, 1);
      await b.data();
      b.dispose();
      if (r >= 3) t.push(performance.now() - t0);
    }
    out[`tfjs add + data() ${n} floats`] = stats(t);
    const ta: number[] = [];
    for (let r = 0; r < reps + 3; r++) {
      const t0 = performance.now();
      const b = tf.argMax(tf.add(a, 1));
      await b.data();
      b.dispose();
      if (r >= 3) ta.push(performance.now() - t0);
    }
    out[`tfjs add + argMax + data() ${n} floats`] = stats(ta);
    a.dispose();
  }
  // Idle wait: how long until a promise of nothing resolves through setImmediate / setTimeout(0).
  const si: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    await new Promise((res) => setImmediate(res));
    si.push(performance.now() - t0);
  }
  out.setImmediate = stats(si);
  console.log(JSON.stringify(out, null, 1));
})().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
