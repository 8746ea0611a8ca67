/**
 * The Trainer on webgpu (SwiftShader without a GPU), where nothing can be read synchronously:
 * golden loss and gradients through its loss path (plain and checkpointed), then LoRA steps
 * with a checkpoint and a resume. Skips without an adapter (test/webgpu_env.ts).
 */

import {loraParameters} from '../../layers/lora';
import {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {countTargets, Example, loadJsonl} from '../../src/training/data';
import {Trainer} from '../../src/training/trainer';
import {initNodeWebGPU} from '../../src/webgpu_node';
import {loadTinyAGolden, relError} from '../helpers';
import {describeWebGPU} from '../webgpu_env'; // first: sets the SwiftShader env before Dawn loads
import {loadTiny, loadTokenizer, maxDiff, TEXT_TRAIN, tmpDir} from './helpers';

jest.setTimeout(600_000);

const {golden, tensor: goldenTensor} = loadTinyAGolden();
const goldenExamples: Example[] = golden.input_ids.map((ids: number[], i: number) => ({
  ids,
  labels: golden.labels[i],
  where: `golden:${i}`,
}));

describeWebGPU('the Trainer on webgpu', () => {
  beforeAll(async () => {
    await initNodeWebGPU();
    expect(tf.getBackend()).toBe('webgpu');
  });

  test.each([false, true])(
    'golden loss and gradients through the trainer (gradient checkpointing %p)',
    async (gradientCheckpointing) => {
      const model = await loadTiny();
      const trainer = new Trainer(model, {train: goldenExamples, steps: 1, gradientCheckpointing});
      const batch = {inputIds: golden.input_ids, labels: golden.labels, targets: countTargets(golden.labels)};
      const {loss, grads} = await trainer.lossAndGradients([batch]);
      expect(Math.abs(loss - golden.loss)).toBeLessThan(1e-5);
      let worst = 0;
      for (const [name, g] of grads) worst = Math.max(worst, relError(await g.data(), goldenTensor(`grad.${name}`)));
      console.log(
        `webgpu trainer (checkpointing ${gradientCheckpointing}): loss ${loss}, worst gradient relative error ${worst.toExponential(2)}`,
      );
      expect(worst).toBeLessThan(2e-5);
      tf.dispose([...grads.values()]);
      trainer.dispose();
      model.dispose();
    },
  );

  test('LoRA steps, a checkpoint and a resume, with no synchronous read', async () => {
    const tok = await loadTokenizer();
    const train = loadJsonl(TEXT_TRAIN, tok, {seqLen: 24}).examples.slice(0, 4);
    const opts = {
      train,
      seqLen: 24,
      batchSize: 2,
      steps: 2,
      lr: 1e-2,
      seed: 2,
      lora: {rank: 2, targets: ['q_proj', 'linear_x']},
    };
    const out = tmpDir('webgpu-train');
    const a = await loadTiny();
    const ta = new Trainer(a, {
      ...opts,
      outDir: out,
      onStep: (s) => {
        if (s.step === 1) ta.requestStop();
      },
    });
    const ra = await ta.train();
    expect(ra.steps).toBe(1);
    const b = await loadTiny();
    const tb = new Trainer(b, {...opts, outDir: out});
    expect(tb.resume()).toMatch(/step-000001$/);
    const rb = await tb.train();
    expect(rb.steps).toBe(2);
    expect(Number.isFinite(rb.history[1].loss)).toBe(true);
    // The resumed adapters start where the first run stopped.
    const before = await Promise.all([...loraParameters(a).values()].map((v) => v.data()));
    const after = await Promise.all([...loraParameters(b).values()].map((v) => v.data()));
    expect(Math.max(...before.map((v, i) => maxDiff(v, after[i])))).toBeGreaterThan(0);
    [ta, tb].forEach((t) => t.dispose());
    [a, b].forEach((m) => m.dispose());
  });

  test('a full fine-tuning checkpoint is written from device memory and loads back', async () => {
    const tok = await loadTokenizer();
    const train = loadJsonl(TEXT_TRAIN, tok, {seqLen: 24}).examples.slice(0, 2);
    const out = tmpDir('webgpu-full');
    const a = await loadTiny();
    const ta = new Trainer(a, {train, seqLen: 24, batchSize: 2, steps: 1, lr: 1e-2, outDir: out});
    const ra = await ta.train();
    expect(ra.checkpoint).toMatch(/step-000001$/);
    const back = await RecurrentGemmaForCausalLM.fromPretrained(ra.checkpoint!);
    const [x, y] = await Promise.all(
      [a, back].map((m) => m.namedParameters().get('model.layers.0.mlp_block.up_proj.weight')!.read().data()),
    );
    expect(maxDiff(x, y)).toBe(0);
    ta.dispose();
    [a, back].forEach((m) => m.dispose());
  });
});
