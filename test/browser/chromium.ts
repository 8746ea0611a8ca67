/**
 * What the headless-browser suites share: where chromium is (GRIFFIN_CHROMIUM, else
 * /usr/bin/chromium), a describe that is skipped without it (and fails under CI), a fresh
 * bundle of the current sources, tiny-a as an HF checkpoint, the repository served with folders of a
 * temporary directory mounted, and chromium launched with WebGPU on SwiftShader where that is installed.
 *   describeBrowser('the bundle', () => { beforeAll(async () => { buildBundle(dir); browser = await launchChromium(); }); });
 */
import {spawnSync} from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import type {Browser} from 'playwright-core';
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
