/**
 * The serve scheduler on webgpu, where decodeStep runs the fused decode engine: rows join and
 * leave the running batch (the state goes out of the engine and back at each change), and each
 * request still gets the tokens that model.generate gives it alone on the same backend (greedy and
 * seeded). tiny-a with the tiny tokenizer; at most 3 rows, so every batch size uses the same
 * engine tuning (src/engines/webgpu_decode/tuning.ts) as one row.
 */
import * as path from 'path';
import {fusedDecoderFor} from '../../src/engines/webgpu_decode';
import {gpuSamplingConfig} from '../../src/generation/gpu_sampling';
import {RecurrentGemmaForCausalLM} from '../../src/model';
import {type Job, Scheduler} from '../../src/serve/scheduler';
import {tf} from '../../src/tf';
import {GemmaTokenizer} from '../../src/tokenizer';
import {initNodeWebGPU} from '../../src/webgpu_node';
import {describeWebGPU} from '../webgpu_env'; // first: sets the SwiftShader env before Dawn loads

const FIX = path.join(__dirname, '../fixtures');

describeWebGPU('serve scheduler on webgpu (fused decode engine)', () => {
  let model: RecurrentGemmaForCausalLM;
  let tok: GemmaTokenizer;
  beforeAll(async () => {
    await initNodeWebGPU();
    model = await RecurrentGemmaForCausalLM.fromPretrained(path.join(FIX, 'tiny-a'));
    tok = await GemmaTokenizer.load(path.join(FIX, 'tokenizer/tiny.model'));
  });
  afterAll(() => model?.dispose());

  test('4 jobs on 3 slots: each gets its tokens alone', async () => {
    expect(tf.getBackend()).toBe('webgpu');
    expect(fusedDecoderFor(model, 3)).not.toBeNull();
    // Prompts of one length: each prefill shape costs SwiftShader seconds of pipeline compiling.
    const jobs = [0, 1, 2, 3].map((i) => ({
      promptIds: [tok.bosId, ...Array.from({length: 7}, (_, k) => 10 + ((i * 37 + k * 11) % 400))],
      n: 1,
      maxTokens: 3 + 2 * i,
      temperature: i % 2 === 0 ? 0 : 0.9,
      seed: 40 + i,
      stop: [],
      logprobs: null,
    }));
    const sched = new Scheduler(model, tok, {maxBatch: 3, maxQueue: 8});
    const got: number[][] = jobs.map(() => []);
    await Promise.all(jobs.map((j, i) => sched.submit({...j, onEvent: (ev) => got[i].push(ev.tokenId)} as Job)));
    expect(sched.stats.steps).toBeLessThan(got.flat().length);
    // The scheduler samples on the host; generate alone is compared with its host sampler too
    // (on webgpu it would otherwise draw on the GPU: the same rules, another random stream).
    gpuSamplingConfig.enabled = false;
    for (let i = 0; i < jobs.length; i++) {
      const j = jobs[i];
      const [out] = await model.generate([j.promptIds], {
        maxNewTokens: j.maxTokens,
        temperature: j.temperature,
        seed: j.seed,
        tokenizer: tok,
      });
      expect(got[i]).toEqual(out.slice(j.promptIds.length));
    }
    gpuSamplingConfig.enabled = null;
    await sched.close();
  }, 900_000);
});
