/**
 * How int4 fits compare on TRAINING text only (never the held-out split): the shipped small model
 * in float32 with its matrices replaced by their int4 round trip (dequantize(quantize(w))), loss
 * on the last --dev windows of the Brown training stream, calibration from its first --calib
 * windows. Used to choose a method before the one held-out measurement (bench/compact_quality.ts).
 *   npx tsx bench/int4_calibration_study.ts --backend wasm --calib 128 --dev 32 --methods fit:64,gptq:64
 *
 * A method is KIND:GROUP[:zp][:act][:embed=fit|gptq|gptqA][:only=TEXT] with KIND fit (the data-free least-squares
 * group fit) or gptq (ops/compact/gptq.ts); embed says how the tied embedding is fitted
 * (gptqA: H of the head's input plus A times its mean diagonal on the diagonal, for the lookups);
 * act rounds GPTQ's columns in act-order; only=TEXT rounds only the matrices whose name holds TEXT (the others stay float32).
 */

import * as tf from '@tensorflow/tfjs';
import * as path from 'path';
import {linearModules} from '../layers/lora';
import {dequantize, type PackedMatrix, quantize} from '../ops/compact/format';
import {outputError, quantizeGptq} from '../ops/compact/gptq';
import {emit, intArg, parseArgs, setup} from '../src/bench/common';
import {defaultModelDir} from '../src/cli/generate';
import {secondMoments} from '../src/core/calibrate';
import {brownSplit} from '../src/data/corpus';
import {RecurrentGemmaForCausalLM} from '../src/model';
import {meanLoss, type Row, window} from '../src/pretrain/small';
import {GemmaTokenizer} from '../src/tokenizer';

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const env = await setup(args.backend ?? 'wasm');
  const dir = args.model ?? defaultModelDir();
  const nCalib = intArg(args, 'calib', 128);
  const nDev = intArg(args, 'dev', 32);
  const tok = await GemmaTokenizer.load(path.join(dir, 'tokenizer.model'));
  const ids: number[] = [];
  for (const d of brownSplit().train) ids.push(...tok.encode(d, {addBos: true}), 1);
  const total = Math.floor(ids.length / 256);
  const calib: Row[] = Array.from({length: nCalib}, (_, i) => window(ids, i * 256, 256));
  const dev: Row[] = Array.from({length: nDev}, (_, i) => window(ids, (total - nDev + i) * 256, 256));
  const model = await RecurrentGemmaForCausalLM.fromPretrained(dir, {dtype: 'float32'});
  const t0 = performance.now();
  const hs = secondMoments(model, calib, 8);
  console.error(`calibration: ${((performance.now() - t0) / 1000).toFixed(1)} s, ${hs.size} matrices`);
  const params = model.namedParameters();
  const names = [...[...linearModules(model).keys()].map((n) => `${n}.weight`), `${model.embed.name}.weight`];
  const original = new Map(names.map((n) => [n, params.get(n)!.read().dataSync() as Float32Array]));
  const base = await meanLoss(model, dev, 8);
  const runs: Record<string, unknown>[] = [{method: 'float32', devLoss: +base.toFixed(5)}];
  for (const method of (args.methods ?? 'fit:64,gptq:64').split(',')) {
    const [kind, g, ...rest] = method.split(':');
    const zeroPoints = rest.includes('zp');
    const embed = rest.find((r) => r.startsWith('embed='))?.slice(6) ?? 'fit';
    const only = rest.find((r) => r.startsWith('only='))?.slice(5);
    const spec = {dtype: 'int4' as const, groupSize: Number(g), zeroPoints};
    let outErr = 0,
      rtnErr = 0;
    const t1 = performance.now();
    for (const n of names.filter((m) => only == null || m.includes(only))) {
      const v = params.get(n)!;
      const [R, C] = v.shape as number[];
      const w = original.get(n)!;
      let h = hs.get(n)!;
      const isEmbed = n === `${model.embed.name}.weight`;
      let p: PackedMatrix;
      if (kind === 'gptq' && (!isEmbed || embed.startsWith('gptq'))) {
        if (isEmbed && embed.length > 4) {
          const a = Number(embed.slice(4));
          let mean = 0;
          for (let i = 0; i < C; i++) mean += h[i * C + i] / C;
          h = Float64Array.from(h);
          for (let i = 0; i < C; i++) h[i * C + i] += a * mean;
        }
        p = quantizeGptq(w, R, C, h, spec, {actOrder: rest.includes('act')});
      } else p = quantize(w, R, C, spec);
      const dq = dequantize(p);
      outErr += outputError(w, dq, R, C, hs.get(n)!);
      rtnErr += outputError(w, dequantize(quantize(w, R, C, spec)), R, C, hs.get(n)!);
      tf.tidy(() => {
        v.write(tf.tensor2d(dq, [R, C]));
      });
    }
    const fitSeconds = (performance.now() - t1) / 1000;
    const loss = await meanLoss(model, dev, 8);
    const run = {
      method,
      devLoss: +loss.toFixed(5),
      devPerplexityVsFloat32: `${((Math.exp(loss - base) - 1) * 100).toFixed(2)}%`,
      outputErrorVsFit: +(outErr / rtnErr).toFixed(4),
      fitSeconds: +fitSeconds.toFixed(1),
    };
    console.error(JSON.stringify(run));
    runs.push(run);
    for (const n of names) {
      const v = params.get(n)!;
      tf.tidy(() => {
        v.write(tf.tensor(original.get(n)!, v.shape as number[]));
      });
    }
  }
  emit({bench: 'int4-calibration-study', environment: env, model: dir, calib: nCalib, dev: nDev, runs}, args.out);
}

main().catch((e: unknown) => {
  console.error(`int4_calibration_study: ${(e as Error).message}`);
  process.exitCode = 1;
});
