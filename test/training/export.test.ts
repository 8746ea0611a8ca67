/** A fine-tuned model exported with save() loads back identically, in the HF and the tfjs layout. */

import {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {loadJsonl} from '../../src/training/data';
import {Trainer} from '../../src/training/trainer';
import {loadTiny, loadTokenizer, maxDiff, snapshot, TEXT_TRAIN, tmpDir, useCpu} from './helpers';

jest.setTimeout(300_000);

const IDS = [
  [2, 342, 48, 451, 411, 374, 280, 400],
  [2, 151, 472, 279, 89, 208, 152, 327],
];
const logitsOf = (m: RecurrentGemmaForCausalLM) => {
  const {logits} = m.forward({inputIds: IDS});
  const v = logits.dataSync() as Float32Array;
  logits.dispose();
  return v;
};

let tuned: RecurrentGemmaForCausalLM;
beforeAll(async () => {
  await useCpu();
  const tok = await loadTokenizer();
  tuned = await loadTiny();
  const trainer = new Trainer(tuned, {
    train: loadJsonl(TEXT_TRAIN, tok, {seqLen: 32}),
    seqLen: 32,
    batchSize: 2,
    steps: 3,
    lr: 3e-3,
  });
  await trainer.train();
  trainer.dispose();
});
afterAll(() => tuned.dispose());

test.each(['hf', 'tfjs'] as const)(
  'save(dir, {format: %p}) -> fromPretrained(dir): same weights and logits, bitwise',
  async (format) => {
    const dir = tmpDir(`export-${format}`);
    await tuned.save(dir, {format});
    const back = await RecurrentGemmaForCausalLM.fromPretrained(dir);
    const a = snapshot(tuned),
      b = snapshot(back),
      base = snapshot(await loadTiny());
    expect([...b.keys()]).toEqual([...a.keys()]);
    for (const [name, v] of a) expect({name, diff: maxDiff(v, b.get(name)!)}).toEqual({name, diff: 0});
    expect(maxDiff(a.get('model.embed_tokens.weight')!, base.get('model.embed_tokens.weight')!)).toBeGreaterThan(1e-4);
    expect(maxDiff(logitsOf(back), logitsOf(tuned))).toBe(0);
    back.dispose();
    expect(tf.memory().numTensors).toBeGreaterThan(0);
  },
);
