/**
 * The compact-weight host kernels (ops/compact/host.ts) on cpu or wasm: ms per product y = x W^T
 * for one row of x (decode's GEMV) and for a few rows, int8 and int4 (group 64) at the 2B shape's
 * matrices, with one row of x dotted as it is unpacked (compactHostConfig.fusedRow) and without
 * (unpack a row, then dot), checked against each other. Prints a table, then JSON.
 *   npx tsx bench/compact_host.ts --backend wasm --out bench/results/<date>-vm-compact-host-wasm.json
 *
 * Options: --backend cpu|wasm (default wasm), --rows 1,4 (rows of x), --reps 5, --quick (a tenth of
 * each width: a smoke run), --out FILE. Letters: n rows of x, R x C the weight.
 */

import {quantize} from '../ops/compact/format';
import {compactHostConfig} from '../ops/compact/host';
import {compactMatMul, compactTensors, disposeCompact} from '../ops/compact/index';
import {Args, describe, emit, fail, intArg, intList, parseArgs, printTable, setup} from '../src/bench/common';
import {tf} from '../src/tf';
import {Rng} from '../src/util/rng';

const SHAPES: [string, number, number][] = [
  ['gate (7680 x 2560)', 7680, 2560],
  ['down (2560 x 7680)', 2560, 7680],
  ['x (2560 x 2560)', 2560, 2560],
];

async function main(args: Args): Promise<void> {
  const backend = args.backend ?? 'wasm';
  if (backend !== 'cpu' && backend !== 'wasm') throw new Error(`--backend must be cpu or wasm, got ${backend}`);
  const env = await setup(backend);
  const quick = args.quick === 'true';
  const ns = intList(args.rows, [1, 4], 'rows');
  const reps = intArg(args, 'reps', quick ? 1 : 5);
  if (reps < 1 || reps > 100) throw new Error(`--reps must be in [1, 100], got ${reps}`);
  if (ns.some((n) => n < 1 || n > 64)) throw new Error('--rows must be in [1, 64]');
  const rng = new Rng(7);
  const rows: Record<string, unknown>[] = [];
  for (const [name, R0, C0] of SHAPES) {
    const R = quick ? R0 / 10 : R0,
      C = quick ? C0 / 10 : C0;
    const data = Float32Array.from({length: R * C}, () => (rng.next() * 2 - 1) * 0.02);
    for (const spec of [{dtype: 'int8' as const}, {dtype: 'int4' as const, groupSize: 64}]) {
      const w = compactTensors(quantize(data, R, C, spec));
      for (const n of ns) {
        const x = tf.tensor2d(
          Float32Array.from({length: n * C}, () => rng.next() * 2 - 1),
          [n, C],
        );
        const time = async (fused: boolean): Promise<{ms: number; y: Float32Array}> => {
          compactHostConfig.fusedRow = fused;
          let y = compactMatMul(x, w);
          const out = (await y.data()) as Float32Array;
          y.dispose();
          const times: number[] = [];
          for (let i = 0; i < reps; i++) {
            const t0 = performance.now();
            y = compactMatMul(x, w);
            await y.data();
            times.push(performance.now() - t0);
            y.dispose();
          }
          times.sort((a, b) => a - b);
          return {ms: times[Math.floor(times.length / 2)], y: out};
        };
        const plain = await time(false);
        const fused = await time(true);
        compactHostConfig.fusedRow = true;
        let d = 0,
          m = 0;
        for (let i = 0; i < plain.y.length; i++) {
          d = Math.max(d, Math.abs(plain.y[i] - fused.y[i]));
          m = Math.max(m, Math.abs(plain.y[i]));
        }
        const row = {
          shape: name,
          dtype: spec.dtype,
          n,
          unpackThenDotMs: +plain.ms.toFixed(2),
          fusedMs: +fused.ms.toFixed(2),
          speedup: +(plain.ms / fused.ms).toFixed(2),
          relDiff: +(d / m).toExponential(2),
        };
        console.error(`  ${name} ${spec.dtype} n=${n}: ${row.unpackThenDotMs} -> ${row.fusedMs} ms`);
        rows.push(row);
        x.dispose();
      }
      disposeCompact(w);
    }
  }
  console.log(`compact host kernels on ${describe(env)}, median of ${reps}`);
  printTable(rows, ['shape', 'dtype', 'n', 'unpackThenDotMs', 'fusedMs', 'speedup', 'relDiff']);
  emit({bench: 'compact-host', environment: env, options: {backend, rows: ns, reps, quick}, rows}, args.out);
}

main(parseArgs(process.argv.slice(2))).catch((e) => fail('bench/compact_host', e));
