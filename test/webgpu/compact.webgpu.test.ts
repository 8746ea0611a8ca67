/**
 * The compact-weight WGSL kernels (ops/compact/webgpu.ts) against the reference, on the same
 * cases as the host kernels (test/ops/compact_cases.ts).
 */
import * as path from 'path';
import {fusedDecoderFor} from '../../src/engines/webgpu_decode';
import {fusedForwardConfig} from '../../src/engines/webgpu_prefill';
import {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {initNodeWebGPU} from '../../src/webgpu_node';
import {relError} from '../helpers';
import {compactKernelCases} from '../ops/compact_cases';
import {describeWebGPU} from '../webgpu_env';

describeWebGPU('compact kernels on webgpu', () => {
  beforeAll(async () => {
    await initNodeWebGPU();
  }, 120000);
  compactKernelCases(1e-5);
});

describeWebGPU('a compact model on webgpu', () => {
  const TINY_A = path.join(__dirname, '../fixtures/tiny-a');
  const IDS = [[2, 17, 301, 45, 9, 77, 410, 3]];

  test.each([{dtype: 'bfloat16'}, {dtype: 'int4', groupSize: 32}] as const)(
    '%o: logits (tfjs ops) and greedy tokens (the fused engine, reading the packed words) equal cpu',
    async (opts) => {
      await tf.setBackend('cpu');
      const onCpu = await RecurrentGemmaForCausalLM.fromPretrained(TINY_A, opts);
      const cpuLogits = onCpu.forward({inputIds: IDS}).logits.dataSync();
      const cpuTokens = await onCpu.generate([IDS[0].slice(0, 3)], {maxNewTokens: 6, temperature: 0});
      onCpu.dispose();
      await initNodeWebGPU();
      const m = await RecurrentGemmaForCausalLM.fromPretrained(TINY_A, opts);
      expect(fusedDecoderFor(m, 1)).not.toBeNull(); // decoding runs on the engine
      fusedForwardConfig.enabled = false; // tfjs ops (forward's fused engine: fused_forward.webgpu.test.ts)
      let l: tf.Tensor;
      try {
        l = m.forward({inputIds: IDS}).logits;
      } finally {
        fusedForwardConfig.enabled = null;
      }
      expect(relError(await l.data(), cpuLogits)).toBeLessThan(1e-5);
      expect(await m.generate([IDS[0].slice(0, 3)], {maxNewTokens: 6, temperature: 0})).toEqual(cpuTokens);
      l.dispose();
      m.dispose();
    },
  );
});
