/**
 * What the headless-browser suites share: where chromium is (GRIFFIN_CHROMIUM, else
 * /usr/bin/chromium), a describe that is skipped without it (and fails under CI), a fresh
 * bundle of the current sources, tiny-a as an HF checkpoint, the repository served with folders of a
 * temporary directory mounted, chromium launched with WebGPU on SwiftShader where that is installed,
 * the backends a page is offered, the example page opened and ready, an export's shard bytes, and the
 * hooks of a suite that serves its own exports (browserSuite).
 *   describeBrowser('the bundle', () => { beforeAll(async () => { buildBundle(dir); browser = await launchChromium(); }); });
 *   const suite = browserSuite('griffin-x-', async (tmp, hf) => { ... });   // exports of hf into tmp/models
 *   const page = await openExample(browser, server.url, 'wasm', 'int4', pageErrors);
 */
import {spawnSync} from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type {Browser, Page} from 'playwright-core';
import {SWIFTSHADER_ICD, underCI} from '../webgpu_env';

export const CHROMIUM = process.env.GRIFFIN_CHROMIUM ?? '/usr/bin/chromium';
const ROOT = path.join(__dirname, '../..');
const FIX = path.join(__dirname, '../fixtures');

/** describe(name, body) where chromium is; else skipped with a warning, or a failing test under CI. */
export function describeBrowser(name: string, body: () => void): void {
  if (fs.existsSync(CHROMIUM)) {
    describe(name, body);
    return;
  }
  const why = `no chromium at ${CHROMIUM} (apt-get install chromium libvulkan1, or set GRIFFIN_CHROMIUM)`;
  if (underCI()) {
    test(`${name}: chromium is available (required under CI)`, () => {
      throw new Error(why);
    });
  } else {
    console.warn(`browser tests skipped: ${why}`);
  }
  describe.skip(name, body);
}

/** The browser bundle of the current sources in `out` (apart from dist/, which others may be rebuilding). */
export function buildBundle(out: string): void {
  const build = spawnSync(process.execPath, [path.join(ROOT, 'scripts/build_browser.mjs'), '--out', out], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 120_000,
  });
  if (build.status !== 0) throw new Error(`bundle build failed: ${build.stderr || build.error?.message}`);
}

/** tiny-a's HF checkpoint (config.json, model.safetensors) with the tiny tokenizer.model, in a new folder `dir`. */
export function tinyHfCheckpoint(dir: string): void {
  fs.mkdirSync(dir);
  for (const f of ['config.json', 'model.safetensors']) fs.copyFileSync(path.join(FIX, 'tiny-a', f), path.join(dir, f));
  fs.copyFileSync(path.join(FIX, 'tokenizer/tiny.model'), path.join(dir, 'tokenizer.model'));
}

/** A local server of the repository (scripts/serve.js) with each folder `tmp/d` of `dirs` at `/d/`. */
export async function serveRepo(tmp: string, dirs: string[]): Promise<{url: string; close(): Promise<void>}> {
  const {startServer} = require('../../scripts/serve.js');
  return startServer({root: ROOT, mounts: Object.fromEntries(dirs.map((d) => [`/${d}/`, path.join(tmp, d)]))});
}

/** Headless chromium; webgpu: WebGPU unlocked on the SwiftShader adapter (its Vulkan driver where installed). */
export async function launchChromium(opts: {webgpu: boolean}): Promise<Browser> {
  const {chromium} = await import('playwright-core');
  if (!opts.webgpu)
    return chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-dev-shm-usage'],
    });
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp',
  };
  if (fs.existsSync(SWIFTSHADER_ICD)) env.VK_ICD_FILENAMES ??= SWIFTSHADER_ICD;
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    env,
    args: [
      '--no-sandbox',
      '--disable-dev-shm-usage',
      '--enable-unsafe-webgpu',
      '--use-webgpu-adapter=swiftshader',
      '--ignore-gpu-blocklist',
    ],
  });
}

/** The bytes of a tfjs export's weight shards (its .bin files). */
export function shardBytes(dir: string): number {
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.bin'))
    .reduce((s, f) => s + fs.statSync(path.join(dir, f)).size, 0);
}

/**
 * The backends the browser offers (cpu, and wasm, webgl, webgpu where present), probed in a page of
 * the served origin `url` (a secure context). No WebGPU adapter: a warning, or an error under CI.
 */
export async function offeredBackends(browser: Browser, url: string): Promise<string[]> {
  const page = await browser.newPage();
  await page.goto(`${url}/examples/browser/index.html?autoload=0&bundle=/bundle/griffin.esm.js`);
  const r = await page.evaluate(async () => {
    const gpu = (navigator as any).gpu;
    const adapter = gpu ? await gpu.requestAdapter() : null;
    return {
      webgpu: adapter != null,
      webgl: document.createElement('canvas').getContext('webgl2') != null,
      wasm: typeof WebAssembly === 'object',
    };
  });
  await page.close();
  if (!r.webgpu) {
    const why =
      "the headless browser offers no WebGPU adapter (SwiftShader needs chromium's vk_swiftshader_icd.json and libvulkan1)";
    if (underCI()) throw new Error(why);
    console.warn(`${why}: webgpu not tested`);
  }
  return ['cpu', ...(r.wasm ? ['wasm'] : []), ...(r.webgl ? ['webgl'] : []), ...(r.webgpu ? ['webgpu'] : [])];
}

/**
 * The example page (examples/browser, the bundle at /bundle/) on `backend` with the export served at
 * /models/<model>/, loaded and ready (else an error with the page's status); its page errors go to
 * `errors`, each led by `label`.
 */
export async function openExample(
  browser: Browser,
  url: string,
  backend: string,
  model: string,
  errors: string[],
  label = backend,
): Promise<Page> {
  const page = await browser.newPage({viewport: {width: 1200, height: 800}});
  page.on('pageerror', (e) => errors.push(`${label}: ${e.message}`));
  await page.goto(`${url}/examples/browser/?backend=${backend}&model=/models/${model}/&bundle=/bundle/griffin.esm.js`);
  await page.waitForFunction(
    () => ['ready', 'error'].includes(document.getElementById('status')!.dataset.state ?? ''),
    null,
    {timeout: 90_000},
  );
  const status = await page.textContent('#status');
  if ((await page.getAttribute('#status', 'data-state')) !== 'ready') throw new Error(`page on ${label}: ${status}`);
  return page;
}

/** What a browserSuite's tests use, set once its beforeAll has run. */
export interface BrowserSuite {
  /** The suite's temporary folder: bundle/, hf/ (tiny-a's HF checkpoint) and what prepare writes (models/). */
  tmp: string;
  /** The server of the repository with tmp's bundle/ and models/ mounted. */
  url: string;
  browser: Browser;
  /** Page errors (a test's pages push them); each test ends with none. */
  pageErrors: string[];
}

/**
 * Registers a browser suite's hooks (call it inside describeBrowser): before all, a temporary folder
 * with a fresh bundle and tiny-a's HF checkpoint, then `prepare(tmp, hf)` (the exports into
 * tmp/models, the Node references), the folder served and chromium launched with WebGPU; after each
 * test, no page errors; after all, all closed and the folder removed.
 */
export function browserSuite(prefix: string, prepare: (tmp: string, hf: string) => Promise<void>): BrowserSuite {
  const suite = {pageErrors: [] as string[]} as BrowserSuite;
  let server: {url: string; close(): Promise<void>} | undefined;
  beforeAll(async () => {
    suite.tmp = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    buildBundle(path.join(suite.tmp, 'bundle'));
    const hf = path.join(suite.tmp, 'hf');
    tinyHfCheckpoint(hf);
    await prepare(suite.tmp, hf);
    server = await serveRepo(suite.tmp, ['models', 'bundle']);
    suite.url = server.url;
    suite.browser = await launchChromium({webgpu: true});
  }, 300_000);
  afterAll(async () => {
    await suite.browser?.close();
    await server?.close();
    if (suite.tmp) fs.rmSync(suite.tmp, {recursive: true, force: true});
  });
  afterEach(() => {
    expect(suite.pageErrors.splice(0)).toEqual([]);
  });
  return suite;
}
