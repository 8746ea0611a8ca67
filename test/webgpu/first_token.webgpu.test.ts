/**
 * The first token through generate / stream on the fused WebGPU engines: the pick encoded into
 * the prefill's last submit (after its head, the logits left in the decode engine's buffer), the
 * step that feeds it queued behind in one submit of its own. The first tokens and the state after
 * prompt + first token against the cpu backend (prefill, then decodeStep of the token) and HF's
 * greedy golden, in one chunk and in chunks of 3; the GPU calls of a warm prefill and of a warm
 * first token, counted on the device (src/util/host_trace.ts); and an engine prepared ahead
 * (FusedPrefill.prepare, what generate awaits) whose run compiles and binds nothing.
 *
 * Tolerance: float32 on both sides, as test/webgpu/fused_prefill.webgpu.test.ts (1e-5 relative).
 */

import type {RecurrentGemmaConfigArgs} from '../../src/config';
import {fusedPrefillFor} from '../../src/engines/webgpu_prefill';
import type {GenerateOptions} from '../../src/generation/generate';
import {GenerationState} from '../../src/generation/state';
import {stepQueueStats} from '../../src/generation/step_queue';
import {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {countGpuCalls, countTfReads, gpuCalls, gpuCallsSince} from '../../src/util/host_trace';
import {initNodeWebGPU} from '../../src/webgpu_node';
import {loadTinyAGolden, TINY_A_DIR} from '../helpers';
import {describeWebGPU} from '../webgpu_env'; // first: sets the SwiftShader env before Dawn loads
import {stateArrays, worstOf} from './state_compare';

const TOL = 1e-5;

/** Each row's argmax (the first index of the maximum) of [b, V] logits. */
function argmaxRows(logits: Float32Array, b: number): number[] {
  const V = logits.length / b;
  return Array.from({length: b}, (_, r) => {
    let best = 0;
    for (let j = 1; j < V; j++) if (logits[r * V + j] > logits[r * V + best]) best = j;
    return best;
  });
}

const GREEDY: GenerateOptions = {temperature: 0, eosTokenId: []};

describeWebGPU('the first token picked in the fused prefill’s submit', () => {
  beforeAll(async () => {
    await initNodeWebGPU();
    await tf.setBackend('webgpu');
    const backend = tf.backend() as unknown as {device: GPUDevice};
    countGpuCalls(backend.device);
    countTfReads(backend);
  }, 120000);

  test(`tiny-a: first tokens and the state after prompt + first token equal cpu’s (${TOL}), greedy tokens HF’s golden`, async () => {
    const {golden} = loadTinyAGolden();
    const ids = golden.input_ids; // 2 rows
    const b = ids.length;
    // cpu: prefill, the argmax of its logits, decodeStep of those tokens.
    await tf.setBackend('cpu');
    const cpuModel = await RecurrentGemmaForCausalLM.fromPretrained(TINY_A_DIR);
    const cs = cpuModel.prefill(ids);
    const firstCpu = argmaxRows((await cs.logits.data()) as Float32Array, b);
    cpuModel.decodeStep(cs, firstCpu).logits.dispose();
    const cpu = await stateArrays(cs);
    cs.dispose();
    cpuModel.dispose();
    await tf.setBackend('webgpu');

    const model = await RecurrentGemmaForCausalLM.fromPretrained(TINY_A_DIR);
    for (const prefillChunkSize of [undefined, 3]) {
      const state = GenerationState.empty(model, b);
      const s0 = {...stepQueueStats};
      const out = await model.generate(ids, {...GREEDY, maxNewTokens: 1, state, prefillChunkSize});
      expect(stepQueueStats.firstWithPrefill - s0.firstWithPrefill).toBe(1);
      expect(out.map((r) => r[r.length - 1])).toEqual(firstCpu);
      expect(state.positions).toEqual(ids.map((r) => r.length + 1));
      const worst = worstOf(await stateArrays(state), cpu);
      console.log(`first token in the prefill's submit (chunk ${prefillChunkSize ?? 'whole'}): state vs cpu ${worst}`);
      expect(worst).toBeLessThan(TOL);
      state.dispose();
    }
    // HF's greedy golden, without a caller's state (the fresh engine state zeroed in the prefill's submit).
    const g = golden.greedy;
    const s0 = {...stepQueueStats};
    const seq = await model.generate(g.prompt, {...GREEDY, maxNewTokens: g.sequence[0].length - g.prompt[0].length});
    expect(seq).toEqual(g.sequence);
    expect(stepQueueStats.firstWithPrefill - s0.firstWithPrefill).toBe(1);
    model.dispose();
  }, 600000);

  test('GPU calls of a warm prefill and a warm first token: one submit each, one read, nothing compiled or bound', async () => {
    const model = await RecurrentGemmaForCausalLM.fromPretrained(TINY_A_DIR);
    const prompt = [[2, 342, 48, 451, 411, 374, 280, 400]];
    // Warm: engines, pipelines, bind groups.
    await model.generate(prompt, {...GREEDY, maxNewTokens: 2});
    model.prefill(prompt).dispose();

    // prefill: the state zeroed, the chunk, its head and the copy into the logits tensor in one
    // submit; the host writes dims, ids, positions and RoPE's table.
    let c0 = {...gpuCalls};
    const s = model.prefill(prompt);
    const pre = gpuCallsSince(c0);
    s.dispose();
    expect(pre).toMatchObject({submits: 1, writeBuffers: 4, mapAsyncs: 0, tfReads: 0});
    expect(pre).toMatchObject({pipelines: 0, shaderModules: 0, bindGroups: 0});

    // First token alone (maxNewTokens 1): [zero, chunk, head, argmax, copy to the read-back] in one
    // submit, one read; no step (nothing feeds a last token); one read-back buffer (the ring's
    // buffers are made as they are first used).
    c0 = {...gpuCalls};
    await model.generate(prompt, {...GREEDY, maxNewTokens: 1});
    const one = gpuCallsSince(c0);
    expect(one).toMatchObject({submits: 1, writeBuffers: 4, mapAsyncs: 1, tfReads: 0, buffers: 1});
    expect(one).toMatchObject({pipelines: 0, shaderModules: 0, bindGroups: 0});
    // Streaming two: at the first event, also the step feeding token 1 ([ids into the step, step]
    // in one submit, the step buffer written once) and token 2's pick, queued before the event
    // goes out (a submit and its read): two read-back buffers.
    c0 = {...gpuCalls};
    let first: ReturnType<typeof gpuCallsSince> | null = null;
    for await (const _ of model.stream(prompt, {...GREEDY, maxNewTokens: 2})) first ??= gpuCallsSince(c0);
    expect(first).toMatchObject({submits: 3, writeBuffers: 5, mapAsyncs: 2, tfReads: 0, buffers: 2});
    expect(first).toMatchObject({pipelines: 0, shaderModules: 0, bindGroups: 0});
    model.dispose();
  }, 600000);

  test('early submit: a chunk split after its first dispatches gives the bits of one submit, in two submits', async () => {
    const model = await RecurrentGemmaForCausalLM.fromPretrained(TINY_A_DIR);
    const prompt = [[2, 342, 48, 451, 411, 374, 280, 400, 9, 77]];
    const saved = process.env.GRIFFIN_PREFILL_EARLY_SUBMIT;
    const run = async (early: string) => {
      process.env.GRIFFIN_PREFILL_EARLY_SUBMIT = early;
      model.prefill(prompt).dispose(); // warm
      const c0 = {...gpuCalls};
      const s = model.prefill(prompt);
      const calls = gpuCallsSince(c0);
      const arrays = await stateArrays(s); // every layer's state, then the logits
      s.dispose();
      return {calls, arrays};
    };
    try {
      const one = await run('0');
      const two = await run('3');
      expect(one.calls.submits).toBe(1);
      expect(two.calls.submits).toBe(2);
      expect(two.arrays.length).toBe(one.arrays.length);
      two.arrays.forEach((a, i) => expect(Array.from(a)).toEqual(Array.from(one.arrays[i])));
      process.env.GRIFFIN_PREFILL_EARLY_SUBMIT = 'soon';
      expect(() => model.prefill(prompt)).toThrow(/GRIFFIN_PREFILL_EARLY_SUBMIT must be an integer/);
    } finally {
      if (saved == null) delete process.env.GRIFFIN_PREFILL_EARLY_SUBMIT;
      else process.env.GRIFFIN_PREFILL_EARLY_SUBMIT = saved;
      model.dispose();
    }
  }, 600000);

  test('an engine prepared for a chunk size compiles its pipelines ahead: its run makes no pipeline or bind group', async () => {
    // A shape of its own, so that no other test has compiled its kernels.
    const cfg: RecurrentGemmaConfigArgs = {
      vocab_size: 301,
      hidden_size: 48,
      lru_width: 56,
      intermediate_size: 88,
      num_attention_heads: 4,
      num_key_value_heads: 1,
      num_hidden_layers: 3,
      attention_window_size: 8,
      block_types: ['recurrent', 'attention'],
    };
    const model = new RecurrentGemmaForCausalLM(cfg);
    const ids = [[2, 7, 11, 13, 17, 19]];
    const pos = [[0, 1, 2, 3, 4, 5]];
    const pre = fusedPrefillFor(model, 1, ids[0].length)!;
    expect(pre).not.toBeNull();
    await expect(pre.prepare(0)).rejects.toThrow(/token rows/);
    let c0 = {...gpuCalls};
    await pre.prepare(ids[0].length);
    const prep = gpuCallsSince(c0);
    expect(prep.pipelines).toBeGreaterThan(0);
    c0 = {...gpuCalls};
    const logits = pre.run(ids, pos, true)!;
    const run = gpuCallsSince(c0);
    expect(run).toMatchObject({pipelines: 0, shaderModules: 0, bindGroups: 0, submits: 1});
    expect(logits.shape).toEqual([1, cfg.vocab_size]);
    logits.dispose();
    model.dispose();
  }, 600000);
});
