/**
 * LoRA: which layers get adapters, only adapters train (base weights bitwise unchanged),
 * merging gives the unmerged model's logits, adapters saved in PEFT's layout load back, and
 * dropout masks are the same in gradient checkpointing's recomputation.
 */
import * as fs from 'fs';
import * as path from 'path';
import {loadLoraAdapter, saveLoraAdapter} from '../../converters/lora_adapter';
import {readHeader} from '../../converters/safetensors';
import {
  addLora,
  linearModules,
  loraAdapters,
  loraParameters,
  mergeLora,
  removeLora,
  setLoraTraining,
} from '../../layers/lora';
import {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {loadJsonl} from '../../src/training/data';
import {Trainer} from '../../src/training/trainer';
import {loadTiny, loadTokenizer, maxDiff, snapshot, TEXT_TRAIN, tmpDir, useCpu} from './helpers';

jest.setTimeout(300_000);

const IDS = [
  [2, 342, 48, 451, 411, 374, 280, 400, 354, 313, 210, 270],
  [2, 151, 472, 279, 89, 208, 152, 327, 8, 504, 459, 266],
];
const logitsOf = (m: RecurrentGemmaForCausalLM) => {
  const {logits} = m.forward({inputIds: IDS});
  const v = logits.dataSync() as Float32Array;
  logits.dispose();
  return v;
};

beforeAll(useCpu);

test('adapters go on the targeted Linear layers only; the base is frozen and its names unchanged', async () => {
  const model = await loadTiny();
  const names = [...model.namedParameters().keys()];
  const before = logitsOf(model);
  const all = addLora(model, {rank: 4});
  // tiny-a: blocks recurrent, recurrent, attention, recurrent: 3 x (3 + 3) + (4 + 3) Linear layers.
  expect(all.size).toBe(25);
  expect([...all.keys()]).toContain('model.layers.2.temporal_block.q_proj');
  expect([...all.keys()]).toContain('model.layers.0.temporal_block.linear_x');
  expect([...all.keys()]).toContain('model.layers.3.mlp_block.down_proj');
  expect([...model.namedParameters().keys()]).toEqual(names);
  expect([...model.namedParameters().values()].every((v) => !v.trainable)).toBe(true);
  expect(model.trainableWeights).toHaveLength(0);
  expect(maxDiff(logitsOf(model), before)).toBe(0); // B = 0: a fresh adapter changes nothing
  expect(() => addLora(model, {rank: 4})).toThrow(/already has LoRA adapters/);
  removeLora(model);
  expect([...model.namedParameters().values()].every((v) => v.trainable)).toBe(true);

  const some = addLora(model, {rank: 2, targets: ['q_proj', 'v_proj', 'linear_y']});
  expect([...some.keys()]).toEqual([
    'model.layers.0.temporal_block.linear_y',
    'model.layers.1.temporal_block.linear_y',
    'model.layers.2.temporal_block.q_proj',
    'model.layers.2.temporal_block.v_proj',
    'model.layers.3.temporal_block.linear_y',
  ]);
  const q = some.get('model.layers.2.temporal_block.q_proj')!;
  expect(q.A.shape).toEqual([2, 64]);
  expect(q.B.shape).toEqual([64, 2]);
  removeLora(model);
  expect(() => addLora(model, {rank: 4, targets: ['qkv']})).toThrow(/unknown LoRA target "qkv"/);
  expect(() => addLora(model, {rank: 0})).toThrow(/rank must be a positive integer/);
  expect(linearModules(model).size).toBe(25);
  model.dispose();
});

describe('a LoRA fine-tune', () => {
  let model: RecurrentGemmaForCausalLM;
  let base: Map<string, Float32Array>;
  let trained: Float32Array;
  let baseLogits: Float32Array;
  let dir: string;

  beforeAll(async () => {
    const tok = await loadTokenizer();
    model = await loadTiny();
    base = snapshot(model);
    baseLogits = logitsOf(model);
    const train = loadJsonl(TEXT_TRAIN, tok, {seqLen: 48});
    const losses: number[] = [];
    const trainer = new Trainer(model, {
      train,
      seqLen: 48,
      batchSize: 2,
      pack: true,
      steps: 8,
      lr: 3e-2,
      warmupSteps: 0,
      lora: {rank: 4, alpha: 8, dropout: 0.1},
      onStep: (s) => losses.push(s.loss),
    });
    expect(
      [...trainer.params.keys()].every((n) => /^base_model\.model\.model\.layers\.\d\..*\.lora_[AB]\.weight$/.test(n)),
    ).toBe(true);
    await trainer.train();
    console.log(`LoRA training loss ${losses[0].toFixed(3)} -> ${losses[losses.length - 1].toFixed(3)}`);
    expect(losses[losses.length - 1]).toBeLessThan(losses[0] - 0.5);
    trainer.dispose();
    trained = logitsOf(model);
    dir = tmpDir('adapter');
    await saveLoraAdapter(model, dir, {baseModel: 'tiny-a'});
  });
  afterAll(() => model.dispose());

  test('only the adapters changed: every base weight is bitwise the same', () => {
    for (const [name, v] of snapshot(model))
      expect({name, same: Buffer.compare(Buffer.from(v.buffer), Buffer.from(base.get(name)!.buffer)) === 0}).toEqual({
        name,
        same: true,
      });
    const moved = Math.max(
      ...[...loraAdapters(model).values()].map((a) => Math.max(...(a.B.dataSync() as Float32Array).map(Math.abs))),
    );
    expect(moved).toBeGreaterThan(1e-3);
  });

  test("saved in PEFT's layout and loaded back onto a fresh base model: the same logits", async () => {
    const {tensors} = readHeader(path.join(dir, 'adapter_model.safetensors'));
    expect(tensors.get('base_model.model.model.layers.2.temporal_block.q_proj.lora_A.weight')!.shape).toEqual([4, 64]);
    expect(tensors.get('base_model.model.model.layers.2.temporal_block.q_proj.lora_B.weight')!.shape).toEqual([64, 4]);
    expect(tensors.get('base_model.model.model.layers.0.mlp_block.down_proj.lora_A.weight')!.shape).toEqual([4, 96]);
    expect(tensors.size).toBe(50);
    const config = JSON.parse(fs.readFileSync(path.join(dir, 'adapter_config.json'), 'utf8'));
    expect(config).toMatchObject({
      peft_type: 'LORA',
      task_type: 'CAUSAL_LM',
      r: 4,
      lora_alpha: 8,
      lora_dropout: 0.1,
      base_model_name_or_path: 'tiny-a',
    });
    expect(config.target_modules).toEqual([
      'q_proj',
      'k_proj',
      'v_proj',
      'o_proj',
      'linear_x',
      'linear_y',
      'linear_out',
      'gate_proj',
      'up_proj',
      'down_proj',
    ]);
    const fresh = await loadTiny();
    loadLoraAdapter(fresh, dir);
    expect(maxDiff(logitsOf(fresh), trained)).toBe(0);
    fresh.dispose();
  });

  test("merging gives the unmerged model's logits (1e-5) and a plain model again", async () => {
    const unmergedMinusBase = maxDiff(trained, baseLogits);
    const merged = await loadTiny();
    loadLoraAdapter(merged, dir);
    mergeLora(merged);
    const diff = maxDiff(logitsOf(merged), trained);
    console.log(
      `LoRA merge: max |logit difference| merged vs unmerged ${diff.toExponential(2)} (the adapters moved logits by up to ${unmergedMinusBase.toFixed(3)})`,
    );
    expect(diff).toBeLessThan(1e-5);
    expect(unmergedMinusBase).toBeGreaterThan(1e-2);
    expect(loraAdapters(merged).size).toBe(0);
    expect([...merged.namedParameters().values()].every((v) => v.trainable)).toBe(true);
    merged.dispose();
  });
});

test('LoRA with dropout: gradient checkpointing recomputes the same masks, so the same gradients', async () => {
  const model = await loadTiny();
  const adapters = addLora(model, {rank: 3, dropout: 0.3, seed: 5});
  for (const a of adapters.values()) {
    const t = tf.randomNormal(a.B.shape, 0, 0.05, 'float32', 9);
    a.B.assign(t);
    t.dispose();
  }
  const vars = [...loraParameters(model).values()];
  const grads = (gradientCheckpointing: boolean, seed: number) => {
    setLoraTraining(model, true, seed);
    const {value, grads: g} = tf.variableGrads(
      () => model.forward({inputIds: IDS, labels: IDS, gradientCheckpointing}).loss!,
      vars,
    );
    setLoraTraining(model, false);
    const out = {loss: value.dataSync()[0], g: vars.map((v) => (g[v.name].dataSync() as Float32Array).slice())};
    tf.dispose([value, ...Object.values(g)]);
    return out;
  };
  const plain = grads(false, 11),
    ckpt = grads(true, 11),
    other = grads(false, 12);
  const worst = Math.max(...plain.g.map((g, i) => maxDiff(g, ckpt.g[i])));
  console.log(
    `LoRA + dropout: checkpointed vs plain gradients max diff ${worst}; loss ${plain.loss} vs ${ckpt.loss} (another mask: ${other.loss})`,
  );
  expect(ckpt.loss).toBe(plain.loss);
  expect(worst).toBe(0);
  expect(other.loss).not.toBe(plain.loss); // the seed does pick the mask
  model.dispose();
});

test('LoRA with dropout: 2 steps + resume 2 steps equals 4 uninterrupted steps; checkpoints hold only the adapter', async () => {
  const tok = await loadTokenizer();
  const train = loadJsonl(TEXT_TRAIN, tok, {seqLen: 24}).examples.slice(0, 6);
  const opts = {
    train,
    seqLen: 24,
    batchSize: 2,
    steps: 4,
    lr: 2e-2,
    warmupSteps: 0,
    seed: 4,
    lora: {rank: 2, dropout: 0.2, targets: ['q_proj', 'linear_x', 'up_proj']},
  };
  const a = await loadTiny();
  const ta = new Trainer(a, opts);
  await ta.train();

  const out = tmpDir('lora-resume');
  const b = await loadTiny();
  const tb = new Trainer(b, {
    ...opts,
    outDir: out,
    onStep: (s) => {
      if (s.step === 2) tb.requestStop();
    },
  });
  const n0 = tf.memory().numTensors;
  expect((await tb.train()).steps).toBe(2);
  expect(tf.memory().numTensors).toBe(n0); // evaluation-free run with a checkpoint: nothing leaked
  const ckpt = path.join(out, 'checkpoints', 'step-000002');
  expect(fs.readdirSync(ckpt).sort()).toEqual([
    'adapter_config.json',
    'adapter_model.safetensors',
    'optimizer.safetensors',
    'trainer_state.json',
  ]);

  const c = await loadTiny();
  const tc = new Trainer(c, {...opts, outDir: out});
  expect(tc.resume()).toBe(ckpt);
  await tc.train();
  const pa = [...loraParameters(a).values()],
    pc = [...loraParameters(c).values()];
  const worst = Math.max(...pa.map((v, i) => maxDiff(v.dataSync(), pc[i].dataSync())));
  console.log(`LoRA resume: max adapter difference vs uninterrupted ${worst}`);
  expect(worst).toBe(0);
  [ta, tb, tc].forEach((t) => t.dispose());
  [a, b, c].forEach((m) => m.dispose());
});
