/**
 * Peak memory of a long sequence on tiny-a (window 64), cpu backend: `forward` over t tokens and one
 * fine-tuning step (loss and gradients of every weight) over t tokens, each measured in a fresh
 * process: tfjs's own peak of live tensor bytes (tf.profile) and the process's peak resident
 * memory (maxRSS). Written for issue 17 (attention in blocks of queries, ops/attention.ts).
 *   npx tsx bench/windowed_memory.ts --t 2000,5000            # a table on stdout
 *   npx tsx bench/windowed_memory.ts --t 2000 --json out.json
 * Internal: `one forward|step T` runs one measured child and prints its JSON line.
 */
import {spawnSync} from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import {RecurrentGemmaForCausalLM} from '../src/model';
import {tf} from '../src/tf';

const TINY_A = path.join(__dirname, '../test/fixtures/tiny-a');

interface Row {
  mode: 'forward' | 'step';
  t: number;
  peakTensorMB: number;
  maxRssMB: number;
  seconds: number;
}

async function one(mode: 'forward' | 'step', t: number): Promise<Row> {
  await tf.setBackend('cpu');
  const model = await RecurrentGemmaForCausalLM.fromPretrained(TINY_A);
  let s = 12345;
  const ids = [[2, ...Array.from({length: t - 1}, () => 3 + ((s = (s * 1103515245 + 12345) >>> 0) % 500))]];
  const t0 = Date.now();
  const prof = await tf.profile(() => {
    if (mode === 'forward') {
      tf.tidy(() => model.forward({inputIds: ids}).logits.dataSync());
    } else {
      const vars = [...model.namedParameters().values()].map((v) => v.read() as tf.Variable);
      const {value, grads} = tf.variableGrads(() => model.forward({inputIds: ids, labels: ids}).loss!, vars);
      value.dataSync();
      tf.dispose([value, ...Object.values(grads)]);
    }
  });
  const seconds = (Date.now() - t0) / 1000;
  model.dispose();
  return {
    mode,
    t,
    peakTensorMB: Math.round(prof.peakBytes / 1e5) / 10,
    maxRssMB: Math.round(process.resourceUsage().maxRSS / 1e2) / 10,
    seconds,
  };
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === 'one') {
    process.stdout.write(`${JSON.stringify(await one(argv[1] as 'forward' | 'step', Number(argv[2])))}\n`);
    return;
  }
  const arg = (k: string) => (argv.includes(k) ? argv[argv.indexOf(k) + 1] : undefined);
  const lengths = (arg('--t') ?? '2000,5000').split(',').map(Number);
  const rows: Row[] = [];
  for (const mode of ['forward', 'step'] as const) {
    for (const t of lengths) {
      const r = spawnSync(process.execPath, ['--import', 'tsx', __filename, 'one', mode, String(t)], {
        encoding: 'utf8',
        maxBuffer: 1 << 20,
      });
      if (r.status !== 0) throw new Error(`${mode} t=${t} failed: ${r.stderr.trim().split('\n').pop()}`);
      const row = JSON.parse(r.stdout.trim().split('\n').pop()!) as Row;
      rows.push(row);
      console.log(
        `${mode.padEnd(7)} t=${String(t).padStart(5)}  peak tensors ${row.peakTensorMB} MB  max RSS ${row.maxRssMB} MB  ${row.seconds} s`,
      );
    }
  }
  const json = arg('--json');
  if (json != null) fs.writeFileSync(json, `${JSON.stringify(rows, null, 1)}\n`);
}

main().catch((e) => {
  console.error(`windowed_memory: ${(e as Error).message}`);
  process.exitCode = 1;
});
