/**
 * RgLruScan throughput: effective bandwidth (the bytes the op must read and write, over its time)
 * of the WGSL kernels, serial and chunked paths, forward and backward, against an elementwise add
 * that moves the same bytes; on cpu / wasm the host kernel. Prints a table, then JSON.
 *   npx tsx bench/scan.ts --backend webgpu --out bench/results/2026-01-01-h200-scan.json
 *   node dist/bench/scan.js --backend cpu --b 1,8 --t 2048 --reps 3      # after npm run build
 *
 * Options: --backend webgpu|cpu|wasm (webgpu), --b 1,2,4,8, --t 2048,4096,8192, --e 2560,
 * --paths serial,chunked,auto (webgpu), --pass fwd,bwd, --reps 5, --chunk N (chunked path's
 * chunk size; default: the kernel's choice), --inner N|auto (calls queued per timed sample;
 * auto: ~20 ms worth), --quick (b 1,2, t 256,1024, e 256: a smoke run), --out FILE.
 *
 * Bytes counted (float32): forward reads a, x [b,t,e] and h0 [b,e], writes h and hLast:
 * (3bte + 2be) * 4; backward reads a, h, dh, h0, dhLast and writes dx, da, dh0: (5bte + 3be) * 4.
 * The chunked path really moves more (it reads a and x twice); "effective" counts only these.
 */

import {engine, Tensor} from '@tensorflow/tfjs-core';
import {RG_LRU_SCAN, RG_LRU_SCAN_GRAD} from '../ops/rg_lru_scan';
import {rgLruScanWebGPUConfig, scanPlan} from '../ops/rg_lru_scan/webgpu';
import {
  Args,
  describe,
  emit,
  fail,
  intArg,
  intList,
  parseArgs,
  printTable,
  scanBytes,
  scanInputs,
  setup,
  timeIt,
} from '../src/bench/common';
import {tf} from '../src/tf';

type Path = 'serial' | 'chunked' | 'auto' | 'host';

interface Row {
  b: number;
  t: number;
  e: number;
  pass: 'fwd' | 'bwd' | 'add';
  path: Path | '-';
  chunk?: number;
  ms: number;
  minMs: number;
  GBps: number;
  vsAdd?: number;
}

const inputs = scanInputs;

async function main(args: Args): Promise<void> {
  const env = await setup(args.backend);
  const quick = args.quick === 'true';
  const bs = intList(args.b, quick ? [1, 2] : [1, 2, 4, 8], 'b');
  const ts = intList(args.t, quick ? [256, 1024] : [2048, 4096, 8192], 't');
  const e = intArg(args, 'e', quick ? 256 : 2560);
  const reps = intArg(args, 'reps', quick ? 3 : 5);
  const chunk = intArg(args, 'chunk', 0);
  const inner = args.inner == null || args.inner === 'auto' ? ('auto' as const) : intArg(args, 'inner', 1);
  const passes = (args.pass ?? 'fwd,bwd').split(',') as ('fwd' | 'bwd')[];
  const gpu = env.backend === 'webgpu';
  const paths: Path[] = gpu ? ((args.paths ?? 'serial,chunked').split(',') as Path[]) : ['host'];
  for (const p of paths) if (!['serial', 'chunked', 'auto', 'host'].includes(p)) throw new Error(`unknown path ${p}`);

  console.error(`RgLruScan: ${describe(env)}`);
  const rows: Row[] = [];
  for (const b of bs) {
    for (const t of ts) {
      const inp = inputs(b, t, e);
      const bte = b * t * e;
      const gb = (bytes: number, ms: number) => +(bytes / ms / 1e6).toPrecision(4);
      // Baseline: a + x reads and writes what the forward scan must (3 bte floats).
      const add = await timeIt(() => [tf.add(inp.a, inp.x)], {reps, inner});
      const addGBps = gb(3 * bte * 4, add.ms);
      rows.push({b, t, e, pass: 'add', path: '-', ms: add.ms, minMs: add.minMs, GBps: addGBps});
      const h = engine().runKernel(RG_LRU_SCAN, {a: inp.a, x: inp.x, h0: inp.h0}) as Tensor[];
      for (const path of paths) {
        if (gpu) Object.assign(rgLruScanWebGPUConfig, {path, chunkSize: chunk});
        try {
          const plan = gpu ? scanPlan(t).chunk : undefined;
          for (const pass of passes) {
            const r =
              pass === 'fwd'
                ? await timeIt(() => engine().runKernel(RG_LRU_SCAN, {a: inp.a, x: inp.x, h0: inp.h0}) as Tensor[], {
                    reps,
                    inner,
                  })
                : await timeIt(
                    () =>
                      engine().runKernel(RG_LRU_SCAN_GRAD, {
                        a: inp.a,
                        h: h[0],
                        h0: inp.h0,
                        dh: inp.dh,
                        dhLast: inp.dhLast,
                      }) as Tensor[],
                    {reps, inner},
                  );
            const bytes = scanBytes(pass, b, t, e);
            const GBps = gb(bytes, r.ms);
            rows.push({
              b,
              t,
              e,
              pass,
              path,
              ...(plan ? {chunk: plan} : {}),
              ms: r.ms,
              minMs: r.minMs,
              GBps,
              vsAdd: +(GBps / addGBps).toFixed(3),
            });
            console.error(`  b=${b} t=${t} e=${e} ${pass} ${path}: ${r.ms} ms, ${GBps} GB/s`);
          }
        } finally {
          if (gpu) Object.assign(rgLruScanWebGPUConfig, {path: 'auto', chunkSize: 0});
        }
      }
      tf.dispose([...h, ...Object.values(inp)]);
    }
  }
  console.log(
    `RgLruScan, ${describe(env)}; GB/s = (bytes read + written) / median time per call, vsAdd = against a + x`,
  );
  printTable(rows as unknown as Record<string, unknown>[], [
    'b',
    't',
    'e',
    'pass',
    'path',
    'chunk',
    'ms',
    'GBps',
    'vsAdd',
  ]);
  emit({bench: 'scan', environment: env, options: {bs, ts, e, reps, inner, paths, passes, chunk}, rows}, args.out);
}

main(parseArgs(process.argv.slice(2))).catch((e) => fail('bench/scan', e));
