/**
 * What WGSL arithmetic reaches on this device, without the matmul's memory traffic: TFLOP/s of
 * (a) independent vec4 fma chains from registers, and (b) the prefill matmul's inner loop fed from
 * workgroup memory (a thread's TM x TN outputs, TM / 4 x vec4s and P x TN / 4 weight vec4s read
 * per k, as webgpu_prefill/shaders/matmul.ts does; no global loads, no barriers in the loop). The
 * ceiling the matmul's ~31 TFLOP/s is judged against (bench/results/NOTES.md). GPU timestamps.
 *   npx tsx bench/fma_peak.ts --out bench/results/<date>-h200-fma-peak.json
 *   VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json XDG_RUNTIME_DIR=/tmp npx tsx bench/fma_peak.ts --quick
 *
 * Options: --workgroups N (default 1056: 8 per SM of an H200), --reps 5, --quick (tiny loops: a
 * smoke run), --out FILE. Each kernel writes its sums, so the compiler cannot drop the arithmetic.
 * Letters: T threads per workgroup, C chains, TM x TN outputs per thread, P weight matrices.
 */

import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import {Args, describe, emit, fail, intArg, parseArgs, printTable, setup, timedComputePass} from '../src/bench/common';
import {tf} from '../src/tf';

interface Kernel {
  name: string;
  code: string;
  /** FLOPs per thread per loop iteration. */
  flopsPerIter: number;
  iters: number;
  threads: number;
}

/** C independent vec4 chains, `iters` loop iterations. */
function chains(C: number, T: number, iters: number): Kernel {
  const init = Array.from({length: C}, (_, c) => `var a${c} = vec4<f32>(f32(t + ${c}u) * 1e-7);`).join('\n  ');
  const body = Array.from({length: C}, (_, c) => `a${c} = fma(a${c}, m, d);`).join(' ');
  const sum = Array.from({length: C}, (_, c) => `a${c}`).join(' + ');
  return {
    name: `fma chains C=${C} T=${T}`,
    threads: T,
    iters,
    flopsPerIter: C * 8,
    code: `@group(0) @binding(0) var<storage, read_write> buf : array<vec4<f32>>;
@compute @workgroup_size(${T})
fn main(@builtin(global_invocation_id) gid : vec3<u32>, @builtin(local_invocation_index) t : u32) {
  let m = buf[0]; let d = buf[1];
  ${init}
  for (var i = 0u; i < ${iters}u; i = i + 1u) { ${body} }
  buf[2u + gid.x] = ${sum};
}`,
  };
}

/** The matmul's inner loop from workgroup memory: TM x TN per thread (P weights), BK k per tile, `iters` tiles. */
function ldsLoop(TM: number, TN: number, P: number, T: number, iters: number, unroll: boolean): Kernel {
  const BK = 16;
  const TX = 16; // threads along n (BN = TX * TN)
  const TY = T / TX;
  const BM4 = (TY * TM) / 4,
    BN4 = (TX * TN) / 4;
  const regs: string[] = [];
  for (let p = 0; p < P; p++)
    for (let i = 0; i < TM; i++) for (let r = 0; r < TN / 4; r++) regs.push(`var c${p}_${i}_${r} = vec4<f32>(0.0);`);
  const step = (kk: string) => {
    const L: string[] = [];
    for (let q = 0; q < TM / 4; q++) L.push(`let a${q} = xs[${kk} * ${BM4}u + ty * ${TM / 4}u + ${q}u];`);
    for (let p = 0; p < P; p++)
      for (let r = 0; r < TN / 4; r++) L.push(`let b${p}_${r} = ws${p}[${kk} * ${BN4}u + tx * ${TN / 4}u + ${r}u];`);
    for (let p = 0; p < P; p++)
      for (let i = 0; i < TM; i++)
        for (let r = 0; r < TN / 4; r++)
          L.push(`c${p}_${i}_${r} = fma(vec4<f32>(a${i >> 2}[${i & 3}]), b${p}_${r}, c${p}_${i}_${r});`);
    return L.join(' ');
  };
  const inner = unroll
    ? Array.from({length: BK}, (_, kk) => `{ ${step(`${kk}u`)} }`).join('\n    ')
    : `for (var kk = 0u; kk < ${BK}u; kk = kk + 1u) { ${step('kk')} }`;
  const ws = Array.from({length: P}, (_, p) => `var<workgroup> ws${p} : array<vec4<f32>, ${BK * BN4}>;`).join('\n');
  const fill = Array.from({length: P}, (_, p) => `ws${p}[j % ${BK * BN4}u] = buf[j % 64u] * ${p + 1}.0;`).join(' ');
  const sum = regs.map((r) => r.split(' ')[1]).join(' + ');
  return {
    name: `lds ${TM}x${TN}${P > 1 ? ` x${P}` : ''} T=${T}${unroll ? ' un' : ''}`,
    threads: T,
    iters,
    flopsPerIter: BK * TM * TN * P * 2,
    code: `@group(0) @binding(0) var<storage, read_write> buf : array<vec4<f32>>;
var<workgroup> xs : array<vec4<f32>, ${BK * BM4}>;
${ws}
@compute @workgroup_size(${T})
fn main(@builtin(global_invocation_id) gid : vec3<u32>, @builtin(local_invocation_index) t : u32) {
  for (var j = t; j < ${Math.max(BK * BM4, BK * BN4)}u; j = j + ${T}u) { xs[j % ${BK * BM4}u] = buf[(j + 7u) % 64u]; ${fill} }
  workgroupBarrier();
  let tx = t % ${TX}u; let ty = t / ${TX}u;
  ${regs.join('\n  ')}
  for (var it = 0u; it < ${iters}u; it = it + 1u) {
    ${inner}
  }
  buf[64u + gid.x] = ${sum};
}`,
  };
}

async function main(args: Args): Promise<void> {
  const env = await setup('webgpu');
  const dev = (tf.backend() as unknown as WebGPUBackend).device;
  const quick = args.quick === 'true';
  const WG = intArg(args, 'workgroups', quick ? 8 : 1056);
  const reps = intArg(args, 'reps', quick ? 1 : 5);
  if (WG < 1 || WG > 65535) throw new Error(`--workgroups must be in [1, 65535], got ${WG}`);
  if (reps < 1 || reps > 100) throw new Error(`--reps must be in [1, 100], got ${reps}`);
  const stamps = dev.features.has('timestamp-query');
  const it = (n: number) => (quick ? 2 : n);
  const kernels: Kernel[] = [
    chains(8, 256, it(4096)),
    chains(16, 256, it(2048)),
    chains(16, 128, it(2048)),
    ldsLoop(8, 4, 1, 256, it(256), false),
    ldsLoop(8, 4, 1, 256, it(256), true),
    ldsLoop(8, 4, 2, 256, it(128), false),
    ldsLoop(8, 8, 1, 256, it(128), true),
    ldsLoop(4, 4, 1, 256, it(256), true),
  ];
  const buf = dev.createBuffer({
    size: (64 + WG * 256) * 16,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
  });
  dev.queue.writeBuffer(
    buf,
    0,
    Float32Array.from({length: 256}, (_, i) => 1 + (i % 7) * 1e-3),
  );
  const rows: Record<string, unknown>[] = [];
  for (const k of kernels) {
    dev.pushErrorScope('validation');
    const pipeline = dev.createComputePipeline({
      layout: 'auto',
      compute: {module: dev.createShaderModule({code: k.code}), entryPoint: 'main'},
    });
    const err = await dev.popErrorScope();
    if (err) throw new Error(`${k.name}: ${err.message}`);
    const bind = dev.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [{binding: 0, resource: {buffer: buf}}],
    });
    const times: number[] = [];
    for (let r = 0; r < reps + 1; r++) {
      const ms = await timedComputePass(dev, stamps, (pass) => {
        pass.setPipeline(pipeline);
        pass.setBindGroup(0, bind);
        pass.dispatchWorkgroups(WG);
      });
      if (r > 0) times.push(ms); // the first run warms the pipeline
    }
    times.sort((a, b) => a - b);
    const ms = times[Math.floor(times.length / 2)];
    const flops = k.flopsPerIter * k.iters * k.threads * WG;
    const row = {kernel: k.name, ms: +ms.toFixed(4), TFLOPs: +(flops / ms / 1e9).toFixed(1)};
    console.error(`  ${row.kernel}: ${row.ms} ms, ${row.TFLOPs} TFLOP/s`);
    rows.push(row);
  }
  buf.destroy();
  console.log(`fma peak on ${describe(env)}; ${stamps ? 'GPU timestamps' : 'wall time'}, median of ${reps}`);
  printTable(rows, ['kernel', 'ms', 'TFLOPs']);
  emit({bench: 'fma-peak', environment: env, options: {workgroups: WG, reps, quick}, rows}, args.out);
}

main(parseArgs(process.argv.slice(2))).catch((e) => fail('bench/fma_peak', e));
