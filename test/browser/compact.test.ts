/**
 * Compact exports in a real headless Chromium (playwright-core driving /usr/bin/chromium; WebGPU
 * through SwiftShader), served by scripts/serve.js: the example page loads an int4 export (and an
 * int8 one) of tiny-a with the page's default dtype 'auto', holds it compact on wasm and webgpu,
 * shows the bytes its weights take, and its logits equal Node's on the same weights (the export
 * loaded on Node's cpu backend) within the tolerance stated below.
 */

import * as path from 'path';
import {exportTfjs, openTensorSource} from '../../converters/tfjs_export';
import {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {GemmaTokenizer} from '../../src/tokenizer';
import {maxAbsDiff, relError} from '../helpers';
import {browserSuite, describeBrowser, offeredBackends, openExample, shardBytes} from './chromium';

const FIX = path.join(__dirname, '../fixtures');
const PROMPT = 'The quick brown fox jumps';

/**
 * Relative error ||page - node|| / ||node|| of the logits and their max absolute difference
 * allowed per backend. The page and Node unpack the same words into the same float32 values;
 * what differs is the order of the sums and the transcendental functions: wasm runs the compact
 * products as the same host kernels as Node's cpu backend (ops/compact/host.ts) but XNNPACK for
 * the rest, webgpu runs WGSL (ops/compact/webgpu.ts) on SwiftShader. Measured (Chromium 156,
 * SwiftShader): wasm int4 1.4e-7 (max abs 1.9e-6), int8 1.2e-7 (2.9e-6); webgpu int4 7.5e-7
 * (3.8e-6), int8 7.7e-7 (5.7e-6). The float32 model's tolerance in browser.test.ts is the same.
 */
const TOL: Record<string, {rel: number; abs: number}> = {
  wasm: {rel: 1e-5, abs: 1e-4},
  webgpu: {rel: 1e-5, abs: 1e-4},
};

const EXPORTS = {
  int4: {dtype: 'int4', groupSize: 32},
  int8: {dtype: 'int8'},
} as const;

describeBrowser('compact exports in the browser page', () => {
  const ref: Record<string, {ids: number[]; logits: Float32Array; bytes: number; shards: number}> = {};

  const suite = browserSuite('griffin-browser-compact-', async (tmp, hf) => {
    // Node's reference: each export loaded as it is stored, on the cpu backend.
    await tf.setBackend('cpu');
    const tok = await GemmaTokenizer.load(path.join(FIX, 'tokenizer/tiny.model'));
    const ids = tok.encode(PROMPT);
    for (const [name, opts] of Object.entries(EXPORTS)) {
      const dir = path.join(tmp, 'models', name);
      await exportTfjs(openTensorSource(hf), dir, opts);
      const model = await RecurrentGemmaForCausalLM.fromPretrained(dir, {dtype: 'auto'});
      expect(model.weightDtype).toBe(opts.dtype);
      const out = model.forward({inputIds: [ids]});
      ref[name] = {
        ids,
        logits: out.logits.dataSync() as Float32Array,
        bytes: model.weightBytes(),
        shards: shardBytes(dir),
      };
      out.logits.dispose();
      model.dispose();
    }
  });

  test("int4 and int8 exports on wasm and webgpu: held compact, their bytes shown, logits equal Node's", async () => {
    const backends = (await offeredBackends(suite.browser, suite.url)).filter((b) => b === 'wasm' || b === 'webgpu');
    const lines: string[] = [];
    for (const backend of backends) {
      for (const name of Object.keys(EXPORTS)) {
        const page = await openExample(suite.browser, suite.url, backend, name, suite.pageErrors, `${backend} ${name}`);
        try {
          const got = await page.evaluate(async (text) => {
            const app = (window as any).griffinApp;
            const r = await app.logits(text);
            // Compact parameters hold packed words (class names are minified in the bundle).
            const packed = [...app.model.namedParameters().values()].filter((v: any) => v.packed?.data != null);
            return {
              ...r,
              tfBackend: app.tf.getBackend(),
              weights: app.weights,
              shown: document.getElementById('weights')!.textContent,
              dtypeChoice: (document.getElementById('dtype') as HTMLSelectElement).value,
              compactParams: packed.length,
              packedDtypes: [...new Set(packed.map((v: any) => `${v.packed.dtype} ${v.packed.data.dtype}`))],
            };
          }, PROMPT);
          const want = ref[name];
          expect(got.tfBackend).toBe(backend);
          expect(got.dtypeChoice).toBe('auto');
          expect(got.weights.dtype).toBe(EXPORTS[name as keyof typeof EXPORTS].dtype);
          expect(got.compactParams).toBe(1 + 3 * 6 + 7); // the embedding and every linear of tiny-a
          expect(got.packedDtypes).toEqual([`${EXPORTS[name as keyof typeof EXPORTS].dtype} int32`]);
          expect(got.weights.bytes).toBe(want.bytes);
          expect(got.shown).toBe(
            name === 'int4'
              ? `int4 (group 32) weights: ${(want.bytes / 1e3).toFixed(1)} kB`
              : `int8 weights: ${(want.bytes / 1e3).toFixed(1)} kB`,
          );
          expect(got.ids).toEqual(want.ids);
          const rel = relError(got.logits, want.logits),
            abs = maxAbsDiff(got.logits, want.logits);
          lines.push(
            `${backend} ${name}: weights ${got.weights.bytes} bytes (shards ${want.shards}); ` +
              `logits relative error ${rel.toExponential(2)}, max abs ${abs.toExponential(2)}`,
          );
          expect(rel).toBeLessThan(TOL[backend].rel);
          expect(abs).toBeLessThan(TOL[backend].abs);
        } finally {
          await page.close();
        }
      }
    }
    console.log(`compact exports in the browser vs Node cpu:\n  ${lines.join('\n  ')}`);
  }, 300_000);
});
