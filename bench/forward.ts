/**
 * model.forward on webgpu: every position's logits [b, t, V] (and lastPositionOnly's [b, 1, V])
 * through the fused prefill engine (src/engines/webgpu_prefill/forward.ts) against tfjs ops, per
 * prompt length. Prints progress on stderr, the JSON on stdout (and --out FILE).
 *   npx tsx bench/forward.ts --config 2b --backend webgpu --lens 128,2048 --fused both --out f.json
 *
 * --config tiny|small|2b|9b|mid (random weights; --layers / --vocab shrink it) or --model DIR;
 * --dtype bfloat16|float16|int8|int4 [--group-size 64] [--zero-points] holds a --config model
 * compact; --lens (default 128,2048), --batch (1), --reps (3: the median is reported), --fused
 * on|off|both (default both: GRIFFIN_FUSED_FORWARD as set for 'on'), --last on|off|both (default
 * both: also time lastPositionOnly), --head-mb (the fused head's slice of logits in MiB, 1..2048;
 * default 256). A forward is timed from the call until one value of its logits has been read
 * back (the GPU has finished); a run that fails (the logits past a device limit) reports its
 * one-line error instead. With --fused both, `fusedVsTfjsRelError` compares every position's
 * logits of a 64-step forward.
 */

import {useBackend} from '../src/backend';
import {
  benchModel,
  emit,
  fusedVsTfjs,
  intArg,
  intList,
  modelShape,
  parseArgs,
  randomIds,
  syncOn,
} from '../src/bench/common';
import {fusedForwardConfig} from '../src/engines/webgpu_prefill';
import {tf} from '../src/tf';

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function modes(args: Record<string, string>, name: string): boolean[] {
  const v = args[name] ?? 'both';
  if (!['on', 'off', 'both'].includes(v)) throw new Error(`--${name} must be on, off or both, got ${v}`);
  return v === 'both' ? [true, false] : [v === 'on'];
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const backend = await useBackend(args.backend ?? 'webgpu');
  const {model, name} = await benchModel(args);
  const c = model.config;
  const batch = Math.max(1, intArg(args, 'batch', 1));
  const lens = intList(args.lens, [128, 2048], 'lens');
  const reps = Math.max(1, intArg(args, 'reps', 3));
  const headMb = intArg(args, 'head-mb', 256);
  if (headMb < 1 || headMb > 2048) throw new Error(`--head-mb must be in 1..2048, got ${headMb}`);
  fusedForwardConfig.headBytes = headMb * 2 ** 20;
  const runs: Record<string, unknown>[] = [];
  for (const fused of modes(args, 'fused')) {
    fusedForwardConfig.enabled = fused ? null : false;
    for (const len of lens) {
      const ids = randomIds(batch, len, c.vocab_size, 3);
      for (const last of modes(args, 'last')) {
        const once = async () => {
          const t0 = performance.now();
          const {logits} = model.forward({inputIds: ids, lastPositionOnly: last});
          await syncOn(logits);
          const ms = performance.now() - t0;
          logits.dispose();
          return ms;
        };
        const run: Record<string, unknown> = {fused, batch, len, lastPositionOnly: last};
        try {
          run.warmupMs = +(await once()).toFixed(1); // compiles, allocates
          const times: number[] = [];
          for (let i = 0; i < reps; i++) times.push(await once());
          run.forwardMs = +median(times).toFixed(1);
          run.forwardMsAll = times.map((x) => +x.toFixed(1));
          run.tokensPerSec = +(((len * batch) / median(times)) * 1000).toFixed(1);
        } catch (e) {
          run.error = (e as Error).message.split('\n')[0];
        }
        process.stderr.write(`${JSON.stringify(run)}\n`);
        runs.push(run);
      }
    }
  }
  let check: number | null = null;
  if (args.fused == null || args.fused === 'both') {
    check = await fusedVsTfjs(batch, c.vocab_size, (inputIds, fused) => {
      fusedForwardConfig.enabled = fused ? null : false;
      const {logits} = model.forward({inputIds});
      return {logits, dispose: () => logits.dispose()};
    });
  }
  fusedForwardConfig.enabled = null;
  emit(
    {
      model: name,
      backend,
      ...modelShape(model),
      weightDtype: model.weightDtype,
      headMb,
      numBytesInGPU: (tf.memory() as {numBytesInGPU?: number}).numBytesInGPU ?? null,
      runs,
      fusedVsTfjsRelError: check,
    },
    args.out,
  );
  model.dispose();
}

main().catch((e) => {
  console.error(`bench/forward: ${(e as Error).message}`);
  process.exitCode = 1;
});
