/**
 * The prefill engine's tiled matmul (src/engines/webgpu_prefill/shaders/matmul.ts) alone on webgpu:
 * ms per product and TFLOP/s for the 2B shape's products at M token rows, per weight format and
 * tuning, with a spot check of two output rows against a float64 host product. Times are GPU
 * timestamps around a pass of `inner` dispatches where the device has 'timestamp-query', else wall
 * time to onSubmittedWorkDone. Prints a table, then JSON.
 *   npx tsx bench/prefill_matmul.ts --out bench/results/<date>-h200-prefill-matmul.json
 *   npx tsx bench/prefill_matmul.ts --sweep --m 2048 --formats float32 --out sweep.json
 *   VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json XDG_RUNTIME_DIR=/tmp npx tsx bench/prefill_matmul.ts --quick
 *
 * Options: --m 128,2048,8192 (token rows), --shapes dd,geglu,down,kv (N x K: 2560 x 2560 with the
 * norm fused; 7680 x 2560 GeGLU, gate and up, norm and bias; 2560 x 7680 residual with bias;
 * 256 x 2560 with the norm), --formats float32,bfloat16,int4 (also float16, int8, int4 is group
 * 64), --sweep (the tunings in SWEEP below, those the device can run) or --tunings
 * 'bm=64,bn=64;bm=128,tm=8;auto' (each as GRIFFIN_PREFILL_MM takes it; auto: matmulTuningFor's pick
 * for each M; default: the defaults and auto), --reps 5, --min-ms 20 (GPU
 * work per timed sample), --quick (M 16,100; N, K a tenth; 2 reps: a smoke run), --out FILE.
 * FLOPs counted: 2 M N K per weight matrix (GeGLU: two). A GeGLU whose bindings pass the device's
 * limit (compact weights with scales, norm and bias: 9 > 8) runs as gelu + mul, timed together ('split').
 */

import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import {dequantize, quantize} from '../ops/compact/format';
import {
  Args,
  describe,
  emit,
  fail,
  intArg,
  intList,
  parseArgs,
  printTable,
  setup,
  timedComputePass,
} from '../src/bench/common';
import {weightFormat} from '../src/engines/webgpu_decode/shaders/weights';
import {
  DEVICE_SUBGROUP,
  MATMUL_VARIANTS,
  type MatmulSpec,
  type MatmulTuning,
  matmulBindings,
  matmulGrid,
  matmulPartFloats,
  matmulReduceBindings,
  matmulReduceGrid,
  matmulReduceSource,
  matmulSharedBytes,
  matmulSource,
  matmulSplits,
  matmulSubgroupSize,
  matmulTuning,
  matmulTuningFor,
  parseMatmulTuning,
} from '../src/engines/webgpu_prefill/shaders/matmul';
import {tf} from '../src/tf';
import {Rng} from '../src/util/rng';

/** The tunings --sweep tries (the defaults first); sg: DEVICE_SUBGROUP is the device's size (skipped without one). */
const SWEEP: Partial<MatmulTuning>[] = [
  {},
  {prefetch: false},
  {group: 0},
  {buffers: 2},
  {spread: true},
  {unroll: true},
  MATMUL_VARIANTS.base,
  {...MATMUL_VARIANTS.base, buffers: 2},
  {bm: 128, bn: 64, bk: 32, tm: 8, tn: 4, spread: true, unroll: true},
  {bm: 128, bn: 64, bk: 8, tm: 8, tn: 4, buffers: 2, spread: true, unroll: true},
  {bm: 128, bn: 128, bk: 8, tm: 8, tn: 8, buffers: 2},
  MATMUL_VARIANTS.big,
  {...MATMUL_VARIANTS.big, bk: 16},
  MATMUL_VARIANTS.big16,
  {...MATMUL_VARIANTS.big16, group: 0},
  MATMUL_VARIANTS.wide,
  MATMUL_VARIANTS.tall,
  {bm: 64, bn: 64, bk: 16, tm: 8, tn: 8, spread: true, unroll: true},
  MATMUL_VARIANTS.small,
  {bm: 32, bn: 64, bk: 16, tm: 4, tn: 4, spread: true, unroll: true},
  {splitk: 2, spread: true, unroll: true},
  MATMUL_VARIANTS.split4,
  MATMUL_VARIANTS.split8,
  {...MATMUL_VARIANTS.big, splitk: 4},
  {...MATMUL_VARIANTS.small, splitk: 2},
  {...MATMUL_VARIANTS.small, splitk: 4},
  {sg: DEVICE_SUBGROUP},
  {...MATMUL_VARIANTS.base, sg: DEVICE_SUBGROUP},
  {...MATMUL_VARIANTS.base, buffers: 2, sg: DEVICE_SUBGROUP},
  {...MATMUL_VARIANTS.big, sg: DEVICE_SUBGROUP},
  {...MATMUL_VARIANTS.tall, sg: DEVICE_SUBGROUP},
  {...MATMUL_VARIANTS.split4, sg: DEVICE_SUBGROUP},
];

interface Shape {
  name: string;
  N: number;
  K: number;
  epilogue: MatmulSpec['epilogue'];
  norm: boolean;
  bias: boolean;
}

const SHAPES: Shape[] = [
  {name: 'dd', N: 2560, K: 2560, epilogue: 'store', norm: true, bias: false},
  {name: 'geglu', N: 7680, K: 2560, epilogue: 'geglu', norm: true, bias: true},
  {name: 'down', N: 2560, K: 7680, epilogue: 'residual', norm: false, bias: true},
  {name: 'kv', N: 256, K: 2560, epilogue: 'store', norm: true, bias: false},
];

const FORMATS: Record<string, ReturnType<typeof weightFormat>> = {
  float32: weightFormat({dtype: 'float32'}),
  bfloat16: weightFormat({dtype: 'bfloat16'}),
  float16: weightFormat({dtype: 'float16'}),
  int8: weightFormat({dtype: 'int8'}),
  int4: weightFormat({dtype: 'int4', groupSize: 64}),
};

const tuningText = (t: MatmulTuning) =>
  `${t.bm}x${t.bn}x${t.bk} ${t.tm}x${t.tn}${t.buffers === 2 ? ' db' : t.prefetch ? ' pf' : ''}${t.words ? ` w${t.words}` : ''}` +
  `${t.spread ? ' sp' : ''}${t.unroll ? ' un' : ''}${t.group !== 8 ? ` g${t.group}` : ''}${t.splitk > 1 ? ` k/${t.splitk}` : ''}${t.sg ? ` sg${t.sg}` : ''}${t.coalesce ? ' co' : ''}`;

/** A GPU buffer holding `data`. */
function upload(dev: GPUDevice, data: Float32Array | Uint32Array, extra = 0): GPUBuffer {
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST | extra;
  const buf = dev.createBuffer({size: Math.max(16, Math.ceil(data.byteLength / 16) * 16), usage});
  dev.queue.writeBuffer(buf, 0, data.buffer, data.byteOffset, data.byteLength);
  return buf;
}

async function readRows(dev: GPUDevice, buf: GPUBuffer, offsetFloats: number, n: number): Promise<Float32Array> {
  const read = dev.createBuffer({size: n * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST});
  const enc = dev.createCommandEncoder();
  enc.copyBufferToBuffer(buf, offsetFloats * 4, read, 0, n * 4);
  dev.queue.submit([enc.finish()]);
  await read.mapAsync(GPUMapMode.READ);
  const out = new Float32Array(read.getMappedRange().slice(0));
  read.unmap();
  read.destroy();
  return out;
}

const gelu = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));

async function main(args: Args): Promise<void> {
  const env = await setup('webgpu');
  const dev = (tf.backend() as unknown as WebGPUBackend).device;
  const quick = args.quick === 'true';
  const Ms = intList(args.m, quick ? [16, 100] : [128, 2048, 8192], 'm');
  const reps = intArg(args, 'reps', quick ? 2 : 5);
  const minMs = intArg(args, 'min-ms', quick ? 1 : 20);
  const shapeNames = (args.shapes ?? SHAPES.map((s) => s.name).join(',')).split(',');
  const formatNames = (args.formats ?? 'float32,bfloat16,int4').split(',');
  for (const s of shapeNames) if (!SHAPES.some((x) => x.name === s)) throw new Error(`unknown shape ${s}`);
  for (const f of formatNames) if (FORMATS[f] == null) throw new Error(`unknown format ${f}`);
  if (Math.max(...Ms) > 16384) throw new Error('--m: at most 16384 rows');
  const sgSize = matmulSubgroupSize(dev);
  const sweep = SWEEP.filter((t) => t.sg !== DEVICE_SUBGROUP || sgSize > 0).map((t) =>
    t.sg === DEVICE_SUBGROUP ? {...t, sg: sgSize} : t,
  );
  const tunings: (Partial<MatmulTuning> | 'auto')[] =
    args.tunings != null && args.tunings !== 'true'
      ? args.tunings.split(';').map((t) => (t === 'auto' ? 'auto' : parseMatmulTuning(t)))
      : args.sweep === 'true'
        ? [...sweep, 'auto']
        : [{}, 'auto'];
  const stamps = dev.features.has('timestamp-query');
  console.error(
    `prefill matmul: ${describe(env)}; timing: ${stamps ? 'GPU timestamps' : 'wall (onSubmittedWorkDone)'}; subgroup size for sg: ${sgSize || 'none'}`,
  );

  const rng = new Rng(1234);
  const randArray = (n: number, scale: number) => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = (2 * rng.next() - 1) * scale;
    return a;
  };
  const maxM = Math.max(...Ms);
  const rows: Record<string, unknown>[] = [];
  for (const shapeName of shapeNames) {
    const sh0 = SHAPES.find((s) => s.name === shapeName)!;
    const sh = quick ? {...sh0, N: Math.max(64, sh0.N / 10), K: Math.max(64, sh0.K / 10)} : sh0;
    const {N, K} = sh;
    const P = sh.epilogue === 'geglu' ? 2 : 1;
    const xHost = randArray(maxM * K, 1);
    const x = upload(dev, xHost);
    const g = upload(dev, randArray(K, 0.1));
    const bias = upload(dev, randArray(P * N, 0.1));
    const out = upload(dev, new Float32Array(maxM * N));
    const dims = upload(dev, new Uint32Array(4));
    const wHost = Array.from({length: P}, () => randArray(N * K, 1 / Math.sqrt(K)));
    for (const formatName of formatNames) {
      const weight = FORMATS[formatName];
      const spec: MatmulSpec = {
        N,
        K,
        weight,
        epilogue: sh.epilogue,
        bias: sh.bias,
        ...(sh.norm ? {norm: {eps: 1e-6}} : {}),
      };
      // Weights as the kernel reads them, and the values they stand for (the reference's).
      const bufs: Record<string, GPUBuffer> = {dims, x, g, bias, out};
      const vals: Float32Array[] = [];
      for (let p = 0; p < P; p++) {
        if (weight.dtype === 'float32') {
          bufs[`w${p}`] = upload(dev, wHost[p]);
          vals.push(wHost[p]);
        } else {
          const q = quantize(
            wHost[p],
            N,
            K,
            {
              dtype: weight.dtype,
              ...(weight.dtype === 'int4' ? {groupSize: weight.groupSize} : {}),
            },
            {plain: true},
          );
          bufs[`w${p}`] = upload(dev, new Uint32Array(q.data.buffer));
          if (q.scales) bufs[`s${p}`] = upload(dev, q.scales);
          vals.push(dequantize(q));
        }
      }
      const gHost = new Float32Array(await readRows(dev, g, 0, K));
      const biasHost = await readRows(dev, bias, 0, P * N);
      const limits = dev.limits;
      // GeGLU past the device's binding limit: gate with gelu, then up with mul (as the engine does then).
      const split = matmulBindings(spec).length > limits.maxStorageBuffersPerShaderStage;
      if (split) {
        bufs.bias0 = upload(dev, biasHost.subarray(0, N));
        bufs.bias1 = upload(dev, biasHost.subarray(N));
      }
      const parts: {spec: MatmulSpec; buf: (name: string) => GPUBuffer}[] = split
        ? [
            {spec: {...spec, epilogue: 'gelu'}, buf: (n) => bufs[n === 'bias' ? 'bias0' : n]},
            {
              spec: {...spec, epilogue: 'mul'},
              buf: (n) => bufs[n === 'bias' ? 'bias1' : n.replace(/^([wsz])0$/, '$11')],
            },
          ]
        : [{spec, buf: (n) => bufs[n]}];
      if (split) console.error(`  ${shapeName} ${formatName}: over the device's storage bindings, as gelu + mul`);
      type Made = {pipeline: GPUComputePipeline; bind: GPUBindGroup; gridOf: (M: number) => [number, number, number]};
      const made = new Map<string, Made[] | null>();
      const partBufs: GPUBuffer[] = [];
      const compileMs = new Map<string, number>();
      for (const tuningIn of tunings) {
        for (const M of Ms) {
          let tuning: MatmulTuning;
          try {
            tuning = matmulTuning(
              spec,
              tuningIn === 'auto' ? matmulTuningFor(spec, M, {subgroupSize: sgSize}) : tuningIn,
            );
          } catch (e) {
            console.error(`  skipped ${JSON.stringify(tuningIn)}: ${(e as Error).message}`);
            continue;
          }
          const key = JSON.stringify(tuning);
          if (
            tuningIn === 'auto' &&
            tunings.some((t) => t !== 'auto' && JSON.stringify(matmulTuning(spec, t)) === key)
          ) {
            continue; // timed already
          }
          const T = (tuning.bm / tuning.tm) * (tuning.bn / tuning.tn);
          if (
            matmulSharedBytes(spec, tuning) > limits.maxComputeWorkgroupStorageSize ||
            T > limits.maxComputeInvocationsPerWorkgroup
          ) {
            console.error(`  skipped ${tuningText(tuning)}: over the device's workgroup limits`);
            continue;
          }
          if (tuning.sg > 0 && tuning.sg !== sgSize) {
            console.error(`  skipped ${tuningText(tuning)}: the device's subgroups are not of ${tuning.sg}`);
            continue;
          }
          const splits = matmulSplits(spec, tuning);
          const partBytes = 4 * matmulPartFloats(spec, maxM, tuning);
          if (splits && partBytes > Math.min(limits.maxStorageBufferBindingSize, 2 ** 30)) {
            console.error(`  skipped ${tuningText(tuning)}: its partial sums need ${partBytes} bytes`);
            continue;
          }
          if (!made.has(key)) {
            const t0 = performance.now();
            const list = [];
            if (splits) {
              bufs.part = upload(dev, new Float32Array(partBytes / 4));
              partBufs.push(bufs.part);
            }
            for (const part of parts) {
              const passes: [string, string[], (M: number) => [number, number, number]][] = [
                [
                  matmulSource(part.spec, tuning),
                  matmulBindings(part.spec, tuning),
                  (m) => matmulGrid(spec, m, tuning),
                ],
              ];
              if (splits) {
                const maxX = limits.maxComputeWorkgroupsPerDimension;
                passes.push([
                  matmulReduceSource(part.spec, tuning),
                  matmulReduceBindings(part.spec),
                  (m) => matmulReduceGrid(part.spec, m, maxX),
                ]);
              }
              for (const [code, names, gridOf] of passes) {
                const pipeline = await dev.createComputePipelineAsync({
                  layout: 'auto',
                  compute: {module: dev.createShaderModule({code}), entryPoint: 'main'},
                });
                const bind = dev.createBindGroup({
                  layout: pipeline.getBindGroupLayout(0),
                  entries: names.map((n, i) => ({binding: i, resource: {buffer: part.buf(n)}})),
                });
                list.push({pipeline, bind, gridOf});
              }
            }
            made.set(key, list);
            compileMs.set(key, Math.round(performance.now() - t0));
          }
          const kernels = made.get(key)!;
          dev.queue.writeBuffer(dims, 0, Uint32Array.of(M, M, 0, 0));
          const grid = matmulGrid(spec, M, tuning);
          const grids = kernels.map((k) => k.gridOf(M));
          const sample = async (inner: number): Promise<number> =>
            (await timedComputePass(dev, stamps, (pass) => {
              for (let i = 0; i < inner; i++) {
                kernels.forEach((k, j) => {
                  pass.setPipeline(k.pipeline);
                  pass.setBindGroup(0, k.bind);
                  pass.dispatchWorkgroups(...grids[j]);
                });
              }
            })) / inner;
          // Spot check: rows 0 and M - 1 of a fresh output against float64.
          dev.queue.writeBuffer(out, 0, new Float32Array(maxM * N));
          await sample(1);
          let num = 0,
            den = 0;
          for (const m of M > 1 ? [0, M - 1] : [0]) {
            const got = await readRows(dev, out, m * N, N);
            const xr = xHost.subarray(m * K, (m + 1) * K);
            let rs = 1;
            if (sh.norm) rs = 1 / Math.sqrt(xr.reduce((s, v) => s + v * v, 0) / K + 1e-6);
            const xn = Float64Array.from(xr, (v, k) => (sh.norm ? v * rs * (1 + gHost[k]) : v));
            for (let n = 0; n < N; n++) {
              const v = [0, 0];
              for (let p = 0; p < P; p++) {
                let s = 0;
                const w = vals[p];
                for (let k = 0; k < K; k++) s += xn[k] * w[n * K + k];
                v[p] = s + (sh.bias ? biasHost[p * N + n] : 0);
              }
              const want = sh.epilogue === 'geglu' ? gelu(v[0]) * v[1] : v[0];
              num += (got[n] - want) ** 2;
              den += want ** 2;
            }
          }
          const relErr = Math.sqrt(num / Math.max(den, 1e-30));
          // Dispatches per sample for about minMs of GPU work, then the median of reps samples.
          const one = await sample(1);
          const inner = Math.max(1, Math.min(200, Math.ceil(minMs / Math.max(one, 1e-3))));
          const times: number[] = [];
          for (let r = 0; r < reps; r++) times.push(await sample(inner));
          times.sort((a, b) => a - b);
          const ms = times[Math.floor(times.length / 2)];
          const flop = 2 * M * N * K * P;
          const row = {
            shape: shapeName,
            M,
            N,
            K,
            epilogue: sh.epilogue,
            format: formatName,
            tuning: `${tuningText(tuning)}${tuningIn === 'auto' ? ' (auto)' : ''}${split ? ' split' : ''}`,
            ms: +ms.toFixed(4),
            minMs: +times[0].toFixed(4),
            TFLOPs: +(flop / ms / 1e9).toPrecision(3),
            relErr: +relErr.toExponential(2),
            compileMs: compileMs.get(key),
            inner,
            grid: grid.join('x'),
            tuningFull: tuning,
          };
          rows.push(row);
          console.error(
            `  ${shapeName} M=${M} ${formatName} ${row.tuning}: ${row.ms} ms, ${row.TFLOPs} TFLOP/s, relErr ${row.relErr}`,
          );
        }
      }
      for (const k of Object.keys(bufs)) if (/^([wsz]|bias)\d$/.test(k)) bufs[k].destroy();
      for (const b of partBufs) b.destroy();
    }
    [x, g, bias, out, dims].forEach((b) => b.destroy());
  }
  console.log(`prefill matmul on ${describe(env)}; ${stamps ? 'GPU timestamps' : 'wall time'}, median of ${reps}`);
  printTable(rows, ['shape', 'M', 'N', 'K', 'format', 'tuning', 'ms', 'TFLOPs', 'relErr']);
  const best: Record<string, unknown>[] = [];
  if (tunings.length > 1) {
    const groups = new Map<string, Record<string, unknown>[]>();
    for (const r of rows) {
      const key = `${r.shape} ${r.M} ${r.format}`;
      groups.set(key, [...(groups.get(key) ?? []), r]);
    }
    for (const rs of groups.values()) best.push(rs.reduce((a, b) => ((a.ms as number) <= (b.ms as number) ? a : b)));
    console.log('\nfastest tuning per shape, M and format:');
    printTable(best, ['shape', 'M', 'format', 'tuning', 'ms', 'TFLOPs']);
  }
  emit(
    {
      bench: 'prefill-matmul',
      environment: env,
      options: {
        Ms,
        shapes: shapeNames,
        formats: formatNames,
        reps,
        minMs,
        quick,
        timing: stamps ? 'timestamps' : 'wall',
      },
      rows,
      ...(best.length > 0 ? {best} : {}),
    },
    args.out,
  );
}

main(parseArgs(process.argv.slice(2))).catch((e) => fail('bench/prefill_matmul', e));
