/**
 * Whole-model speed with random weights: the full forward at several lengths, prefill of a long
 * prompt and greedy decoding at several batch sizes, with the number of tfjs kernels and GPU
 * dispatches per decoded token. Prints a table, then JSON.
 *   npx tsx bench/model.ts --backend webgpu --out bench/results/2026-01-01-h200-model.json   # 2B-shaped
 *   npx tsx bench/model.ts --config tiny --backend cpu                                       # quick
 *
 * Options: --config 2b|9b|mid|small|tiny (common.ts CONFIGS; 2b: RecurrentGemma-2B's shape, 2.7B parameters), --layers N
 * and --vocab N (shrink a config), --backend webgpu|cpu|wasm (webgpu), --seq 128,2048 (forward
 * lengths), --forward-batch 1, --prefill 2048 (prompt length; 0 skips), --batches 1,8 (prefill
 * and decode), --decode-tokens 32, --reps 3, --chunk 512 (prefill chunk), --submit-batch N
 * (webgpu: dispatches per queue submit, tfjs's default 15), --fused-conv 0 (the composite
 * convolution instead of ops/causal_conv1d's kernel), --out FILE.
 * Memory: 2b needs ~11 GB for weights plus ~7 GB of activations at t = 2048 (the [t, 256000]
 * logits alone are 2 GB, three times over through the soft cap).
 */

import {maxPieceBytes} from '../layers/vocab_split';
import {causalConv1dConfig} from '../ops/causal_conv1d';
import {
  Args,
  configArg,
  DispatchCounter,
  describe,
  emit,
  fail,
  intArg,
  intList,
  modelShape,
  parseArgs,
  printTable,
  randomIds,
  randomizeWeights,
  setup,
  syncOn,
  timeIt,
} from '../src/bench/common';
import {RecurrentGemmaForCausalLM} from '../src/model';
import {tf} from '../src/tf';

const round = (x: number, d = 3) => +x.toFixed(d);

async function main(args: Args): Promise<void> {
  const env = await setup(args.backend);
  const name = args.config ?? '2b';
  const cfg = configArg(args, name);
  const small = name === 'tiny';
  const seqs = intList(args.seq, small ? [16, 128] : [128, 2048], 'seq');
  const forwardBatch = intArg(args, 'forward-batch', 1);
  const prefillLen = intArg(args, 'prefill', small ? 128 : 2048);
  const batches = intList(args.batches, [1, 8], 'batches');
  const decodeTokens = intArg(args, 'decode-tokens', 32);
  const reps = intArg(args, 'reps', 3);
  const chunk = intArg(args, 'chunk', 512);
  // tfjs-webgpu submits its command encoder every N dispatches (default 15): a knob worth
  // measuring when decoding is dispatch-bound.
  const submitBatch = args['submit-batch'] != null ? intArg(args, 'submit-batch', 15) : null;
  if (submitBatch != null && env.backend === 'webgpu') tf.env().set('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE', submitBatch);
  // --fused-conv 0: the composite convolution instead of the fused kernel, to measure what it saves.
  causalConv1dConfig.enabled = args['fused-conv'] !== '0';

  console.error(`model ${name}: ${describe(env)}`);
  let t0 = performance.now();
  const model = new RecurrentGemmaForCausalLM(cfg, {init: 'zeros'});
  randomizeWeights(model);
  await syncOn(model.embed.matrix.pieces[0].variable.read());
  const c = model.config;
  const info = {
    config: name,
    ...modelShape(model),
    embeddingPieces: model.embed.matrix.pieces.length,
    maxPieceBytes: Number.isFinite(maxPieceBytes()) ? maxPieceBytes() : null,
    initMs: round(performance.now() - t0, 1),
  };
  console.error(
    `  ${info.params} parameters, embedding in ${info.embeddingPieces} piece(s), built in ${info.initMs} ms`,
  );

  const rows: Record<string, unknown>[] = [];
  const counter = new DispatchCounter().install();
  const dispatchCounts: Record<string, unknown> = {};

  // Full forward (what training and scoring run): logits for every position.
  for (const t of seqs) {
    const ids = randomIds(forwardBatch, t, c.vocab_size, t);
    counter.reset();
    const first = performance.now();
    const l = model.forward({inputIds: ids}).logits;
    await syncOn(l);
    l.dispose();
    const firstMs = performance.now() - first;
    const counts = counter.snapshot();
    const r = await timeIt(() => [model.forward({inputIds: ids}).logits], {reps, warmup: 0});
    const tokens = forwardBatch * t;
    rows.push({
      what: 'forward',
      b: forwardBatch,
      t,
      ms: r.ms,
      tokPerS: round((tokens / r.ms) * 1000, 1),
      firstMs: round(firstMs, 1),
      kernels: counts.kernels,
      dispatches: counts.dispatches,
    });
    console.error(`  forward b=${forwardBatch} t=${t}: ${r.ms} ms (first ${round(firstMs, 1)} ms)`);
    if (t === seqs[0]) dispatchCounts[`forward_t${t}`] = counts;
  }

  // Prefill a long prompt, then greedy decoding (argmax read back each step, as a caller would).
  for (const b of prefillLen > 0 ? batches : []) {
    const prompt = randomIds(b, prefillLen, c.vocab_size, 7 + b);
    // Warm-up: the first prefill compiles the chunk shapes.
    model.prefill(prompt, {chunkSize: chunk}).dispose();
    t0 = performance.now();
    const state = model.prefill(prompt, {chunkSize: chunk});
    await syncOn(state.logits);
    const prefillMs = performance.now() - t0;
    rows.push({
      what: 'prefill',
      b,
      t: prefillLen,
      ms: round(prefillMs),
      tokPerS: round(((b * prefillLen) / prefillMs) * 1000, 1),
    });
    console.error(`  prefill b=${b} t=${prefillLen}: ${round(prefillMs)} ms`);

    const greedy = async (logits: tf.Tensor) => {
      const next = tf.argMax(logits, -1);
      const ids = Array.from(await next.data());
      next.dispose();
      return ids;
    };
    let ids = await greedy(state.logits);
    for (let i = 0; i < 3; i++) {
      // warm-up steps
      const {logits} = model.decodeStep(state, ids);
      ids = await greedy(logits);
      logits.dispose();
    }
    counter.reset();
    const {logits: l1} = model.decodeStep(state, ids);
    ids = await greedy(l1);
    l1.dispose();
    const perToken = counter.snapshot();
    dispatchCounts[`decode_b${b}`] = perToken;
    // hostMs: the JavaScript time to issue one step (tfjs and Dawn encoding the dispatches);
    // when it is close to ms, decoding is bound by the host, not the GPU.
    let hostMs = 0;
    t0 = performance.now();
    for (let i = 0; i < decodeTokens; i++) {
      const h0 = performance.now();
      const {logits} = model.decodeStep(state, ids);
      hostMs += performance.now() - h0;
      ids = await greedy(logits);
      logits.dispose();
    }
    const ms = (performance.now() - t0) / Math.max(decodeTokens, 1);
    hostMs /= Math.max(decodeTokens, 1);
    state.dispose();
    rows.push({
      what: 'decode',
      b,
      t: prefillLen,
      ms: round(ms),
      hostMs: round(hostMs),
      tokPerS: round((b / ms) * 1000, 1),
      kernels: perToken.kernels,
      dispatches: perToken.dispatches,
    });
    console.error(`  decode b=${b}: ${round(ms)} ms/step, ${perToken.dispatches} dispatches/step`);
  }
  counter.uninstall();

  console.log(`model ${name} (${info.params} params), ${describe(env)}`);
  console.log(
    'ms: median per forward / per prefill / per decode step (one token per row); kernels, dispatches: per forward or per decode step',
  );
  printTable(rows, ['what', 'b', 't', 'ms', 'hostMs', 'tokPerS', 'firstMs', 'kernels', 'dispatches']);
  emit(
    {
      bench: 'model',
      environment: env,
      model: info,
      options: {
        seqs,
        forwardBatch,
        prefillLen,
        batches,
        decodeTokens,
        reps,
        chunk,
        submitBatch,
        fusedConv: causalConv1dConfig.enabled,
      },
      rows,
      dispatchCounts,
      memory: tf.memory(),
    },
    args.out,
  );
  model.dispose();
}

main(parseArgs(process.argv.slice(2))).catch((e) => fail('bench/model', e));
