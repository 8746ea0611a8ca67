/**
 * GRIFFIN_DAWN_TOGGLES (src/webgpu_node.ts): the flags Dawn's `create` gets for a value, bad values
 * refused in one line, and a device made with disable_robustness and skip_validation that runs the
 * fused engines to tiny-a's HF goldens (forward logits within the parity suite's 5e-6, greedy tokens
 * equal). The toggles themselves cannot be read back through WebGPU; this checks that nothing the
 * package runs depends on the safety nets they remove.
 */

import {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {dawnFlags, initNodeWebGPU} from '../../src/webgpu_node';
import {loadTinyAGolden, relError, TINY_A_DIR} from '../helpers';
import {describeWebGPU} from '../webgpu_env'; // first: sets the SwiftShader env before Dawn loads

describe('dawnFlags', () => {
  test('unset or empty: no flags; a list: one enable-dawn-features flag, names trimmed', () => {
    expect(dawnFlags(undefined)).toEqual([]);
    expect(dawnFlags(' ')).toEqual([]);
    expect(dawnFlags('disable_robustness')).toEqual(['enable-dawn-features=disable_robustness']);
    expect(dawnFlags('disable_robustness, skip_validation')).toEqual([
      'enable-dawn-features=disable_robustness,skip_validation',
    ]);
  });
  test.each(['disable-robustness', 'a,,b', 'Skip_validation', 'x=1', Array(17).fill('t').join(',')])(
    'refuses %j in one line',
    (v) => {
      expect(() => dawnFlags(v)).toThrow(
        `GRIFFIN_DAWN_TOGGLES must be up to 16 comma-separated Dawn toggle names (like disable_robustness), got "${v}"`,
      );
    },
  );
});

describeWebGPU('a device made with GRIFFIN_DAWN_TOGGLES=disable_robustness,skip_validation', () => {
  beforeAll(async () => {
    process.env.GRIFFIN_DAWN_TOGGLES = 'disable_robustness,skip_validation';
    await initNodeWebGPU();
  }, 120000);
  afterAll(() => {
    delete process.env.GRIFFIN_DAWN_TOGGLES;
  });

  test('tiny-a: forward logits within 5e-6 of the golden, greedy tokens equal to HF’s', async () => {
    expect(tf.getBackend()).toBe('webgpu');
    const {golden, tensor} = loadTinyAGolden();
    const model = await RecurrentGemmaForCausalLM.fromPretrained(TINY_A_DIR);
    try {
      const {logits} = model.forward({inputIds: golden.input_ids});
      const err = relError(await logits.data(), tensor('logits'));
      logits.dispose();
      console.log(`toggled device: logits vs golden ${err.toExponential(2)}`);
      expect(err).toBeLessThan(5e-6);
      const g = golden.greedy;
      const seq = await model.generate(g.prompt, {
        temperature: 0,
        eosTokenId: [],
        maxNewTokens: g.sequence[0].length - g.prompt[0].length,
      });
      expect(seq).toEqual(g.sequence);
    } finally {
      model.dispose();
    }
  }, 600000);
});
