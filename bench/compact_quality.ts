/**
 * What compact weights cost in quality: the shipped small model's held-out loss and perplexity
 * per weight dtype against its float32 run, and the bytes its weights take. Prints JSON.
 *   npx tsx bench/compact_quality.ts --backend wasm --windows 64 --out bench/results/DATE-vm-compact-quality.json
 *   npx tsx bench/compact_quality.ts --only int4      # float32 and the int4 cases only
 *   npx tsx bench/compact_quality.ts --only int4:64:cal,int4:64:zp:cal   # int4 fitted on calibration text (GPTQ)
 *
 * The windows are the first --windows windows of 256 tokens of the Brown held-out split,
 * tokenized as the model's pretraining did (src/pretrain/small.ts), the ones its training reported
 * on. The shipped weights are float16, so bfloat16 rounds them and float16 keeps them exactly.
 * Calibrated cases fit on the default calibration text, the Brown TRAINING split (src/data/calibration.ts).
 */
import * as path from 'path';
import {emit, intArg, parseArgs, setup} from '../src/bench/common';
import {defaultModelDir} from '../src/cli/generate';
import {brownSplit} from '../src/data/corpus';
import {type PretrainedOptions, RecurrentGemmaForCausalLM} from '../src/model';
import {heldOutRows, meanLoss} from '../src/pretrain/small';
import {GemmaTokenizer} from '../src/tokenizer';

const CASES: PretrainedOptions[] = [
  {dtype: 'float32'},
  {dtype: 'bfloat16'},
  {dtype: 'float16'},
  {dtype: 'int8'},
  {dtype: 'int4', groupSize: 32},
  {dtype: 'int4', groupSize: 64},
  {dtype: 'int4', groupSize: 128},
  {dtype: 'int4', groupSize: 64, zeroPoints: true},
  {dtype: 'int4', groupSize: 64, calibration: 'default'},
  {dtype: 'int4', groupSize: 64, zeroPoints: true, calibration: 'default'},
];

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const env = await setup(args.backend ?? 'wasm');
  const dir = args.model ?? defaultModelDir();
  const windows = intArg(args, 'windows', 64);
  const tok = await GemmaTokenizer.load(path.join(dir, 'tokenizer.model'));
  const ids: number[] = [];
  for (const d of brownSplit().eval) ids.push(...tok.encode(d, {addBos: true}), 1);
  const rows = heldOutRows(ids, windows, 256);
  const runs: Record<string, unknown>[] = [];
  let base = 0;
  // --only int4,int8 or int4:64 (int4:64:zp with zero points, int4:64:cal / int4:64:zp:cal fitted on the
  // default calibration text): those dtypes, or one int4 case (float32, the baseline, always runs).
  const only = args.only?.split(',');
  const wanted = (c: PretrainedOptions) =>
    only == null ||
    c.dtype === 'float32' ||
    only.some((o) => {
      const [d, g, ...flags] = o.split(':');
      const same = !c.zeroPoints === !flags.includes('zp') && (c.calibration == null) === !flags.includes('cal');
      return c.dtype === d && (g == null || (c.groupSize === Number(g) && same));
    });
  for (const opts of CASES.filter(wanted)) {
    const t0 = performance.now();
    const model = await RecurrentGemmaForCausalLM.fromPretrained(dir, opts);
    const loadSeconds = (performance.now() - t0) / 1000;
    const t1 = performance.now();
    const loss = await meanLoss(model, rows, 8);
    if (opts.dtype === 'float32') base = loss;
    const run = {
      ...opts,
      loss: +loss.toFixed(5),
      perplexity: +Math.exp(loss).toFixed(3),
      perplexityVsFloat32: `${((Math.exp(loss - base) - 1) * 100).toFixed(2)}%`,
      weightMB: +(model.weightBytes() / 1e6).toFixed(2),
      loadSeconds: +loadSeconds.toFixed(1),
      evalSeconds: +((performance.now() - t1) / 1000).toFixed(1),
    };
    console.error(JSON.stringify(run));
    runs.push(run);
    model.dispose();
  }
  emit({bench: 'compact-quality', environment: env, model: dir, windows, tokens: windows * 256, runs}, args.out);
}

main().catch((e: unknown) => {
  console.error(`compact_quality: ${(e as Error).message}`);
  process.exitCode = 1;
});
