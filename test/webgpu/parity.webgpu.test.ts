/**
 * The golden parity checks of test/model/parity.test.ts (tiny-a against HF transformers in
 * float64: logits, every hidden state, loss, every gradient) on the webgpu backend, SwiftShader
 * without a GPU. Skips without an adapter, fails under CI (test/webgpu_env.ts).
 *
 * Tolerances are float32 GPU math with margin over what SwiftShader gives (measured: logits
 * 7.6e-7, hidden states <= 1.3e-7, loss 7e-7 absolute, gradients <= 2.4e-6; the cpu backend gets
 * 1.2e-7 / 1e-7 / 3e-7 / 3.4e-7). They are tight on purpose: with WGSL's own sin/cos (RoPE) the
 * attention layer alone put 1.7e-5 on the hidden states and 1.7e-4 on q_proj's gradient, which
 * is what ops/precise_trig/webgpu.ts fixed, and these bounds would catch that again.
 */

import {maxPieceBytes, vocabSplit} from '../../layers/vocab_split';
import {fusedForwardConfig} from '../../src/engines/webgpu_prefill';
import {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {initNodeWebGPU} from '../../src/webgpu_node';
import {loadTinyAGolden, maxAbsDiff, relError, TINY_A_DIR} from '../helpers';
import {describeWebGPU} from '../webgpu_env'; // first: sets the SwiftShader env before Dawn loads

const TOL = {logits: 5e-6, hidden: 2e-6, loss: 1e-5, grad: 2e-5};

const DIR = TINY_A_DIR;
const {golden, tensor: G} = loadTinyAGolden();

describeWebGPU('golden parity on webgpu (tiny-a)', () => {
  let model: RecurrentGemmaForCausalLM;
  beforeAll(async () => {
    await initNodeWebGPU();
    expect(tf.getBackend()).toBe('webgpu');
    // The tfjs ops on webgpu (forward's fused engine: fused_forward.webgpu.test.ts).
    fusedForwardConfig.enabled = false;
    model = await RecurrentGemmaForCausalLM.fromPretrained(DIR);
  });
  afterAll(() => {
    fusedForwardConfig.enabled = null;
    model?.dispose();
  });

  // Reads are async: webgpu in Node cannot read device data synchronously.
  test(`logits within ${TOL.logits.toExponential()} and every hidden state within ${TOL.hidden.toExponential()} relative error`, async () => {
    const {logits, hiddenStates} = model.forward({inputIds: golden.input_ids, outputHiddenStates: true});
    try {
      const report: string[] = [];
      const errL = relError(await logits.data(), G('logits'));
      report.push(`logits ${errL.toExponential(2)}`);
      expect(hiddenStates!.length).toBe(model.config.num_hidden_layers + 1);
      const errs: number[] = [];
      for (let i = 0; i < hiddenStates!.length; i++) {
        errs.push(relError(await hiddenStates![i].data(), G(`hidden_states.${i}`)));
        report.push(`hidden_states.${i} ${errs[i].toExponential(2)}`);
      }
      console.log(`webgpu, worst relative errors: ${report.join(', ')}`);
      expect(errL).toBeLessThan(TOL.logits);
      errs.forEach((err, i) => expect({i, ok: err < TOL.hidden}).toEqual({i, ok: true}));
    } finally {
      tf.dispose([logits, ...(hiddenStates ?? [])]);
    }
  });

  test(`loss within ${TOL.loss.toExponential()} and every gradient within ${TOL.grad.toExponential()} relative error`, async () => {
    const params = model.namedParameters();
    const vars = [...params.values()].map((v) => v.read() as tf.Variable);
    const {value, grads} = tf.variableGrads(
      () => model.forward({inputIds: golden.input_ids, labels: golden.labels}).loss!,
      vars,
    );
    try {
      const loss = (await value.data())[0];
      console.log(`webgpu: loss ${loss} vs golden ${golden.loss}`);
      expect(Math.abs(loss - golden.loss)).toBeLessThan(TOL.loss);
      expect(new Set(golden.grad_names)).toEqual(new Set([...params.keys()].map((n) => `grad.${n}`)));
      let worst = ['', 0] as [string, number];
      for (const [name, v] of params) {
        const g = grads[(v.read() as tf.Variable).name];
        expect(g).toBeDefined();
        const err = relError(await g.data(), G(`grad.${name}`));
        if (err > worst[1]) worst = [name, err];
        expect({name, ok: err < TOL.grad}).toEqual({name, ok: true});
      }
      console.log(`webgpu: worst gradient relative error ${worst[1].toExponential(2)} (${worst[0]})`);
    } finally {
      tf.dispose([value, ...Object.values(grads)]);
    }
  });

  test("the vocabulary matrix in pieces: the default limit is the device's, forced pieces give the same logits", async () => {
    const limits = (tf.backend() as unknown as {device: {limits: Record<string, number>}}).device.limits;
    expect(maxPieceBytes()).toBe(Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize));
    vocabSplit.maxPieceBytes = 100 * 64 * 4; // 6 pieces of tiny-a's 512 x 64
    let split: RecurrentGemmaForCausalLM;
    try {
      split = await RecurrentGemmaForCausalLM.fromPretrained(DIR);
    } finally {
      vocabSplit.maxPieceBytes = 0;
    }
    try {
      expect(split.embed.matrix.pieces.length).toBe(6);
      const a = model.forward({inputIds: golden.input_ids}).logits;
      const b = split.forward({inputIds: golden.input_ids}).logits;
      const [va, vb] = [await a.data(), await b.data()];
      tf.dispose([a, b]);
      expect(relError(vb, G('logits'))).toBeLessThan(TOL.logits);
      expect(maxAbsDiff(vb, va)).toBeLessThan(1e-6);
    } finally {
      split.dispose();
    }
  });
});
