/**
 * The greedy pick inside the fused decode step (shaders/argmax.ts, FusedDecoder.stepAhead with
 * argmax) on SwiftShader: the two kernels against a plain host argmax on random rows (b = 1, 3,
 * 8; ties across and within slices, NaN, a row of NaN, slice counts that do not divide the row),
 * the ids written into the step buffer and nothing else of it; then an engine's steps whose ids
 * never leave the GPU against the argmax of its own logits; greedy generation with the picks
 * inside the plan against the separate pick (GRIFFIN_FUSED_ARGMAX=0 path) and the host path;
 * and the dispatches per step, counted by hand from the model's layers.
 */

import {disposeFusedDecoders, fusedDecoderFor} from '../../src/engines/webgpu_decode';
import {
  argmaxCandWords,
  argmaxFinalSource,
  argmaxGroups,
  argmaxPartSource,
  stepLayout,
} from '../../src/engines/webgpu_decode/shaders';
import {fusedTuning} from '../../src/engines/webgpu_decode/tuning';
import {GenerationState} from '../../src/generation/state';
import {queuedDecodeConfig, stepQueueStats} from '../../src/generation/step_queue';
import {tf} from '../../src/tf';
import {initNodeWebGPU} from '../../src/webgpu_node';
import {describeWebGPU} from '../webgpu_env'; // first: sets the SwiftShader env before Dawn loads
import {runKernel, uniform} from './kernel_helpers';
import {SMALL_CFG as CFG, randomModel} from './random_model';

/** First index of the largest non-NaN value per row, -1 for a row of NaN. */
function hostArgmax(x: Float32Array, b: number, n: number): number[] {
  return Array.from({length: b}, (_, r) => {
    let best = -1;
    for (let i = 0; i < n; i++) {
      const v = x[r * n + i];
      if (!Number.isNaN(v) && (best < 0 || v > x[r * n + best])) best = i;
    }
    return best;
  });
}

describeWebGPU('greedy pick inside the fused decode step', () => {
  beforeAll(async () => {
    await initNodeWebGPU();
    await tf.setBackend('webgpu');
  }, 120000);

  test.each([
    [1, 1000, 1],
    [1, 1000, 7],
    [3, 1000, 4],
    [3, 4099, argmaxGroups(4099)],
    [8, 777, 16],
    [8, 5000, 3],
  ])('kernels: b %i, V %i, %i slices per row: the host argmax, written into the step ids', async (B, V, G) => {
    const x = uniform(B * 31 + V + G, B * V, -3, 3);
    // Row 0: a tie of the maximum in two slices (the first wins), and within one slice.
    x[0 * V + 5] = 9;
    x[0 * V + V - 2] = 9;
    x[0 * V + 6] = 9;
    if (B > 1) {
      x[1 * V + 0] = NaN; // NaN first, then the maximum last
      x[1 * V + V - 1] = 8;
      x.fill(NaN, 2 * V, 3 * V); // row 2: nothing but NaN
    }
    if (B > 3) x[5 * V + Math.floor(V / 2)] = -1e30 + 4; // a row whose maximum is ordinary
    const step = stepLayout(B, 2);
    const spec = {B, V, G, T: 64, step};
    const [, cand] = await runKernel(argmaxPartSource(spec), [x, new Uint32Array(argmaxCandWords(spec))], [G, B, 1]);
    const stepWords = Uint32Array.from({length: step.words}, (_, i) => 1000 + i);
    const [, stepOut, ids] = await runKernel(
      argmaxFinalSource(spec),
      [new Uint32Array(cand.buffer), stepWords, new Uint32Array(B)],
      [B, 1, 1],
    );
    const want = hostArgmax(x, B, V);
    expect(Array.from(new Int32Array(ids.buffer))).toEqual(want);
    const s = new Uint32Array(stepOut.buffer);
    expect(Array.from(new Int32Array(s.buffer, 0, B))).toEqual(want);
    expect(Array.from(s.slice(B))).toEqual(Array.from(stepWords.slice(B)));
    expect(want[0]).toBe(5);
    if (B > 1) expect(want.slice(1, 3)).toEqual([V - 1, -1]);
  });

  test('dispatches per step: 5 per recurrent layer, 6 per attention layer with RoPE folded in (7 without), 2 for the greedy pick', () => {
    const model = randomModel(CFG, 4);
    // 3 layers: recurrent, attention, recurrent; one embedding piece, one head piece.
    const names = (rope: number) => {
      fusedTuning.rope = rope;
      disposeFusedDecoders(model);
      try {
        const eng = fusedDecoderFor(model, 2)!;
        return {names: eng.dispatchNames, count: eng.dispatchCount, argmax: eng.argmaxDispatchCount};
      } finally {
        fusedTuning.rope = 0;
        disposeFusedDecoders(model);
      }
    };
    const fused = names(2),
      separate = names(1);
    expect(fused.count).toBe(1 + 5 + 6 + 5 + 1);
    expect(separate.count).toBe(1 + 5 + 7 + 5 + 1);
    expect(fused.names.some((n) => n.endsWith('.rope'))).toBe(false);
    expect(separate.names.filter((n) => n.endsWith('.rope'))).toEqual(['L1.rope']);
    expect(fused.argmax).toBe(2);
    model.dispose();
  });

  test('engine: steps fed by their own picks equal steps fed the argmax of the logits read back (b = 1, 3)', async () => {
    const model = randomModel(CFG, 5);
    for (const B of [1, 3]) {
      const prompts = Array.from({length: B}, (_, r) => [2, 7 + r, 11, 40 + r]);
      // Reference: decodeStep with the host's argmax of each step's logits.
      const ref = model.prefill(prompts);
      const refIds: number[][] = [];
      let logits = Float32Array.from((await ref.logits.data()) as Float32Array);
      for (let i = 0; i < 6; i++) {
        const ids = hostArgmax(logits, B, CFG.vocab_size!);
        refIds.push(ids);
        const out = model.decodeStep(ref, ids);
        logits = Float32Array.from((await out.logits.data()) as Float32Array);
      }
      refIds.push(hostArgmax(logits, B, CFG.vocab_size!));
      ref.dispose();
      // The engine: the first ids from the prefill's logits (host), then each step's own pick.
      const s = model.prefill(prompts);
      const eng = fusedDecoderFor(model, B)!;
      expect(eng).not.toBeNull();
      const first = hostArgmax(Float32Array.from((await s.logits.data()) as Float32Array), B, CFG.vocab_size!);
      const device = eng.device;
      const got: number[][] = [first];
      const read = device.createBuffer({size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST});
      for (let i = 0; i < 6; i++) {
        s.fusedStepAhead(
          eng,
          (enc, stepBuf, at) => {
            if (i === 0) {
              const w = device.createBuffer({size: 16, usage: GPUBufferUsage.COPY_SRC, mappedAtCreation: true});
              new Int32Array(w.getMappedRange()).set(first);
              w.unmap();
              enc.copyBufferToBuffer(w, 0, stepBuf, at, B * 4);
            } else expect(eng.greedyIds).not.toBeNull();
          },
          {argmax: true},
        );
        const enc = device.createCommandEncoder();
        enc.copyBufferToBuffer(eng.greedyIds!, 0, read, 0, 16);
        device.queue.submit([enc.finish()]);
        await read.mapAsync(GPUMapMode.READ);
        got.push(Array.from(new Int32Array(read.getMappedRange().slice(0, B * 4))));
        read.unmap();
      }
      read.destroy();
      expect(got).toEqual(refIds);
      // Reading the logits does not change them; a plain step makes the picks stale.
      const last = Float32Array.from((await s.logits.data()) as Float32Array);
      expect(hostArgmax(last, B, CFG.vocab_size!)).toEqual(refIds[6]);
      model.decodeStep(s, refIds[6]).logits.dispose();
      expect(eng.greedyIds).toBeNull();
      s.dispose();
    }
    model.dispose();
  }, 300000);

  test('generate: greedy picks inside the plan give the tokens of the separate pick and of the host path (b = 1, 3)', async () => {
    const model = randomModel(CFG, 8);
    const prompts = [
      [2, 5, 9, 11, 40],
      [2, 7, 8, 12, 13],
      [2, 100, 101, 102, 103],
    ];
    const opts = {maxNewTokens: 9, temperature: 0, eosTokenId: [] as number[]};
    for (const rows of [[0], [0, 1, 2]]) {
      const ps = rows.map((r) => prompts[r]);
      const run = async (queued: boolean, argmax: number) => {
        queuedDecodeConfig.enabled = queued;
        fusedTuning.argmax = argmax;
        const s0 = {...stepQueueStats};
        try {
          const out = await model.generate(ps, opts);
          return {out, inPlan: stepQueueStats.inPlanPicks - s0.inPlanPicks, picks: stepQueueStats.picks - s0.picks};
        } finally {
          queuedDecodeConfig.enabled = null;
          fusedTuning.argmax = 0;
        }
      };
      const host = await run(false, 0);
      const separate = await run(true, -1);
      const inPlan = await run(true, 1);
      expect(separate.out).toEqual(host.out);
      expect(inPlan.out).toEqual(host.out);
      expect(separate.inPlan).toBe(0);
      // The first pick is from the prefill's logits; every later one was taken by the step before.
      expect(inPlan.picks).toBe(9);
      expect(inPlan.inPlan).toBe(8);
    }
    // A caller's state: the state afterwards equals the host path's.
    const states: number[][][] = [];
    for (const argmax of [1, 0]) {
      const state = GenerationState.empty(model, 1);
      queuedDecodeConfig.enabled = argmax === 1;
      fusedTuning.argmax = argmax;
      await model.generate([prompts[0]], {...opts, state});
      queuedDecodeConfig.enabled = null;
      fusedTuning.argmax = 0;
      states.push(await Promise.all(state.tensors().map(async (t) => Array.from(await t.data()))));
      state.dispose();
    }
    expect(states[0]).toEqual(states[1]);
    model.dispose();
  }, 300000);
});
