/**
 * Compact weights in the model (layers/compact.ts, fromPretrained's dtype): a compact model
 * computes what a float32 model holding the same (unpacked) values computes, for every dtype;
 * it holds fewer bytes; 'auto' keeps a bfloat16 checkpoint's values exactly; bad options fail in
 * one line with nothing left allocated; LoRA trains on a frozen compact base; generation works.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {listCheckpoint, readTensor, writeCheckpoint} from '../../converters/safetensors';
import {CompactParameter} from '../../layers/compact';
import {addLora, linearModules, loraParameters} from '../../layers/lora';
import {bf16ToF32, f32ToBf16} from '../../ops/compact/half';
import {type PretrainedOptions, RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {relError} from '../helpers';

const TINY_A = path.join(__dirname, '../fixtures/tiny-a');
const IDS = [
  [2, 17, 301, 45, 9, 77, 410, 3],
  [2, 88, 5, 260, 61, 12, 300, 499],
];

/** tiny-a in float32 with each matrix replaced by its compact model's unpacked values. */
async function floatTwin(compact: RecurrentGemmaForCausalLM): Promise<RecurrentGemmaForCausalLM> {
  const twin = await RecurrentGemmaForCausalLM.fromPretrained(TINY_A);
  const params = twin.namedParameters();
  for (const [name, v] of compact.namedParameters()) {
    if (!(v instanceof CompactParameter)) continue;
    const unpacked = v.read();
    params.get(name)!.write(unpacked);
    unpacked.dispose();
  }
  return twin;
}

function logits(m: RecurrentGemmaForCausalLM): Float32Array {
  const out = m.forward({inputIds: IDS}).logits;
  const v = out.dataSync() as Float32Array;
  out.dispose();
  return v;
}

beforeAll(async () => {
  await tf.setBackend('cpu');
});

const CASES: PretrainedOptions[] = [
  {dtype: 'bfloat16'},
  {dtype: 'float16'},
  {dtype: 'int8'},
  {dtype: 'int4', groupSize: 32},
  {dtype: 'int4', groupSize: 32, zeroPoints: true},
];

describe.each(CASES)('tiny-a held as %o', (opts) => {
  test('computes what float32 computes with the same values, in fewer bytes', async () => {
    const f32 = await RecurrentGemmaForCausalLM.fromPretrained(TINY_A);
    const m = await RecurrentGemmaForCausalLM.fromPretrained(TINY_A, opts);
    expect(m.weightDtype).toBe(opts.dtype);
    // Every matrix is compact (the linears and the tied embedding); the rest stays float32.
    const compact = [...m.namedParameters()].filter(([, v]) => v instanceof CompactParameter).map(([n]) => n);
    const linears = [...linearModules(m).keys()].map((n) => `${n}.weight`);
    expect(compact.sort()).toEqual([...linears, 'model.embed_tokens.weight'].sort());
    const twin = await floatTwin(m);
    const err = relError(logits(m), logits(twin));
    expect(err).toBeLessThan(1e-5);
    // Against the original float32 weights: the rounding the dtype makes, no more.
    const vsF32 = relError(logits(m), logits(f32));
    expect(vsF32).toBeGreaterThan(0);
    expect(vsF32).toBeLessThan(opts.dtype === 'int4' ? 0.35 : 0.05);
    const ratio = m.weightBytes() / f32.weightBytes();
    const bits = {bfloat16: 16, float16: 16, int8: 8, int4: 4}[opts.dtype as 'int8'];
    expect(ratio).toBeLessThan(bits / 32 + 0.12); // plus the float32 vectors and the scales
    console.log(
      `${JSON.stringify(opts)}: logits vs float32 ${vsF32.toExponential(2)}, weights ${(ratio * 100).toFixed(1)}% of float32`,
    );
    for (const x of [f32, m, twin]) x.dispose();
  });

  test("greedy generation gives the float twin's tokens", async () => {
    const m = await RecurrentGemmaForCausalLM.fromPretrained(TINY_A, opts);
    const twin = await floatTwin(m);
    const a = await m.generate([[2, 17, 301]], {maxNewTokens: 8, temperature: 0});
    const b = await twin.generate([[2, 17, 301]], {maxNewTokens: 8, temperature: 0});
    expect(a).toEqual(b);
    m.dispose();
    twin.dispose();
  });
});

test("'auto' keeps a bfloat16 checkpoint bfloat16, exactly the file's values", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'griffin-compact-'));
  const metas = [...listCheckpoint(TINY_A).values()];
  writeCheckpoint(
    dir,
    metas.map((m) => ({
      name: m.name,
      shape: m.shape,
      data: f32ToBf16(readTensor(m) as Float32Array),
      dtype: 'BF16' as const,
    })),
  );
  fs.copyFileSync(path.join(TINY_A, 'config.json'), path.join(dir, 'config.json'));
  const m = await RecurrentGemmaForCausalLM.fromPretrained(dir, {dtype: 'auto'});
  expect(m.weightDtype).toBe('bfloat16');
  const params = m.namedParameters();
  for (const meta of metas) {
    const v = params.get(meta.name);
    if (v == null) continue; // the tied head's copy
    const want = bf16ToF32(f32ToBf16(readTensor(meta) as Float32Array));
    const got = v.read().dataSync();
    expect(Array.from(got)).toEqual(Array.from(want));
  }
  // The float32 checkpoint stays float32 under 'auto'.
  const plain = await RecurrentGemmaForCausalLM.fromPretrained(TINY_A, {dtype: 'auto'});
  expect(plain.weightDtype).toBe('float32');
  m.dispose();
  plain.dispose();
  fs.rmSync(dir, {recursive: true, force: true});
});

test('bad dtypes and group sizes are refused in one line, before anything is allocated', async () => {
  const before = tf.memory().numTensors;
  const err = async (opts: PretrainedOptions) => {
    try {
      (await RecurrentGemmaForCausalLM.fromPretrained(TINY_A, opts)).dispose();
    } catch (e) {
      return (e as Error).message;
    }
    return 'no error';
  };
  expect(await err({dtype: 'int3' as never})).toBe(
    'unknown dtype "int3" (expected one of auto, float32, bfloat16, float16, int8, int4)',
  );
  expect(await err({dtype: 'int4', groupSize: 48})).toBe('int4 group size must be one of 32, 64, 128, got 48');
  expect(await err({dtype: 'int8', groupSize: 32})).toBe('groupSize and zeroPoints are for int4 weights, not int8');
  // tiny-a's MLP is 96 wide: 64 does not divide it.
  expect(await err({dtype: 'int4', groupSize: 64})).toMatch(/group size 64 does not divide the width 96$/);
  expect(tf.memory().numTensors).toBe(before);
});

test('LoRA trains on a frozen compact base: gradients reach the adapters only', async () => {
  const m = await RecurrentGemmaForCausalLM.fromPretrained(TINY_A, {dtype: 'int8'});
  // An optimizer sees the float32 vectors, never a packed matrix.
  const trainable = m.trainableWeights;
  expect(trainable.length).toBeGreaterThan(0);
  expect(trainable.some((w) => w instanceof CompactParameter)).toBe(false);
  addLora(m, {rank: 4, alpha: 8, targets: ['q_proj', 'linear_x', 'up_proj'], seed: 3});
  // B starts at zero: give it values so that A's gradient is not zero too.
  for (const [name, v] of loraParameters(m))
    if (name.endsWith('lora_B.weight')) v.assign(tf.randomNormal(v.shape, 0, 0.1, 'float32', 5));
  const vars = [...loraParameters(m).values()];
  const {value, grads} = tf.variableGrads(() => m.forward({inputIds: IDS, labels: IDS}).loss!, vars);
  expect(Number.isFinite(value.dataSync()[0])).toBe(true);
  expect(Object.keys(grads).length).toBe(vars.length);
  for (const g of Object.values(grads)) expect(tf.max(tf.abs(g)).dataSync()[0]).toBeGreaterThan(0);
  // No compact weight is trainable.
  for (const v of m.namedParameters().values()) if (v instanceof CompactParameter) expect(v.trainable).toBe(false);
  tf.dispose([value, ...Object.values(grads)]);
  m.dispose();
});

test('saving a compact model writes float32 that loads back to the same values', async () => {
  const m = await RecurrentGemmaForCausalLM.fromPretrained(TINY_A, {dtype: 'int8'});
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'griffin-compact-save-'));
  await m.save(dir);
  const back = await RecurrentGemmaForCausalLM.fromPretrained(dir);
  expect(relError(logits(back), logits(m))).toBeLessThan(1e-6);
  const again = await RecurrentGemmaForCausalLM.fromPretrained(dir, {dtype: 'int8'});
  // int8 of values already on the int8 grid gives the same grid back.
  expect(relError(logits(again), logits(m))).toBeLessThan(1e-6);
  for (const x of [m, back, again]) x.dispose();
  fs.rmSync(dir, {recursive: true, force: true});
});
