/**
 * GriffinRowArgmax (ops/row_argmax) on webgpu against the host rule it must reproduce (the first
 * index of the maximum, NaN never wins, -1 for a row of NaN), on random rows and on the cases
 * that tell a careless reduction apart: ties across invocations, the maximum at either end,
 * -Infinity everywhere, rows shorter than the workgroup.
 */

import * as fs from 'fs';
import * as path from 'path';
import {rowArgmax, rowArgmaxAvailable, rowArgmaxReference} from '../../ops/row_argmax';
import {Sampler} from '../../src/generation/sampling';
import {queuedDecodeConfig, stepQueueStats} from '../../src/generation/step_queue';
import {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {initNodeWebGPU} from '../../src/webgpu_node';
import {seededUniform} from '../helpers';
import {describeWebGPU} from '../webgpu_env'; // first: sets the SwiftShader env before Dawn loads

async function onGpu(x: Float32Array, b: number, n: number): Promise<number[]> {
  const t = tf.tensor2d(x, [b, n]);
  const ids = rowArgmax(t)!;
  const out = Array.from(await ids.data());
  tf.dispose([t, ids]);
  return out;
}

describeWebGPU('row argmax on webgpu', () => {
  beforeAll(async () => {
    await initNodeWebGPU();
  }, 120000);

  test('is registered on webgpu', () => {
    expect(rowArgmaxAvailable()).toBe(true);
  });

  test.each([
    [1, 256000],
    [3, 4096],
    [8, 1000],
    [2, 7],
    [5, 1],
  ])('b=%i n=%i: random rows equal the host rule and the greedy sampler', async (b, n) => {
    const r = seededUniform(b * 7 + n);
    const x = Float32Array.from({length: b * n}, () => 20 * r() - 10);
    const got = await onGpu(x, b, n);
    const want = Array.from(rowArgmaxReference(x, b, n));
    expect(got).toEqual(want);
    // The reference is the sampler's greedy pick.
    const greedy = new Sampler({});
    for (let row = 0; row < b; row++) expect(greedy.next(x.subarray(row * n, (row + 1) * n), [])).toBe(want[row]);
  });

  test('ties go to the first index, across invocations and rows; the ends of a row count', async () => {
    const n = 5000;
    const rows = [
      (i: number) => (i === 1234 || i === 4321 || i === 3000 ? 7 : 1), // three-way tie: 1234
      (i: number) => (i === n - 1 ? 2 : 1), // last element
      (i: number) => (i === 0 ? 2 : 1), // first element
      (i: number) => (i % 256 === 17 ? 3 : 0), // tie in every invocation's share: 17
      () => 5, // all equal: 0
    ];
    const x = new Float32Array(rows.length * n);
    rows.forEach((f, r) => {
      for (let i = 0; i < n; i++) x[r * n + i] = f(i);
    });
    expect(await onGpu(x, rows.length, n)).toEqual([1234, n - 1, 0, 17, 0]);
  });

  test('NaN never wins; -Infinity can; a row of NaN gives -1', async () => {
    const n = 600;
    const x = new Float32Array(4 * n);
    for (let i = 0; i < n; i++) {
      x[i] = i === 10 ? NaN : i === 11 ? 4 : 0; // NaN before the max
      x[n + i] = -Infinity; // all -Infinity: index 0
      x[2 * n + i] = i < 300 ? NaN : i === 450 ? -Infinity : NaN; // the only non-NaN is -Infinity
      x[3 * n + i] = NaN;
    }
    const got = await onGpu(x, 4, n);
    expect(got).toEqual([11, 0, 450, -1]);
    expect(got).toEqual(Array.from(rowArgmaxReference(x, 4, n)));
  });

  test('rejects what is not [b, n] float32', () => {
    expect(() => rowArgmax(tf.zeros([2, 3, 4]))).toThrow(/\[b, n\] float32/);
    expect(() => rowArgmax(tf.zeros([2, 3], 'int32'))).toThrow(/\[b, n\] float32/);
  });
});

describeWebGPU('greedy generation takes the argmax on the GPU', () => {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const argmaxModule = require('../../ops/row_argmax') as typeof import('../../ops/row_argmax');
  const DIR = path.join(__dirname, '../fixtures/tiny-a');

  beforeAll(async () => {
    await initNodeWebGPU();
  }, 120000);
  afterEach(() => jest.restoreAllMocks());

  test('greedy: one rowArgmax per step, tokens equal the HF golden and the cpu backend for a batch of three', async () => {
    const golden = JSON.parse(fs.readFileSync(path.join(DIR, 'golden.json'), 'utf8')).greedy as {
      prompt: number[][];
      sequence: number[][];
    };
    const steps = golden.sequence[0].length - golden.prompt[0].length;
    const p = golden.prompt[0];
    // Three rows, left-padded to one length: the golden prompt and two of its suffixes.
    const prompts = [p, [0, 0, ...p.slice(2)], [0, 0, 0, 0, 0, ...p.slice(5)]];
    const mask = prompts.map((r, i) => r.map((_, j) => (j < [0, 2, 5][i] ? 0 : 1)));
    // queued: steps queued ahead of the host (src/generation/step_queue.ts), whose argmax is the
    // plain-WebGPU runner of the same WGSL; off: the ids of each step read back through rowArgmax.
    const run = async (backend: string, queued = false) => {
      await tf.setBackend(backend);
      queuedDecodeConfig.enabled = queued;
      const model = await RecurrentGemmaForCausalLM.fromPretrained(DIR);
      const spy = jest.spyOn(argmaxModule, 'rowArgmax');
      const picks0 = stepQueueStats.picks;
      const out = await model.generate(prompts, {
        attentionMask: mask,
        maxNewTokens: steps,
        temperature: 0,
        eosTokenId: [],
      });
      const calls = spy.mock.calls.length;
      spy.mockRestore();
      model.dispose();
      queuedDecodeConfig.enabled = null;
      return {out, calls, queuedPicks: stepQueueStats.picks - picks0};
    };
    const gpu = await run('webgpu');
    const queued = await run('webgpu', true);
    const cpu = await run('cpu');
    await tf.setBackend('webgpu');
    expect(gpu.calls).toBe(steps); // every step, on the device
    expect(gpu.out[0]).toEqual(golden.sequence[0]);
    expect(gpu.out).toEqual(cpu.out);
    expect([queued.calls, queued.queuedPicks]).toEqual([0, steps]);
    expect(queued.out).toEqual(cpu.out);
  });

  test('a repetition penalty or a temperature: no rowArgmax, the GPU sampler picks each step', async () => {
    await tf.setBackend('webgpu');
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const gpuSampling =
      require('../../src/generation/gpu_sampling') as typeof import('../../src/generation/gpu_sampling');
    const model = await RecurrentGemmaForCausalLM.fromPretrained(DIR);
    const spy = jest.spyOn(argmaxModule, 'rowArgmax');
    const pick = jest.spyOn(gpuSampling.GenerationGpuSampler.prototype, 'pick');
    const encode = jest.spyOn(gpuSampling.GenerationGpuSampler.prototype, 'encode');
    queuedDecodeConfig.enabled = false; // each step's ids read back (pick); queued: encode, below
    await model.generate([[2, 5, 9]], {maxNewTokens: 3, temperature: 0, repetitionPenalty: 1.3, eosTokenId: []});
    await model.generate([[2, 5, 9]], {maxNewTokens: 3, temperature: 0.7, seed: 1, eosTokenId: []});
    expect(spy).not.toHaveBeenCalled();
    expect(pick).toHaveBeenCalledTimes(6);
    queuedDecodeConfig.enabled = true;
    await model.generate([[2, 5, 9]], {maxNewTokens: 3, temperature: 0.7, seed: 1, eosTokenId: []});
    queuedDecodeConfig.enabled = null;
    expect(pick).toHaveBeenCalledTimes(6);
    expect(encode).toHaveBeenCalledTimes(3);
    expect(spy).not.toHaveBeenCalled();
    model.dispose();
  });
});
