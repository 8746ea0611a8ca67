/**
 * Peak memory of long sequences, cpu backend: `forward` over t tokens and one fine-tuning step (loss
 * and gradients of every weight) over t tokens, each measured in a fresh process: tfjs's own peak
 * of live tensor bytes (tf.profile) and the process's peak resident memory (maxRSS). "before" runs
 * attention over the plain [t, t] scores (setAttentionBlocks(false)), "after" in blocks of queries
 * (attendLocal, ops/attention.ts). Written for issue 17. A case whose estimated peak passes
 * --max-gb is not run (the machine is shared): its row carries the estimate (the plain path's score
 * matrices, or the same case's shorter runs extrapolated: quadratic before, linear after) and, before,
 * a lower bound (the score matrices it must hold) instead.
 *   npx tsx bench/windowed_memory.ts --t 2000,5000            # tiny-a, before and after, a table on stdout
 *   npx tsx bench/windowed_memory.ts --models tiny,small --t 1024,4096,16384 --max-gb 6 --json out.json
 *   npx tsx bench/windowed_memory.ts --models small --modes step --variants after --t 1024   # one case
 * Internal: `one MODEL before|after forward|step T` runs one measured child and prints its JSON line.
 */
import {spawnSync} from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import {setAttentionBlocks} from '../ops/attention';
import {RecurrentGemmaForCausalLM} from '../src/model';
import {tf} from '../src/tf';

const MODELS: Record<string, string> = {
  tiny: path.join(__dirname, '../test/fixtures/tiny-a'),
  small: path.join(__dirname, '../assets/griffin-small'),
};
// Peak tensor bytes of the plain path per [b, H, t, t] float32 score matrix, measured on tiny-a at
// t = 5000 (NOTES.md, issue 17): forward 6.3 (one layer at a time), step 17.1 per attention layer.
const PLAIN_FACTOR = {forward: 7, step: 18};

type Mode = 'forward' | 'step';
type Variant = 'before' | 'after';

interface Row {
  model: string;
  variant: Variant;
  mode: Mode;
  t: number;
  peakTensorMB: number | null;
  maxRssMB: number | null;
  seconds: number | null;
  /** Only on cases not run: the estimated peak tensor bytes and the score matrices' bytes alone. */
  skipped?: {estimatedPeakMB: number; lowerBoundMB: number; reason: string};
  /** A case that ran and failed: its last line of stderr. */
  error?: string;
}

function tokens(t: number): number[][] {
  let s = 12345;
  return [[2, ...Array.from({length: t - 1}, () => 3 + ((s = (s * 1103515245 + 12345) >>> 0) % 500))]];
}

async function one(name: string, variant: Variant, mode: Mode, t: number): Promise<Row> {
  await tf.setBackend('cpu');
  setAttentionBlocks(variant === 'after');
  const model = await RecurrentGemmaForCausalLM.fromPretrained(MODELS[name]);
  const ids = tokens(t);
  const t0 = Date.now();
  const prof = await tf.profile(() => {
    if (mode === 'forward') {
      // The block returns nothing: tidy walks what it returns for tensors, a typed array element by
      // element into a Set, which fails past 2^24 distinct values ("Set maximum size exceeded").
      tf.tidy(() => {
        model.forward({inputIds: ids}).logits.dataSync();
      });
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
    model: name,
    variant,
    mode,
    t,
    peakTensorMB: Math.round(prof.peakBytes / 1e5) / 10,
    maxRssMB: Math.round(process.resourceUsage().maxRSS / 1e2) / 10,
    seconds,
  };
}

/** Heads and attention layers, read from the config without building the model. */
async function shape(name: string): Promise<{heads: number; attnLayers: number}> {
  const model = await RecurrentGemmaForCausalLM.fromPretrained(MODELS[name]);
  const c = model.config;
  const out = {
    heads: c.num_attention_heads,
    attnLayers: c.layers_block_type.filter((k) => k === 'attention').length,
  };
  model.dispose();
  return out;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === 'one') {
    const row = await one(argv[1], argv[2] as Variant, argv[3] as Mode, Number(argv[4]));
    process.stdout.write(`${JSON.stringify(row)}\n`);
    return;
  }
  const arg = (k: string) => (argv.includes(k) ? argv[argv.indexOf(k) + 1] : undefined);
  const lengths = (arg('--t') ?? '2000,5000').split(',').map(Number);
  const models = (arg('--models') ?? 'tiny').split(',');
  const variants = (arg('--variants') ?? 'before,after').split(',') as Variant[];
  const modes = (arg('--modes') ?? 'forward,step').split(',') as Mode[];
  const maxGB = Number(arg('--max-gb') ?? '6');
  const json = arg('--json');
  for (const m of models) if (MODELS[m] == null) throw new Error(`unknown model ${m} (tiny, small)`);
  if (lengths.some((t) => !Number.isInteger(t) || t < 2 || t > 65536)) throw new Error('--t: integers in [2, 65536]');
  if (!(maxGB > 0 && maxGB <= 64)) throw new Error('--max-gb: in (0, 64]');
  await tf.setBackend('cpu');
  const rows: Row[] = [];
  // Peak tensor MB of the case measured at shorter lengths: a longer one is estimated from them.
  const extrapolate = (m: string, variant: Variant, mode: Mode, t: number): number => {
    const seen = rows.filter(
      (r) => r.model === m && r.variant === variant && r.mode === mode && r.peakTensorMB != null,
    );
    if (seen.length === 0) return 0;
    const a = seen[seen.length - 1];
    const p = variant === 'before' ? 2 : 1;
    if (seen.length === 1) return a.peakTensorMB! * (t / a.t) ** p;
    const z = seen[seen.length - 2];
    const slope = (a.peakTensorMB! - z.peakTensorMB!) / (a.t ** p - z.t ** p);
    return a.peakTensorMB! + slope * (t ** p - a.t ** p);
  };
  for (const m of models) {
    const {heads, attnLayers} = await shape(m);
    for (const mode of modes) {
      for (const t of lengths) {
        for (const variant of variants) {
          const scoresMB = (heads * t * t * 4) / 1e6;
          const held = mode === 'step' ? attnLayers : 1;
          const plain = variant === 'before' ? scoresMB * PLAIN_FACTOR[mode] * held : 0;
          const estimate = Math.max(plain, extrapolate(m, variant, mode, t));
          let row: Row;
          if (estimate > maxGB * 1000) {
            row = {model: m, variant, mode, t, peakTensorMB: null, maxRssMB: null, seconds: null};
            row.skipped = {
              estimatedPeakMB: Math.round(estimate),
              lowerBoundMB: variant === 'before' ? Math.round(scoresMB * held) : 0,
              reason: `estimated peak past --max-gb ${maxGB}`,
            };
          } else {
            const r = spawnSync(process.execPath, ['--import', 'tsx', __filename, 'one', m, variant, mode, String(t)], {
              encoding: 'utf8',
              maxBuffer: 1 << 20,
            });
            if (r.status === 0) row = JSON.parse(r.stdout.trim().split('\n').pop()!) as Row;
            else {
              // Recorded, not fatal: the other cases still run.
              const error = r.stderr.trim().split('\n').pop() ?? `exit ${r.status}`;
              row = {model: m, variant, mode, t, peakTensorMB: null, maxRssMB: null, seconds: null, error};
            }
          }
          rows.push(row);
          const what = `${m.padEnd(5)} ${variant.padEnd(6)} ${mode.padEnd(7)} t=${String(t).padStart(5)}`;
          if (row.error != null) console.log(`${what}  failed: ${row.error}`);
          else if (row.skipped) {
            const s = row.skipped;
            console.log(`${what}  not run: estimated ${s.estimatedPeakMB} MB (scores alone ${s.lowerBoundMB} MB)`);
          } else {
            console.log(`${what}  peak tensors ${row.peakTensorMB} MB  max RSS ${row.maxRssMB} MB  ${row.seconds} s`);
          }
          if (json != null) fs.writeFileSync(json, `${JSON.stringify(rows, null, 1)}\n`);
        }
      }
    }
  }
}

main().catch((e) => {
  console.error(`windowed_memory: ${(e as Error).message}`);
  process.exitCode = 1;
});
