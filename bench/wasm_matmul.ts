/**
 * The model's matrix products on wasm, tfjs-wasm's own BatchMatMul against ops/wasm_matmul.ts:
 * Linear's x W^T at decode (m = 1, 8) and prefill (m = 512) sizes of the small and 2B shapes, the
 * RG-LRU's per-head gates, attention's q k^T, and a weight gradient (transposeA). Prints a
 * table of ms per product (the fastest of --reps samples, each ~20 ms of calls; medians in the
 * JSON) and the speed-up, then JSON.
 *   npx tsx bench/wasm_matmul.ts --out bench/results/<date>-<host>-wasm-matmul.json
 * Options: --reps 7, --quick (the small shapes only), --out FILE.
 */

import {registerWasmMatMul, unregisterWasmMatMul} from '../ops/wasm_matmul';
import {useBackend} from '../src/backend';
import {Args, describeMachine, emit, fail, intArg, parseArgs, printTable, timeIt} from '../src/bench/common';
import {tf} from '../src/tf';

interface Case {
  what: string;
  a: number[];
  b: number[];
  transposeA?: boolean;
  transposeB?: boolean;
  bIsWeight: boolean;
}

const CASES: Case[] = [
  // small (d 256, MLP 384 per branch... SMALL_CONFIG: hidden 256, intermediate 768)
  {what: 'small Linear x W^T, decode b=1', a: [1, 256], b: [384, 256], transposeB: true, bIsWeight: true},
  {what: 'small Linear x W^T, decode b=8', a: [8, 256], b: [384, 256], transposeB: true, bIsWeight: true},
  {what: 'small Linear x W^T, prefill 512', a: [512, 256], b: [384, 256], transposeB: true, bIsWeight: true},
  {what: 'small LM head x E^T, decode b=1', a: [1, 256], b: [4096, 256], transposeB: true, bIsWeight: true},
  {what: 'small RG-LRU gates [4 heads], prefill 512', a: [4, 512, 64], b: [4, 64, 64], bIsWeight: true},
  {
    what: 'small attention q k^T, prefill 512',
    a: [1, 1, 2048, 64],
    b: [1, 1, 512, 64],
    transposeB: true,
    bIsWeight: false,
  },
  {what: 'small weight gradient dy^T x, 512 tokens', a: [512, 384], b: [512, 256], transposeA: true, bIsWeight: false},
  // 2B widths (one layer's products)
  {what: '2b Linear x W^T, decode b=1', a: [1, 2560], b: [7680, 2560], transposeB: true, bIsWeight: true},
  {what: '2b Linear x W^T, decode b=8', a: [8, 2560], b: [2560, 2560], transposeB: true, bIsWeight: true},
  {what: '2b Linear x W^T, prefill 128', a: [128, 2560], b: [2560, 2560], transposeB: true, bIsWeight: true},
  {what: '2b RG-LRU gates [10 heads], prefill 128', a: [10, 128, 256], b: [10, 256, 256], bIsWeight: true},
];

async function main(args: Args): Promise<void> {
  await useBackend('wasm');
  const env = await describeMachine('wasm');
  const reps = intArg(args, 'reps', 7);
  const cases = args.quick === 'true' ? CASES.filter((c) => c.what.startsWith('small')) : CASES;
  const rows: Record<string, unknown>[] = [];
  for (const c of cases) {
    const a = tf.randomUniform(c.a, -1, 1, 'float32', 1);
    const bInit = tf.randomUniform(c.b, -1, 1, 'float32', 2);
    const b = c.bIsWeight ? tf.variable(bInit) : bInit;
    const run = () => [tf.matMul(a, b, c.transposeA ?? false, c.transposeB ?? false)];
    const check = run()[0];
    unregisterWasmMatMul();
    const ref = run()[0];
    const before = await timeIt(run, {reps, inner: 'auto'});
    registerWasmMatMul();
    const after = await timeIt(run, {reps, inner: 'auto'});
    const maxDiff = tf.max(tf.abs(tf.sub(check, ref))).dataSync()[0];
    // The fastest sample of each: on a machine shared with other jobs the least disturbed one.
    rows.push({
      what: c.what,
      a: `[${c.a}]`,
      b: `[${c.b}]${c.transposeB ? '^T' : ''}`,
      tfjsMs: before.minMs,
      ms: after.minMs,
      speedup: +(before.minMs / after.minMs).toFixed(2),
      tfjsMedianMs: before.ms,
      medianMs: after.ms,
      maxDiff: +maxDiff.toExponential(2),
    });
    process.stderr.write(`  ${c.what}: ${before.minMs} -> ${after.minMs} ms\n`);
    tf.dispose([a, b, bInit, check, ref]);
  }
  console.log(
    `wasm matMul, tfjs-wasm's kernel (tfjsMs) against ops/wasm_matmul.ts (ms), fastest of --reps samples per product; ${env.cpus} x ${env.cpu}`,
  );
  printTable(rows, ['what', 'a', 'b', 'tfjsMs', 'ms', 'speedup', 'maxDiff']);
  emit({bench: 'wasm-matmul', environment: env, options: {reps}, rows}, args.out);
}

main(parseArgs(process.argv.slice(2))).catch((e) => fail('bench/wasm_matmul', e));
