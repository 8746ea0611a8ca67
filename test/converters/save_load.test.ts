/** Save as HF or tfjs, load back: identical logits; tf.loadLayersModel reads the tfjs format too. */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {listCheckpoint} from '../../converters/safetensors';
import {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {maxAbsDiff, relError} from '../helpers';

const FIXTURE = path.join(__dirname, '../fixtures/tiny-a');
const IDS = [
  [2, 342, 48, 451, 411, 374, 280, 400, 354, 313],
  [2, 151, 472, 279, 89, 208, 152, 327, 8, 504],
];
let model: RecurrentGemmaForCausalLM;
let reference: Float32Array;
let tmp: string;

beforeAll(async () => {
  await tf.setBackend('cpu');
  model = await RecurrentGemmaForCausalLM.fromPretrained(FIXTURE);
  reference = model.forward({inputIds: IDS}).logits.dataSync() as Float32Array;
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'griffin-save-'));
});
afterAll(() => fs.rmSync(tmp, {recursive: true, force: true}));

test('save as hf, load: identical logits; the files are the HF names and shapes', async () => {
  const dir = path.join(tmp, 'hf');
  await model.save(dir, {format: 'hf'});
  const saved = listCheckpoint(dir);
  const original = listCheckpoint(FIXTURE);
  expect([...saved.keys()].sort()).toEqual([...original.keys()].sort());
  for (const [name, meta] of original) expect(saved.get(name)!.shape).toEqual(meta.shape);
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
  expect(cfg.model_type).toBe('recurrent_gemma');
  expect(cfg.rope_parameters.rope_theta).toBe(10000);
  const back = await RecurrentGemmaForCausalLM.fromPretrained(dir);
  expect(maxAbsDiff(back.forward({inputIds: IDS}).logits.dataSync(), reference)).toBe(0);
});

test('save as tfjs, load: identical logits', async () => {
  const dir = path.join(tmp, 'tfjs');
  await model.save(dir, {format: 'tfjs', shardBytes: 100000});
  expect(fs.readdirSync(dir).filter((f) => f.endsWith('.bin')).length).toBeGreaterThan(3);
  const back = await RecurrentGemmaForCausalLM.fromPretrained(dir);
  expect(maxAbsDiff(back.forward({inputIds: IDS}).logits.dataSync(), reference)).toBe(0);
});

test('tf.loadLayersModel reads the tfjs format (layer classes registered) and predicts the same', async () => {
  const dir = path.join(tmp, 'tfjs-plain');
  await model.save(dir, {format: 'tfjs'});
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8'));
  const weightData = Buffer.concat(
    json.weightsManifest[0].paths.map((p: string) => fs.readFileSync(path.join(dir, p))),
  );
  const handler = tf.io.fromMemory({
    modelTopology: json.modelTopology,
    weightSpecs: json.weightsManifest[0].weights,
    weightData: weightData.buffer.slice(weightData.byteOffset, weightData.byteOffset + weightData.byteLength),
  });
  const plain = await tf.loadLayersModel(handler);
  const out = plain.predict(tf.tensor2d(IDS, undefined, 'int32')) as tf.Tensor;
  expect(maxAbsDiff(out.dataSync(), reference)).toBeLessThan(1e-6);
});

test('quantized tfjs exports: float16 within 1e-3, uint8 within 5e-2 relative error of float32 logits', async () => {
  for (const [dtype, tol] of [
    ['float16', 1e-3],
    ['uint8', 5e-2],
  ] as const) {
    const dir = path.join(tmp, `tfjs-${dtype}`);
    await model.save(dir, {format: 'tfjs', dtype});
    const back = await RecurrentGemmaForCausalLM.fromPretrained(dir);
    const err = relError(back.forward({inputIds: IDS}).logits.dataSync(), reference);
    console.log(`${dtype} export: logits relative error ${err.toExponential(2)}`);
    expect(err).toBeLessThan(tol);
    expect(err).toBeGreaterThan(0); // it really was quantized
  }
});

test('a truncated tfjs shard is an error naming model.json, and nothing is left allocated', async () => {
  const dir = path.join(tmp, 'tfjs-bad');
  await model.save(dir, {format: 'tfjs'});
  const shard = path.join(dir, 'group1-shard1of1.bin');
  fs.truncateSync(shard, fs.statSync(shard).size - 10);
  const before = tf.memory().numTensors;
  await expect(RecurrentGemmaForCausalLM.fromPretrained(dir)).rejects.toThrow(/model\.json: the shards hold/);
  expect(tf.memory().numTensors).toBe(before);
});
