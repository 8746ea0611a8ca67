/**
 * The browser bundle and examples/browser in a real headless Chromium (playwright-core driving
 * Debian's /usr/bin/chromium; WebGPU through SwiftShader), served from localhost by
 * scripts/serve.js. The references are computed here in Node on the cpu backend from the HF
 * fixture (test/fixtures/tiny-a), never by the page:
 *   - `griffin convert` (float32, float16, uint8) carries tokenizer.model along;
 *   - on every backend the browser offers (webgpu, webgl, wasm, cpu) the page's token ids for a
 *     fixed prompt equal Node's tokenizer's and its logits equal Node's within the tolerance
 *     stated per backend (TOL), from a forward pass and from prefill + decodeStep; plain tf.loadLayersModel and an indexeddb:// round trip too;
 *   - float16 / uint8 exports: logits within 1e-3 / 5e-2 relative error of the float32 ones
 *     (compact exports, int4 / int8, are tested in compact.test.ts);
 *   - chat: a seeded sampled reply streams into the page (partial text seen before it ends) and
 *     equals Node's with the same seed; Stop ends a turn early; the state carries to the next turn;
 *   - LoRA fine-tuning in the page (wasm): its first loss equals Node's loss on the same tokens,
 *     and the loss goes down;
 *   - the page is cross-origin isolated (scripts/serve.js sends COOP / COEP; its headers are
 *     checked without a browser in serve.test.ts), so wasm runs its threaded SIMD build, which the
 *     page shows next to the backend.
 * Screenshots go to test/browser/output/ (gitignored). Without chromium the suite is skipped,
 * except under CI, where that is a failure.
 */

import * as fs from 'fs';
import {existsSync} from 'fs';
import * as path from 'path';
import type {Page} from 'playwright-core';
import {listCheckpoint} from '../../converters/safetensors';
import {main as griffin} from '../../src/cli';
import {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {encodeChat, GemmaTokenizer} from '../../src/tokenizer';
import {maxAbsDiff, relError} from '../helpers';
import {browserSuite, describeBrowser, offeredBackends, openExample, shardBytes} from './chromium';

const ROOT = path.join(__dirname, '../..');
const FIX = path.join(__dirname, '../fixtures');
const OUTPUT = path.join(__dirname, 'output');
const PROMPT = 'The quick brown fox jumps';
const CHAT_MESSAGE = 'Hello, who are you?';
const TUNE_TEXT = 'the lazy dog sleeps in the sun';
/** Decode steps after the prefill in the incremental check. */
const STEPS = 3;

/**
 * Relative error ||page - node|| / ||node|| of the logits allowed per backend, and the max
 * absolute difference (logits here are up to ~15). cpu runs the same JavaScript kernels as
 * Node; wasm (XNNPACK) and the GPU backends sum in other orders and use their own exp / tanh.
 * Measured here (Chromium 156, SwiftShader for webgl and webgpu), forward pass: cpu 0
 * (bit-identical), wasm 2.1e-7 (max abs 3.3e-6), webgl 1.7e-5 (1.7e-4), webgpu 7.6e-7 (4.8e-6);
 * prefill + decodeStep: cpu 4.4e-8 (4.8e-7), wasm 2.0e-7 (1.7e-6), webgl 1.9e-5 (1.2e-4),
 * webgpu 4.1e-7 (3.3e-6).
 */
const TOL: Record<string, {rel: number; abs: number}> = {
  cpu: {rel: 1e-6, abs: 1e-5},
  wasm: {rel: 1e-5, abs: 1e-4},
  webgl: {rel: 1e-4, abs: 1e-3},
  webgpu: {rel: 1e-5, abs: 1e-4},
};
const QUANT_TOL = {float16: 1e-3, uint8: 5e-2};

interface PageLogits {
  ids: number[];
  logits: number[];
  backend: string;
  tfBackend: string;
}

describeBrowser('the browser bundle and example in headless Chromium', () => {
  let tok: GemmaTokenizer;
  let ref: {ids: number[]; logits: Float32Array};
  let shards: number;

  const suite = browserSuite('griffin-browser-', async (tmp, hf) => {
    fs.mkdirSync(OUTPUT, {recursive: true});
    // tiny-a's HF checkpoint with its tokenizer, converted by the CLI to the three tfjs dtypes.
    for (const dtype of ['float32', 'float16', 'uint8']) {
      const code = await griffin(['convert', '--from', hf, '--out', path.join(tmp, 'models', dtype), '--dtype', dtype]);
      if (code !== 0) throw new Error(`griffin convert --dtype ${dtype} exited with ${code}`);
    }
    shards = shardBytes(path.join(tmp, 'models/float32'));

    // The Node references: the HF fixture on the cpu backend.
    await tf.setBackend('cpu');
    tok = await GemmaTokenizer.load(path.join(FIX, 'tokenizer/tiny.model'));
    const model = await RecurrentGemmaForCausalLM.fromPretrained(path.join(FIX, 'tiny-a'));
    const ids = tok.encode(PROMPT);
    const out = model.forward({inputIds: [ids]});
    ref = {ids, logits: out.logits.dataSync() as Float32Array};
    out.logits.dispose();
    model.dispose();
  });

  /** The example page on one backend with the converted float32 model, loaded and ready. */
  const openPage = (backend: string, model = 'float32'): Promise<Page> =>
    openExample(suite.browser, suite.url, backend, model, suite.pageErrors);

  /**
   * The page's logits for `text` twice: one forward pass over all of it, and the incremental path
   * (prefill of all but the last STEPS tokens, then one decodeStep per token), as the rows of
   * the last STEPS + 1 positions.
   */
  async function pageLogits(page: Page, text: string): Promise<PageLogits & {incremental: number[]}> {
    return page.evaluate(
      async ({t, steps}) => {
        const app = (window as any).griffinApp;
        const r = await app.logits(t);
        const ids: number[] = r.ids,
          p = ids.length - steps;
        const state = app.model.prefill([ids.slice(0, p)]);
        const rows: number[] = Array.from((await state.logits.data()) as Float32Array);
        for (let i = p; i < ids.length; i++) {
          const {logits} = app.model.decodeStep(state, [ids[i]]);
          rows.push(...Array.from((await logits.data()) as Float32Array));
          logits.dispose();
        }
        state.dispose();
        return {
          ...r,
          incremental: rows,
          backend: document.getElementById('backend')!.textContent!,
          tfBackend: app.tf.getBackend(),
        };
      },
      {t: text, steps: STEPS},
    );
  }

  test('griffin convert carries tokenizer.model along with every dtype', () => {
    const want = fs.readFileSync(path.join(FIX, 'tokenizer/tiny.model'));
    for (const dtype of ['float32', 'float16', 'uint8']) {
      expect(fs.readFileSync(path.join(suite.tmp, 'models', dtype, 'tokenizer.model')).equals(want)).toBe(true);
    }
  });

  test("the page's token ids and logits equal Node's on every backend the browser offers", async () => {
    const backends = await offeredBackends(suite.browser, suite.url);
    expect(backends).toEqual(expect.arrayContaining(['cpu', 'wasm']));
    const lines: string[] = [];
    for (const backend of backends) {
      const page = await openPage(backend);
      try {
        const got = await pageLogits(page, PROMPT);
        expect(got.backend).toBe(backend);
        expect(got.tfBackend).toBe(backend);
        expect(got.ids).toEqual(ref.ids);
        // Served cross-origin isolated; on wasm that means the threaded SIMD binary, fetched from beside the bundle.
        const iso = await page.evaluate(() => ({
          crossOriginIsolated: self.crossOriginIsolated,
          shown: document.getElementById('isolation')!.textContent,
          app: (window as any).griffinApp.isolation,
          wasmFiles: performance
            .getEntriesByType('resource')
            .map((e) => e.name)
            .filter((u) => u.endsWith('.wasm')),
        }));
        expect(iso.crossOriginIsolated).toBe(true);
        expect(iso.app.crossOriginIsolated).toBe(true);
        expect(iso.shown).toMatch(/^\(cross-origin isolated/);
        if (backend === 'wasm') {
          expect(iso.app.wasmBuild).toBe('threaded-simd');
          expect(iso.app.wasmThreads).toBeGreaterThanOrEqual(1);
          expect(iso.shown).toMatch(/; threaded-simd build, \d+ threads?\)$/);
          expect(iso.wasmFiles).toEqual([`${suite.url}/bundle/tfjs-backend-wasm-threaded-simd.wasm`]);
        }
        lines.push(`${backend}: ${iso.shown}`);
        const rel = relError(got.logits, ref.logits),
          abs = maxAbsDiff(got.logits, ref.logits);
        const V = ref.logits.length / ref.ids.length;
        const tail = ref.logits.subarray((ref.ids.length - STEPS - 1) * V);
        const relInc = relError(got.incremental, tail),
          absInc = maxAbsDiff(got.incremental, tail);
        lines.push(
          `${backend}: forward relative error ${rel.toExponential(2)}, max abs ${abs.toExponential(2)}; ` +
            `prefill + ${STEPS} decode steps ${relInc.toExponential(2)}, ${absInc.toExponential(2)}`,
        );
        expect(rel).toBeLessThan(TOL[backend].rel);
        expect(abs).toBeLessThan(TOL[backend].abs);
        expect(relInc).toBeLessThan(TOL[backend].rel);
        expect(absInc).toBeLessThan(TOL[backend].abs);
        if (backend === 'webgpu') await page.screenshot({path: path.join(OUTPUT, 'webgpu-loaded.png')});
      } finally {
        await page.close();
      }
    }
    console.log(`browser logits vs Node cpu (${ref.logits.length} values):\n  ${lines.join('\n  ')}`);
  }, 300_000);

  const SHIPPED = path.join(ROOT, 'assets/griffin-small');
  const shipped = existsSync(path.join(SHIPPED, 'model.json'));
  (shipped ? test : test.skip)(
    "the shipped small model (assets/griffin-small) in the page on wasm: ids and logits equal Node's",
    async () => {
      const tokSmall = await GemmaTokenizer.load(path.join(SHIPPED, 'tokenizer.model'));
      const model = await RecurrentGemmaForCausalLM.fromPretrained(SHIPPED);
      const ids = tokSmall.encode(PROMPT);
      const out = model.forward({inputIds: [ids]});
      const want = out.logits.dataSync() as Float32Array;
      out.logits.dispose();
      model.dispose();
      const page = await suite.browser.newPage();
      page.on('pageerror', (e) => suite.pageErrors.push(`shipped: ${e.message}`));
      try {
        await page.goto(
          `${suite.url}/examples/browser/?backend=wasm&model=../../assets/griffin-small/&bundle=/bundle/griffin.esm.js`,
        );
        await page.waitForFunction(
          () => ['ready', 'error'].includes(document.getElementById('status')!.dataset.state ?? ''),
          null,
          {timeout: 90_000},
        );
        expect(await page.getAttribute('#status', 'data-state')).toBe('ready');
        const got = await pageLogits(page, PROMPT);
        expect(got.ids).toEqual(ids);
        const rel = relError(got.logits, want);
        console.log(`shipped small model on wasm vs Node cpu: relative error ${rel.toExponential(2)}`);
        expect(rel).toBeLessThan(TOL.wasm.rel);
      } finally {
        await page.close();
      }
    },
    120_000,
  );

  test('in the page: plain tf.loadLayersModel, quantized exports, an indexeddb:// round trip, download progress', async () => {
    const page = await openPage('cpu');
    try {
      const r = await page.evaluate(
        async ({ids}) => {
          const {G, tf} = (window as any).griffinApp;
          const logitsOf = async (m: any) => {
            const out = m.forward({inputIds: [ids]});
            const v = Array.from((await out.logits.data()) as Float32Array);
            out.logits.dispose();
            return v;
          };
          // tfjs's own loader over http, the layer classes registered by the bundle.
          const plain = await tf.loadLayersModel('/models/float32/model.json');
          const x = tf.tensor2d([ids], undefined, 'int32');
          const y = plain.predict(x);
          const plainLogits = Array.from((await y.data()) as Float32Array);
          tf.dispose([x, y]);
          plain.dispose();
          const quant: Record<string, number[]> = {};
          const progress: Record<string, {loaded: number; total: number}[]> = {};
          for (const dtype of ['float32', 'float16', 'uint8']) {
            progress[dtype] = [];
            const m = await G.RecurrentGemmaForCausalLM.fromPretrained(`/models/${dtype}/`, {
              onProgress: (p: any) => progress[dtype].push({loaded: p.loaded, total: p.total}),
            });
            quant[dtype] = await logitsOf(m);
            if (dtype === 'float32') {
              await m.save('indexeddb://griffin-test');
            }
            m.dispose();
          }
          const back = await G.RecurrentGemmaForCausalLM.fromPretrained('indexeddb://griffin-test');
          const idb = await logitsOf(back);
          back.dispose();
          await tf.io.removeModel('indexeddb://griffin-test');
          let badUrl = '';
          try {
            await G.RecurrentGemmaForCausalLM.fromPretrained('/models/nothing-here/');
          } catch (e) {
            badUrl = (e as Error).message;
          }
          return {plainLogits, quant, progress, idb, badUrl};
        },
        {ids: ref.ids},
      );
      expect(maxAbsDiff(r.plainLogits, ref.logits)).toBeLessThan(TOL.cpu.abs);
      expect(maxAbsDiff(r.idb, ref.logits)).toBeLessThan(TOL.cpu.abs);
      expect(maxAbsDiff(r.quant.float32, ref.logits)).toBeLessThan(TOL.cpu.abs);
      for (const dtype of ['float16', 'uint8'] as const) {
        const err = relError(r.quant[dtype], ref.logits);
        console.log(
          `browser ${dtype} export: logits relative error ${err.toExponential(2)} (tolerance ${QUANT_TOL[dtype]})`,
        );
        expect(err).toBeLessThan(QUANT_TOL[dtype]);
        expect(err).toBeGreaterThan(0);
      }
      // Progress counts bytes as they arrive and ends at the shards' size.
      const last = r.progress.float32[r.progress.float32.length - 1];
      expect(last).toEqual({loaded: shards, total: shards});
      // float16 exports hold the matrices (rank-2 `.weight`s) in 2 bytes a value, the rest in 4.
      const matrixValues = [...listCheckpoint(path.join(FIX, 'tiny-a')).values()]
        .filter((m) => m.shape.length === 2 && m.name.endsWith('.weight') && m.name !== 'lm_head.weight')
        .reduce((n, m) => n + m.shape[0] * m.shape[1], 0);
      expect(r.progress.float16[r.progress.float16.length - 1].total).toBe(shards - 2 * matrixValues);
      expect(r.progress.uint8[r.progress.uint8.length - 1].total).toBe(shards / 4);
      expect(r.badUrl).toMatch(/nothing-here\/model\.json: HTTP 404/);
    } finally {
      await page.close();
    }
  }, 120_000);

  test("chat: a seeded reply streams into the page and equals Node's; Stop ends a turn; the state carries over", async () => {
    // Node's reply to the same chat prompt, sampled with the same seed (the HF fixture, cpu).
    const model = await RecurrentGemmaForCausalLM.fromPretrained(path.join(FIX, 'tiny-a'));
    const chatIds = encodeChat(tok, [{role: 'user', content: CHAT_MESSAGE}], {addGenerationPrompt: true});
    let want = '',
      wantTokens = 0;
    const drawn = new Set<number>();
    for await (const ev of model.stream([chatIds], {tokenizer: tok, temperature: 2, seed: 5, maxNewTokens: 40})) {
      want += ev.text ?? '';
      wantTokens++;
      drawn.add(ev.tokenId);
    }
    model.dispose();
    expect(drawn.size).toBeGreaterThan(5); // a reply worth comparing (at lower temperatures this random model repeats one or two tokens)

    const page = await openPage('cpu');
    try {
      // The test's own record of what the page showed while generating.
      await page.evaluate(() => {
        const w = window as any;
        w.__seen = [];
        new MutationObserver(() => {
          const out = document.getElementById('output');
          w.__seen.push({state: document.getElementById('status')!.dataset.state, text: out?.textContent ?? ''});
        }).observe(document.getElementById('transcript')!, {subtree: true, childList: true, characterData: true});
      });
      await page.fill('#temperature', '2');
      await page.fill('#seed', '5');
      await page.fill('#max-tokens', '40');
      await page.fill('#prompt', CHAT_MESSAGE);
      await page.click('#send');
      await page.waitForFunction(
        () => ['done', 'stopped', 'error'].includes(document.getElementById('status')!.dataset.state ?? ''),
        null,
        {timeout: 60_000},
      );
      expect(await page.getAttribute('#status', 'data-state')).toBe('done');
      const reply = (await page.textContent('#output'))!;
      expect(reply).toBe(want);
      expect(await page.textContent('#tps')).toMatch(new RegExp(`^${wantTokens} tokens, [0-9.]+ tokens/s`));
      const seen: {state: string; text: string}[] = await page.evaluate(() => (window as any).__seen);
      const partial = [
        ...new Set(seen.filter((s) => s.state === 'generating' && s.text !== '' && s.text !== want).map((s) => s.text)),
      ];
      expect(partial.length).toBeGreaterThan(1);
      for (const p of partial) expect(want.startsWith(p)).toBe(true);
      const context1 = Number(await page.textContent('#context'));
      expect(context1).toBe(chatIds.length + wantTokens);
      await page.screenshot({path: path.join(OUTPUT, 'chat.png'), fullPage: true});

      // A long second turn, stopped as soon as a few tokens are out.
      await page.fill('#max-tokens', '2000');
      await page.fill('#prompt', 'Tell me more.');
      await page.click('#send');
      await page.waitForFunction(
        () => /^([3-9]|\d\d+) tokens/.test(document.getElementById('tps')!.textContent ?? ''),
        null,
        {timeout: 60_000},
      );
      await page.click('#stop');
      await page.waitForFunction(
        () => ['done', 'stopped', 'error'].includes(document.getElementById('status')!.dataset.state ?? ''),
        null,
        {timeout: 60_000},
      );
      expect(await page.getAttribute('#status', 'data-state')).toBe('done');
      expect(await page.textContent('#status')).toBe('stopped');
      const n2 = Number((await page.textContent('#tps'))!.split(' ')[0]);
      expect(n2).toBeLessThan(2000);
      expect(Number(await page.textContent('#context'))).toBeGreaterThan(context1 + n2);
    } finally {
      await page.close();
    }
  }, 120_000);

  test("LoRA fine-tuning in the page (wasm): the first loss equals Node's on the same tokens, then it falls", async () => {
    const model = await RecurrentGemmaForCausalLM.fromPretrained(path.join(FIX, 'tiny-a'));
    const row = tok.encode(TUNE_TEXT);
    const {loss} = model.forward({inputIds: [row], labels: [row]});
    const want = loss!.dataSync()[0];
    loss!.dispose();
    model.dispose();

    // On wasm: its kernels are this package's own where tfjs-wasm's fall short (gather's
    // gradient, OneHot's dtype), and training is where a missing one shows.
    const page = await openPage('wasm');
    try {
      await page.fill('#ft-model-url', '/models/float32/');
      await page.fill('#ft-text', TUNE_TEXT);
      await page.fill('#ft-steps', '4');
      await page.click('#ft-train');
      await page.waitForFunction(
        () => ['trained', 'error'].includes(document.getElementById('ft-status')!.dataset.state ?? ''),
        null,
        {timeout: 90_000},
      );
      expect(await page.getAttribute('#ft-status', 'data-state')).toBe('trained');
      const losses: number[] = await page.evaluate(() => (window as any).griffinApp.tune.losses);
      expect(losses).toHaveLength(4);
      expect(Math.abs(losses[0] - want) / want).toBeLessThan(1e-5);
      expect(losses[3]).toBeLessThan(losses[0]);
      await page.fill('#ft-prompt', 'the lazy');
      await page.click('#ft-generate');
      await page.waitForFunction(
        () =>
          !(document.getElementById('ft-generate') as HTMLButtonElement).disabled &&
          (document.getElementById('ft-output')!.textContent ?? '').length > 'the lazy'.length,
        null,
        {timeout: 60_000},
      );
      await page.screenshot({path: path.join(OUTPUT, 'finetune.png'), fullPage: true});
    } finally {
      await page.close();
    }
  }, 120_000);
});
