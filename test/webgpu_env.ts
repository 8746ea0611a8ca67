/**
 * Shared setup of the WebGPU test files: SwiftShader defaults for a machine without a GPU, an
 * adapter probe, and the skip-or-fail rule (no adapter: skip, except under CI where it fails).
 *   import {describeWebGPU} from '../webgpu_env';   // first import: the env must be set before Dawn loads
 *   describeWebGPU('RgLruScan on webgpu', () => { beforeAll(() => initNodeWebGPU()); ... });
 */

import {spawnSync} from 'child_process';
import {existsSync} from 'fs';
import * as vm from 'vm';

export const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

// Jest gives each test file its own copy of process.env, while Dawn reads the real environment
// (getenv) when it loads the Vulkan driver, so the defaults go to both. VK_ICD_FILENAMES only if
// the file exists: a missing one would hide every real driver.
const hostEnv = (vm.runInThisContext('process') as NodeJS.Process).env;
for (const env of [process.env, hostEnv]) {
  if (existsSync(SWIFTSHADER_ICD)) env.VK_ICD_FILENAMES ??= SWIFTSHADER_ICD;
  env.XDG_RUNTIME_DIR ??= '/tmp';
}

export interface AdapterProbe {
  ok: boolean;
  /** The probe's one line: 'ADAPTER <description>', 'NO_ADAPTER', 'ERROR ...' or why it failed. */
  why: string;
}

let probed: AdapterProbe | null = null;

/**
 * Whether Dawn finds an adapter, asked in a child process (once per test file): jest collects
 * tests synchronously, and a skip has to be decided then.
 */
export function probeAdapter(): AdapterProbe {
  if (probed != null) return probed;
  const code = `import('webgpu').then(async ({create}) => {
    const adapter = await create([]).requestAdapter();
    console.log(adapter ? 'ADAPTER ' + (adapter.info?.description || adapter.info?.vendor || '?') : 'NO_ADAPTER');
    process.exit(0);
  }).catch((e) => { console.log('ERROR ' + e.message); process.exit(0); });`;
  const r = spawnSync(process.execPath, ['-e', code], {
    cwd: __dirname,
    env: process.env,
    encoding: 'utf8',
    timeout: 60_000,
  });
  const line =
    (r.stdout ?? '').split('\n').find((l) => /^(ADAPTER|NO_ADAPTER|ERROR)/.test(l)) ??
    `probe failed: ${r.error?.message ?? r.stderr}`;
  probed = {ok: line.startsWith('ADAPTER '), why: line.trim()};
  return probed;
}

/** Whether CI is set to anything but false / 0: then a missing adapter is a failure. */
export function underCI(): boolean {
  return !!process.env.CI && !['false', '0'].includes(process.env.CI);
}

/**
 * describe() when an adapter exists; otherwise describe.skip() with a warning, or, under CI, one
 * failing test that says why.
 */
export function describeWebGPU(name: string, body: () => void): void {
  const probe = probeAdapter();
  if (probe.ok) {
    describe(name, body);
    return;
  }
  const why =
    `no WebGPU adapter (${probe.why}); without a GPU, ` +
    `\`apt-get install chromium libvulkan1\` provides SwiftShader at ${SWIFTSHADER_ICD}`;
  if (underCI()) {
    test(`${name}: a WebGPU adapter is available (required under CI)`, () => {
      throw new Error(why);
    });
  } else {
    console.warn(`WebGPU tests skipped (${name}): ${why}`);
  }
  describe.skip(name, body);
}
