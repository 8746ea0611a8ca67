/**
 * Picking and starting a tfjs backend in the browser: webgpu, webgl, wasm or cpu, each with this
 * package's kernels. The browser bundle puts this module where src/backend.ts (Node's) would be.
 *   const name = await useBackend();           // the best one that starts: webgpu, webgl, wasm, cpu
 *   await useBackend('wasm');
 */

import {setWasmPaths} from '@tensorflow/tfjs-backend-wasm';
import {tf} from '../tf';
// The browser has its backends at load: their packages and this package's kernels for them.
import '../../ops/register/webgpu';
import '../../ops/register/wasm';

export const BROWSER_BACKENDS = ['webgpu', 'webgl', 'wasm', 'cpu'] as const;
export type BrowserBackendName = (typeof BROWSER_BACKENDS)[number];
/** The names src/backend.ts exports in Node (the bundle puts this module in its place). */
export const BACKENDS = BROWSER_BACKENDS;
export type BackendName = BrowserBackendName;

/** The bundle's own URL (scripts/build_browser.mjs defines it): its folder holds the wasm binaries. */
declare const __griffinBundleUrl: string | undefined;

let wasmPathsSet = false;

/** Where the wasm backend fetches tfjs-backend-wasm*.wasm: a folder URL ending in '/'. Default: the bundle's folder. */
export function setWasmFolder(url: string): void {
  setWasmPaths(url.endsWith('/') ? url : `${url}/`);
  wasmPathsSet = true;
}

async function start(name: BrowserBackendName): Promise<void> {
  if (name === 'webgpu') {
    const gpu = (globalThis as {navigator?: {gpu?: {requestAdapter(): Promise<unknown>}}}).navigator?.gpu;
    if (gpu == null)
      throw new Error('backend webgpu: this browser has no navigator.gpu (WebGPU is off or unsupported)');
    if ((await gpu.requestAdapter()) == null) throw new Error('backend webgpu: no GPU adapter');
  } else if (name === 'wasm') {
    if (!wasmPathsSet && typeof __griffinBundleUrl === 'string') setWasmFolder(new URL('./', __griffinBundleUrl).href);
  }
  let ok = false;
  try {
    ok = await tf.setBackend(name);
  } catch (e) {
    throw new Error(`backend ${name}: failed to start (${(e as Error).message})`);
  }
  if (!ok) throw new Error(`backend ${name}: failed to start`);
  await tf.ready();
}

/**
 * Starts the named backend, or with no name the first of webgpu, webgl, wasm, cpu that starts,
 * and returns its name. Errors are one line and name the backend.
 */
export async function useBackend(name?: string): Promise<BrowserBackendName> {
  if (name != null && !(BROWSER_BACKENDS as readonly string[]).includes(name)) {
    throw new Error(`unknown backend ${JSON.stringify(name)} (expected one of ${BROWSER_BACKENDS.join(', ')})`);
  }
  if (name != null) {
    await start(name as BrowserBackendName);
    return name as BrowserBackendName;
  }
  const why: string[] = [];
  for (const b of BROWSER_BACKENDS) {
    try {
      await start(b);
      return b;
    } catch (e) {
      why.push((e as Error).message);
    }
  }
  throw new Error(`no backend started: ${why.join('; ')}`);
}
