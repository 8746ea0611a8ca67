/**
 * Generation on the wasm backend (what `useBackend()` picks when tfjs-node is absent, so what the
 * CLI runs on by default): cached decode against the full forward, and HF's greedy golden.
 */
import * as path from 'path';
import {useBackend} from '../../src/backend';
import {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {relError} from '../helpers';

const DIR = path.join(__dirname, '../fixtures/tiny-a');
const golden = JSON.parse(require('fs').readFileSync(path.join(DIR, 'golden.json'), 'utf8'));

let model: RecurrentGemmaForCausalLM;
beforeAll(async () => {
  await useBackend('wasm');
  model = await RecurrentGemmaForCausalLM.fromPretrained(DIR);
});
afterAll(() => model.dispose());

test('wasm: cached decode equals the full forward past the window; greedy golden', async () => {
  expect(tf.getBackend()).toBe('wasm');
  const ids = Array.from({length: 150}, (_, i) => 3 + ((i * 7919) % 500));
  const {logits: fullT} = model.forward({inputIds: [ids]});
  const full = (fullT.arraySync() as number[][][])[0];
  fullT.dispose();
  const state = model.prefill([ids.slice(0, 30)], {chunkSize: 16});
  let worst = relError(state.logits.dataSync(), full[29]);
  for (let i = 30; i < ids.length; i++) {
    const {logits} = model.decodeStep(state, [ids[i]]);
    worst = Math.max(worst, relError(logits.dataSync(), full[i]));
    logits.dispose();
  }
  state.dispose();
  console.log(`wasm: worst cached-vs-full relative error ${worst.toExponential(2)}`);
  expect(worst).toBeLessThan(1e-4);
  const out = await model.generate(golden.greedy.prompt, {maxNewTokens: 12, temperature: 0});
  expect(out).toEqual(golden.greedy.sequence);
});
