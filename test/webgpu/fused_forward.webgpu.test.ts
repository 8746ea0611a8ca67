/**
 * forward / predict on webgpu through the fused prefill engine (src/engines/webgpu_prefill/forward.ts):
 * every position's logits against HF's float64 golden (tiny-a) and against the tfjs ops on the cpu
 * backend on the same weights (random models, float32 and compact), a state passed in and out,
 * lastPositionOnly, the loss; and the inputs it leaves to tfjs ops (padding, gradients, ...),
 * whose results must still be the cpu's.
 *
 * Tolerances: as test/webgpu/fused_prefill.webgpu.test.ts: 1e-4 relative against HF's float64
 * logits (the tfjs paths' own parity bound), 1e-5 relative against the cpu backend (float32 on
 * both sides). A loss within 1e-5 of the golden, as test/model/parity.test.ts asks of tfjs.
 */

import {vocabSplit} from '../../layers/vocab_split';
import type {CompactSpec} from '../../ops/compact/format';
import type {RecurrentGemmaConfigArgs} from '../../src/config';
import type {ForwardInputs} from '../../src/core/model';
import {fusedDecodeConfig, fusedDecoderFor} from '../../src/engines/webgpu_decode';
import {fusedForwardConfig, fusedForwardEnabled, fusedPrefillConfig} from '../../src/engines/webgpu_prefill';
import * as fwd from '../../src/engines/webgpu_prefill/forward';
import {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {initNodeWebGPU} from '../../src/webgpu_node';
import {loadTinyAGolden, relError, TINY_A_DIR} from '../helpers';
import {describeWebGPU} from '../webgpu_env'; // first: sets the SwiftShader env before Dawn loads
import {uniform} from './kernel_helpers';
import {randomModel, SMALL_CFG} from './random_model';
import {layerArrays, worstOf} from './state_compare';

const TOL = 1e-5;
const GOLDEN_TOL = 1e-4;

const read = async (t: tf.Tensor) => Float32Array.from((await t.data()) as Float32Array);

/** f's value, and how many calls of fusedForward (through model.forward / predict) ran on the engine (not null). */
async function fusedCalls<T>(f: () => Promise<T>): Promise<{value: T; fused: number}> {
  const spy = jest.spyOn(fwd, 'fusedForward');
  try {
    const value = await f();
    return {value, fused: spy.mock.results.filter((r) => r.type === 'return' && r.value != null).length};
  } finally {
    spy.mockRestore();
  }
}

/** SMALL_CFG with 4096 tokens (several head slices of 64 rows at headBytes 1 MiB), 3 vocabulary pieces possible. */
const WIDE: RecurrentGemmaConfigArgs = {...SMALL_CFG, vocab_size: 4096};

/** b rows of t ids, seeded. */
function idsOf(b: number, t: number, V: number, seed: number): number[][] {
  const u = uniform(seed, b * t, 0, 1);
  return Array.from({length: b}, (_, r) => Array.from({length: t}, (_, j) => Math.floor(u[r * t + j] * V)));
}

describeWebGPU('forward / predict on the fused WebGPU prefill engine', () => {
  beforeAll(async () => {
    await initNodeWebGPU();
    tf.env().set('WEBGPU_MATMUL_PROGRAM_TYPE', 3);
    fusedDecodeConfig.enabled = true;
    fusedPrefillConfig.enabled = true;
    fusedForwardConfig.enabled = true;
    fusedPrefillConfig.scanSteps = 4;
  });
  afterAll(() => {
    tf.env().set('WEBGPU_MATMUL_PROGRAM_TYPE', -1);
    fusedDecodeConfig.enabled = null;
    fusedPrefillConfig.enabled = null;
    fusedForwardConfig.enabled = null;
    fusedPrefillConfig.scanSteps = 32;
    fusedPrefillConfig.maxChunk = 4096;
    fusedForwardConfig.headBytes = 256 * 2 ** 20;
    vocabSplit.maxPieceBytes = 0;
  });

  test(`tiny-a: every position's logits (forward, predict) equal the HF golden (${GOLDEN_TOL}) and cpu (${TOL}); the loss the golden's`, async () => {
    const {golden, tensor} = loadTinyAGolden();
    const G = tensor('logits') as Float32Array;
    const run = async () => {
      const model = await RecurrentGemmaForCausalLM.fromPretrained(TINY_A_DIR);
      const out = model.forward({inputIds: golden.input_ids, labels: golden.labels});
      expect(out.logits.shape).toEqual([2, golden.input_ids[0].length, 512]);
      const logits = await read(out.logits);
      const loss = (await out.loss!.data())[0];
      tf.dispose([out.logits, out.loss!]);
      const x = tf.tensor2d(golden.input_ids, undefined, 'int32');
      const p = model.predict(x) as tf.Tensor;
      const predicted = await read(p);
      tf.dispose([x, p]);
      model.dispose();
      return {logits, loss, predicted};
    };
    await tf.setBackend('cpu');
    const cpu = await run();
    await tf.setBackend('webgpu');
    const before = tf.memory().numTensors;
    const {value: gpu, fused} = await fusedCalls(run);
    expect(fused).toBe(2); // forward and predict both on the engine
    expect(tf.memory().numTensors).toBe(before);
    const vsGolden = relError(gpu.logits, G),
      vsCpu = relError(gpu.logits, cpu.logits);
    console.log(
      `tiny-a fused forward: vs golden ${vsGolden.toExponential(2)}, vs cpu ${vsCpu.toExponential(2)}, loss ${gpu.loss} (golden ${golden.loss})`,
    );
    expect(vsGolden).toBeLessThan(GOLDEN_TOL);
    expect(vsCpu).toBeLessThan(TOL);
    expect(Array.from(gpu.predicted)).toEqual(Array.from(gpu.logits));
    expect(relError(cpu.predicted, G)).toBeLessThan(GOLDEN_TOL);
    expect(Math.abs(gpu.loss - golden.loss)).toBeLessThan(1e-5);
  });

  /**
   * On the current backend: forward over the first `split` steps (state out), forward over the rest
   * from that state (packed rows in the second part), lastPositionOnly over all, and predict.
   */
  async function wideRun(model: RecurrentGemmaForCausalLM, ids: number[][], split: number) {
    const b = ids.length,
      t = ids[0].length;
    const first = ids.map((r) => r.slice(0, split));
    const rest = ids.map((r) => r.slice(split));
    const a = model.forward({inputIds: first, returnState: true});
    // Row 1 starts a new document 3 steps into the second part.
    const pos = rest.map((r, i) => r.map((_, j) => (i === 1 && j >= 3 ? j - 3 : split + j)));
    const c = model.forward({inputIds: rest, positionIds: pos, state: a.state, returnState: true});
    const last = model.forward({inputIds: ids, lastPositionOnly: true});
    const all = model.forward({inputIds: ids});
    expect(all.logits.shape).toEqual([b, t, model.config.vocab_size]);
    expect(last.logits.shape).toEqual([b, 1, model.config.vocab_size]);
    const out = {
      first: await read(a.logits),
      rest: await read(c.logits),
      last: await read(last.logits),
      all: await read(all.logits),
      stateA: await layerArrays(a.state!),
      stateC: await layerArrays(c.state!),
    };
    tf.dispose([a.logits, c.logits, last.logits, all.logits]);
    tf.dispose([...a.state!, ...c.state!].flatMap((s) => Object.values(s as unknown as Record<string, tf.Tensor>)));
    return out;
  }

  test.each([
    [
      'float32, vocabulary in 3 pieces, chunks of 48 (head slices of 64 rows across batch rows)',
      undefined,
      48,
      1400 * 32 * 4,
      70,
    ],
    [
      'int4 g32 zero points (widths of 32s), 30 steps in chunks of 16',
      {dtype: 'int4', groupSize: 32, zeroPoints: true} as CompactSpec,
      16,
      0,
      30,
    ],
    ['bfloat16, 30 steps in one chunk', {dtype: 'bfloat16'} as CompactSpec, 4096, 0, 30],
  ])(
    `random model, b = 2, past the window of 8, untied head, soft cap 10, %s: forward = cpu (${TOL}), state in and out`,
    async (_n, compact, maxChunk, pieceBytes, t) => {
      const ids = idsOf(2, t, WIDE.vocab_size!, 5);
      // int4 groups of 32 must divide every matrix's width.
      const cfg = compact?.dtype === 'int4' ? {...WIDE, lru_width: 64, intermediate_size: 128} : WIDE;
      vocabSplit.maxPieceBytes = pieceBytes;
      fusedPrefillConfig.maxChunk = maxChunk;
      fusedForwardConfig.headBytes = 2 ** 20; // 64 rows of 4096 logits per slice
      try {
        await tf.setBackend('cpu');
        const cpuModel = randomModel(cfg, 3, compact);
        const cpu = await wideRun(cpuModel, ids, t - 20);
        cpuModel.dispose();
        await tf.setBackend('webgpu');
        const model = randomModel(cfg, 3, compact);
        if (pieceBytes > 0) expect(model.lmHead!.matrix.pieces.length).toBe(3);
        const before = tf.memory().numTensors;
        const {value: gpu, fused} = await fusedCalls(() => wideRun(model, ids, t - 20));
        expect(fused).toBe(4);
        expect(tf.memory().numTensors).toBe(before);
        model.dispose();
        const worst = {
          first: relError(gpu.first, cpu.first),
          rest: relError(gpu.rest, cpu.rest),
          last: relError(gpu.last, cpu.last),
          all: relError(gpu.all, cpu.all),
          stateA: worstOf(gpu.stateA, cpu.stateA),
          stateC: worstOf(gpu.stateC, cpu.stateC),
        };
        console.log(`${_n}: fused forward vs cpu ${JSON.stringify(worst)}`);
        for (const v of Object.values(worst)) expect(v).toBeLessThan(TOL);
      } finally {
        vocabSplit.maxPieceBytes = 0;
        fusedPrefillConfig.maxChunk = 4096;
        fusedForwardConfig.headBytes = 256 * 2 ** 20;
      }
    },
  );

  test('a generation state living in the decode engine survives a forward in between', async () => {
    const ids = idsOf(2, 12, WIDE.vocab_size!, 9);
    const run = async () => {
      const model = randomModel(WIDE, 4);
      const state = model.prefill(ids);
      const onEngine = tf.getBackend() === 'webgpu' ? fusedDecoderFor(model, 2)?.owner === (state as unknown) : true;
      const other = model.forward({inputIds: idsOf(2, 9, WIDE.vocab_size!, 10)});
      const mid = await read(other.logits);
      other.logits.dispose();
      const {logits} = model.decodeStep(state, [5, 6]);
      const after = await read(logits);
      logits.dispose();
      state.dispose();
      model.dispose();
      return {mid, after, onEngine};
    };
    await tf.setBackend('cpu');
    const cpu = await run();
    await tf.setBackend('webgpu');
    const gpu = await run();
    expect(gpu.onEngine).toBe(true);
    expect(relError(gpu.mid, cpu.mid)).toBeLessThan(TOL);
    expect(relError(gpu.after, cpu.after)).toBeLessThan(TOL);
  });

  test('inputs the engine leaves to tfjs ops: fusedForward declines them, model.forward still equals cpu', async () => {
    const cfg = {...WIDE, vocab_size: 203};
    const ids = idsOf(2, 10, 203, 12);
    const mask = [Array(10).fill(1), [0, 0, 1, 1, 1, 1, 1, 1, 1, 1]];
    const cases: [string, (m: RecurrentGemmaForCausalLM) => ForwardInputs][] = [
      ['padding', () => ({inputIds: ids, attentionMask: mask})],
      ['positions that skip', () => ({inputIds: ids, positionIds: ids.map((r) => r.map((_, j) => 2 * j))})],
      ['gradient checkpointing', () => ({inputIds: ids, labels: ids, gradientCheckpointing: true})],
      ['hidden states', () => ({inputIds: ids, outputHiddenStates: true})],
      [
        'a state with a null layer',
        (m) => ({inputIds: ids, state: m.blocks.map((blk, i) => (i === 0 ? null : blk.initState(2)))}),
      ],
    ];
    const run = async (check: boolean) => {
      const model = randomModel(cfg, 6);
      const out: Float32Array[] = [];
      for (const [name, inputs] of cases) {
        const inp = inputs(model);
        if (check) expect([name, fwd.fusedForward(model, inp)]).toEqual([name, null]);
        const r = model.forward(inp);
        out.push(await read(r.logits));
        tf.dispose([r.logits, ...(r.loss ? [r.loss] : []), ...(r.hiddenStates ?? [])]);
        for (const s of inp.state ?? [])
          if (s != null) tf.dispose(Object.values(s as unknown as Record<string, tf.Tensor>));
      }
      // Gradients being recorded: the engine's tensors have none, so tfjs ops run.
      const params = [...model.namedParameters().values()].map((v) => v.read() as tf.Variable);
      const {value, grads} = tf.variableGrads(() => {
        if (check) expect(fwd.fusedForward(model, {inputIds: ids, labels: ids})).toBeNull();
        return model.forward({inputIds: ids, labels: ids}).loss!;
      }, params);
      out.push(await read(value));
      out.push(await read(grads[params[0].name]));
      tf.dispose([value, ...Object.values(grads)]);
      // Switched off: null, and the tfjs result.
      fusedForwardConfig.enabled = false;
      try {
        if (check) expect(fwd.fusedForward(model, {inputIds: ids})).toBeNull();
      } finally {
        fusedForwardConfig.enabled = true;
      }
      // An id outside the vocabulary: tfjs's error.
      expect(() => model.forward({inputIds: [[1, 203]]})).toThrow('token id 203 is outside the vocabulary [0, 203)');
      model.dispose();
      return out;
    };
    await tf.setBackend('cpu');
    const cpu = await run(false);
    await tf.setBackend('webgpu');
    const gpu = await run(true);
    // The webgpu backend's own ops: the tfjs paths' tolerance against cpu (loose: different kernels).
    cpu.forEach((c, i) => expect([i, relError(gpu[i], c) < 1e-4]).toEqual([i, true]));
  });

  test('GRIFFIN_FUSED_FORWARD=0 (or GRIFFIN_FUSED_PREFILL=0) turns it off when the config leaves it to the env', () => {
    const saved = {f: process.env.GRIFFIN_FUSED_FORWARD, p: process.env.GRIFFIN_FUSED_PREFILL};
    const restore = (k: string, v: string | undefined) => {
      if (v == null) delete process.env[k];
      else process.env[k] = v;
    };
    fusedForwardConfig.enabled = null;
    fusedPrefillConfig.enabled = null;
    try {
      const seen: boolean[] = [];
      for (const [f, p] of [
        [undefined, undefined],
        ['0', undefined],
        ['off', undefined],
        ['1', undefined],
        [undefined, '0'],
      ]) {
        restore('GRIFFIN_FUSED_FORWARD', f);
        restore('GRIFFIN_FUSED_PREFILL', p);
        seen.push(fusedForwardEnabled());
      }
      expect(seen).toEqual([true, false, false, true, false]);
    } finally {
      restore('GRIFFIN_FUSED_FORWARD', saved.f);
      restore('GRIFFIN_FUSED_PREFILL', saved.p);
      fusedForwardConfig.enabled = true;
      fusedPrefillConfig.enabled = true;
    }
  });

  test('logits past the largest buffer are refused with a one-line error', async () => {
    await tf.setBackend('webgpu');
    const model = randomModel({...WIDE, vocab_size: 203}, 7);
    const dev = (tf.backend() as unknown as {device: GPUDevice}).device;
    const t = Math.ceil(dev.limits.maxBufferSize / (203 * 4)) + 1;
    if (t > 2 ** 24) {
      console.log(`maxBufferSize ${dev.limits.maxBufferSize}: too many ids to make here, refusal not tested`);
      model.dispose();
      return;
    }
    // Only the shape is read before the refusal: a tensor of zeros stands for the ids.
    const ids = tf.zeros([1, t], 'int32');
    try {
      expect(() => model.forward({inputIds: ids})).toThrow(
        /^forward: logits \[1, \d+, 203\] take .* GiB, past the device's largest buffer/,
      );
    } finally {
      ids.dispose();
      model.dispose();
    }
  });
});
