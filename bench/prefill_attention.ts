/**
 * The prefill engine's chunk attention kernels alone (src/engines/webgpu_prefill/shaders: RoPE,
 * attention, ring write) at RecurrentGemma-2B's attention shape (H 10, K 1, hd 256, rotary 128,
 * W 2048): GPU time per kernel (timestamps where the adapter has 'timestamp-query', else the
 * wall time of a submit, all three kernels together) and the attention's effective TFLOP/s.
 *   npx tsx bench/prefill_attention.ts --out bench/results/2026-01-01-h200-prefill-attention.json
 *   npx tsx bench/prefill_attention.ts --quick        # SwiftShader-sized smoke run (W 32, t 16 and 64)
 *   npx tsx bench/prefill_attention.ts --t 2048 --ring full --tuning QT=8,RM=5,DC=32
 *
 * Options: --t 128,2048,8192 (tokens per batch row in the chunk), --b 1 (batch rows), --ring
 * fresh,full (fresh: positions from 0, every ring slot invalid; full: positions from W + 100, the
 * ring holding a whole window), --w 2048 (window), --reps 10 (timed runs, median), --tuning
 * "QT=..,RM=..,TC=..,CM=..,DC=..,KV=.." (any subset; default: attnTuning for the device's limits),
 * --quick, --out FILE.
 *
 * FLOPs counted: 4 hd per (query head, visible key) pair (q.k and p v, a multiply and an add
 * each); a query at step i sees min(i, W) + 1 keys on a fresh ring, W + 1 on a full one. The
 * kernel visits up to a tile more (masked); "effective" counts only the visible ones.
 */

import {Args, describe, emit, fail, intArg, intList, parseArgs, printTable, setup} from '../src/bench/common';
import {
  type AttnTuning,
  attnBindings,
  attnGrid,
  attnSource,
  attnTuning,
  type ChunkAttnSpec,
} from '../src/engines/webgpu_prefill/shaders/attention';
import {ringWriteBindings, ringWriteGrid, ringWriteSource} from '../src/engines/webgpu_prefill/shaders/ring_write';
import {ropeBindings, ropeGrid, ropeInvFreq, ropeSource, ropeTable} from '../src/engines/webgpu_prefill/shaders/rope';
import {tf} from '../src/tf';
import {Rng} from '../src/util/rng';

interface Row {
  b: number;
  t: number;
  ring: string;
  tuning: string;
  ropeMs?: number;
  attnMs?: number;
  ringMs?: number;
  totalMs: number;
  gflop: number;
  TFLOPs: number | null;
}

interface Kernel {
  name: string;
  pipeline: GPUComputePipeline;
  bind: GPUBindGroup;
  grid: [number, number, number];
}

function parseTuning(v: string | undefined): Partial<AttnTuning> {
  const out: Partial<AttnTuning> = {};
  for (const part of (v ?? '').split(',').filter(Boolean)) {
    const [k, n] = part.split('=');
    if (!['QT', 'RM', 'TC', 'CM', 'DC', 'KV'].includes(k) || !(Number(n) >= 1 && Number(n) <= 4096)) {
      throw new Error(`--tuning: bad knob '${part}' (QT, RM, TC, CM, DC, KV = integers 1..4096)`);
    }
    out[k as keyof AttnTuning] = Number(n);
  }
  return out;
}

/** Visible (query, key) pairs of one batch row. */
function pairs(t: number, W: number, full: boolean): number {
  let n = 0;
  for (let i = 0; i < t; i++) n += full ? W + 1 : Math.min(i, W) + 1;
  return n;
}

async function main(args: Args): Promise<void> {
  const env = await setup('webgpu');
  const quick = args.quick === 'true';
  const ts = intList(args.t, quick ? [16, 64] : [128, 2048, 8192], 't');
  const b = intArg(args, 'b', 1);
  const W = intArg(args, 'w', quick ? 32 : 2048);
  const reps = intArg(args, 'reps', quick ? 3 : 10);
  const rings = (args.ring ?? 'fresh,full').split(',');
  for (const r of rings)
    if (r !== 'fresh' && r !== 'full') throw new Error(`--ring must be fresh and/or full, got ${r}`);
  if (b < 1 || b > 64 || W < 1 || W > 65534 || reps < 1 || reps > 1000) {
    throw new Error('--b 1..64, --w 1..65534, --reps 1..1000');
  }
  for (const t of ts) if (t > 65536 || b * t > 65536) throw new Error(`--t ${t}: at most 65536 token rows`);
  const spec: ChunkAttnSpec = {H: 10, K: 1, HD: 256, ROT: 128, W};
  const {H, K, HD, ROT} = spec;
  const S = W + 1,
    QKV = (H + 2 * K) * HD;
  const device = (tf.backend() as unknown as {device: GPUDevice}).device;
  const tuning = attnTuning(spec, device.limits, parseTuning(args.tuning));
  const tuningText = Object.entries(tuning)
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
  const stamps = device.features.has('timestamp-query');
  console.error(`prefill attention: ${describe(env)}; tuning ${tuningText}; timestamps ${stamps}`);

  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
  const owned: GPUBuffer[] = [];
  const buffer = (data: Float32Array | Uint32Array) => {
    const buf = device.createBuffer({size: Math.max(16, Math.ceil(data.byteLength / 16) * 16), usage});
    device.queue.writeBuffer(buf, 0, new Uint8Array(data.buffer as ArrayBuffer, data.byteOffset, data.byteLength));
    owned.push(buf);
    return buf;
  };
  const kernel = (
    name: string,
    code: string,
    names: string[],
    bufs: Record<string, GPUBuffer>,
    grid: Kernel['grid'],
  ) => {
    const pipeline = device.createComputePipeline({
      layout: 'auto',
      compute: {module: device.createShaderModule({code, label: name}), entryPoint: 'main'},
    });
    const entries = names.map((n, i) => ({binding: i, resource: {buffer: bufs[n]}}));
    return {name, pipeline, bind: device.createBindGroup({layout: pipeline.getBindGroupLayout(0), entries}), grid};
  };
  const codes = {rope: ropeSource(spec), attn: attnSource(spec, tuning), ring: ringWriteSource(spec)};

  const rows: Row[] = [];
  const rng = new Rng(7);
  const uniform = (n: number) => Float32Array.from({length: n}, () => 2 * rng.next() - 1);
  for (const t of ts) {
    for (const ring of rings) {
      const full = ring === 'full';
      const M = b * t;
      const positions = Array.from({length: M}, (_, m) => (m % t) + (full ? W + 100 : 0));
      const validInit = new Float32Array(b * S).fill(full ? 1 : 0);
      const bufs: Record<string, GPUBuffer> = {
        dims: buffer(Uint32Array.from([M, t, W, 0])),
        rope: buffer(ropeTable(positions, ropeInvFreq(ROT, 10000), ROT)),
        qkv: buffer(uniform(M * QKV)),
        pos: buffer(Uint32Array.from(positions)),
        kr: buffer(uniform(b * S * K * HD)),
        vr: buffer(uniform(b * S * K * HD)),
        valid: buffer(validInit),
        attn: buffer(new Float32Array(M * H * HD)),
      };
      const kernels = [
        kernel('rope', codes.rope, ropeBindings(spec), bufs, ropeGrid(M)),
        kernel('attn', codes.attn, attnBindings(spec), bufs, attnGrid(spec, M, t, tuning)),
        kernel('ring', codes.ring, ringWriteBindings(spec), bufs, ringWriteGrid(spec, M, t)),
      ];
      const querySet = stamps ? device.createQuerySet({type: 'timestamp', count: 2 * kernels.length}) : null;
      const resolve = device.createBuffer({size: 16 * kernels.length, usage: GPUBufferUsage.QUERY_RESOLVE | usage});
      const read = device.createBuffer({
        size: 16 * kernels.length,
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      });
      owned.push(resolve, read);
      /** One run: ring validity reset (the ring write changes it), the three kernels; times in ms. */
      const runOnce = async () => {
        device.queue.writeBuffer(bufs.valid, 0, validInit.buffer);
        const enc = device.createCommandEncoder();
        kernels.forEach((k, i) => {
          const pass = enc.beginComputePass(
            querySet
              ? {timestampWrites: {querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1}}
              : {},
          );
          pass.setPipeline(k.pipeline);
          pass.setBindGroup(0, k.bind);
          pass.dispatchWorkgroups(...k.grid);
          pass.end();
        });
        if (querySet) {
          enc.resolveQuerySet(querySet, 0, 2 * kernels.length, resolve, 0);
          enc.copyBufferToBuffer(resolve, 0, read, 0, 16 * kernels.length);
        }
        const t0 = performance.now();
        device.queue.submit([enc.finish()]);
        await device.queue.onSubmittedWorkDone();
        const wall = performance.now() - t0;
        if (!querySet) return {wall, each: null};
        await read.mapAsync(GPUMapMode.READ);
        const ns = new BigUint64Array(read.getMappedRange().slice(0));
        read.unmap();
        return {wall, each: kernels.map((_, i) => Number(ns[2 * i + 1] - ns[2 * i]) / 1e6)};
      };
      await runOnce(); // compile, first touch
      const samples: Awaited<ReturnType<typeof runOnce>>[] = [];
      for (let i = 0; i < reps; i++) samples.push(await runOnce());
      const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
      const round = (x: number) => +x.toFixed(4);
      const gflop = (4 * HD * H * b * pairs(t, W, full)) / 1e9;
      const row: Row = {b, t, ring, tuning: tuningText, totalMs: 0, gflop: +gflop.toPrecision(4), TFLOPs: null};
      if (samples[0].each) {
        const each = kernels.map((_, i) => median(samples.map((s) => s.each![i])));
        [row.ropeMs, row.attnMs, row.ringMs] = each.map(round);
        row.totalMs = round(each.reduce((x, y) => x + y, 0));
        row.TFLOPs = +(gflop / each[1]).toPrecision(4);
      } else {
        row.totalMs = round(median(samples.map((s) => s.wall)));
        row.TFLOPs = +(gflop / row.totalMs).toPrecision(4);
      }
      rows.push(row);
      console.error(`  t=${t} ${ring}: ${row.totalMs} ms, ${row.TFLOPs} TFLOP/s`);
      querySet?.destroy();
      for (const buf of owned.splice(0)) buf.destroy();
    }
  }
  console.log(
    `prefill chunk attention (H ${H}, K ${K}, hd ${HD}, W ${W}), ${describe(env)}; ` +
      `ms: median GPU time per kernel${stamps ? '' : ' (no timestamps: wall time of all three)'}; ` +
      'TFLOPs: visible pairs x 4 hd / attention time',
  );
  printTable(rows as unknown as Record<string, unknown>[], [
    'b',
    't',
    'ring',
    'ropeMs',
    'attnMs',
    'ringMs',
    'totalMs',
    'gflop',
    'TFLOPs',
  ]);
  emit(
    {
      bench: 'prefill_attention',
      environment: env,
      options: {spec, b, ts, rings, reps, tuning, timestamps: stamps},
      rows,
    },
    args.out,
  );
}

main(parseArgs(process.argv.slice(2))).catch((e) => fail('bench/prefill_attention', e));
