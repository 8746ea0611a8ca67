/**
 * package.json's entry points, resolved by Node itself (child processes in the repository, which
 * find the package by its own name through "exports"), against the built dist/:
 *   - 'griffin-tfjs' is dist/index.js for require and import; with the "browser" condition (what
 *     bundlers set for the web) it is the ESM bundle, as is 'griffin-tfjs/browser';
 *   - the files every entry names exist, "types" included, and the top-level "browser" field too;
 *   - require('griffin-tfjs') gives every value src/index.ts exports, and the bundle exports
 *     them too, plus the browser's own (setWasmFolder, fine-tuning);
 *   - the documented deep import 'griffin-tfjs/dist/src/training' keeps working.
 * dist/ comes from `npm run build` (`npm ci` runs it through "prepare", so it is there in CI);
 * without it the suite is skipped, except under CI, where that is a failure.
 */
import {spawnSync} from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

const ROOT = path.join(__dirname, '..');
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
const BUNDLE = path.join(ROOT, 'dist/browser/griffin.esm.js');
const MAIN = path.join(ROOT, 'dist/index.js');
const underCI = !!process.env.CI && !['false', '0'].includes(process.env.CI);

/** Runs `node [flags] -e code` in the repository root and returns its stdout (throws with stderr on failure). */
function node(code: string, flags: string[] = []): string {
  const r = spawnSync(process.execPath, [...flags, '-e', code], {cwd: ROOT, encoding: 'utf8', timeout: 60_000});
  if (r.status !== 0)
    throw new Error(
      `node ${flags.join(' ')} -e ${JSON.stringify(code)} failed (${r.status}): ${r.stderr || r.error?.message}`,
    );
  return r.stdout.trim();
}
const resolveCjs = (spec: string, flags: string[] = []) =>
  node(`console.log(require.resolve(${JSON.stringify(spec)}))`, flags);
const resolveEsm = (spec: string, flags: string[] = []) =>
  node(`import {fileURLToPath} from 'url'; console.log(fileURLToPath(import.meta.resolve(${JSON.stringify(spec)})))`, [
    '--input-type=module',
    ...flags,
  ]);

/** The value (not type-only) names src/index.ts exports. */
function indexValueExports(): string[] {
  const src = fs.readFileSync(path.join(ROOT, 'src/index.ts'), 'utf8');
  const names: string[] = [];
  for (const m of src.matchAll(/^export\s+\{([^}]*)\}\s+from/gm)) {
    for (const part of m[1].split(',')) {
      const name = part
        .trim()
        .split(/\s+as\s+/)
        .pop()!
        .trim();
      if (name !== '' && !name.startsWith('type ')) names.push(name);
    }
  }
  return names;
}

const built = fs.existsSync(MAIN) && fs.existsSync(BUNDLE);
const why = `no built dist/ (${path.relative(ROOT, MAIN)}, ${path.relative(ROOT, BUNDLE)}): run npm run build`;
if (!built) {
  if (underCI)
    test('dist/ is built (required under CI: npm ci runs "prepare")', () => {
      throw new Error(why);
    });
  else console.warn(`package exports tests skipped: ${why}`);
}

(built ? describe : describe.skip)('package.json entry points', () => {
  test('"." is dist/index.js for require and import, the ESM bundle under the "browser" condition', () => {
    expect(resolveCjs('griffin-tfjs')).toBe(MAIN);
    expect(resolveEsm('griffin-tfjs')).toBe(MAIN);
    expect(resolveCjs('griffin-tfjs', ['--conditions=browser'])).toBe(BUNDLE);
    expect(resolveEsm('griffin-tfjs', ['--conditions=browser'])).toBe(BUNDLE);
    expect(resolveEsm('griffin-tfjs/browser')).toBe(BUNDLE);
    expect(resolveCjs('griffin-tfjs/package.json')).toBe(path.join(ROOT, 'package.json'));
    expect(resolveCjs('griffin-tfjs/dist/src/training')).toBe(path.join(ROOT, 'dist/src/training/index.js'));
  }, 60_000);

  test('every file package.json names exists, types included', () => {
    const targets: string[] = [pkg.main, pkg.types, pkg.browser, ...Object.values(pkg.bin as Record<string, string>)];
    const walk = (v: unknown): void => {
      if (typeof v === 'string') targets.push(v);
      else if (v != null && typeof v === 'object') Object.values(v).forEach(walk);
    };
    walk(pkg.exports);
    const files = targets.filter((t) => !t.includes('*')).map((t) => path.join(ROOT, t));
    expect(files.filter((f) => !fs.existsSync(f))).toEqual([]);
    expect(path.join(ROOT, pkg.browser)).toBe(BUNDLE);
    expect(pkg.exports['.'].browser).toBe('./dist/browser/griffin.esm.js');
    expect(pkg.exports['.'].types).toBe('./dist/index.d.ts');
    // "types" must come first for TypeScript to use it.
    expect(Object.keys(pkg.exports['.'])[0]).toBe('types');
    expect(Object.keys(pkg.exports['./browser'])[0]).toBe('types');
    // The browser entry's declarations are the browser entry's (src/browser/index.ts).
    expect(fs.readFileSync(path.join(ROOT, pkg.exports['./browser'].types), 'utf8')).toMatch(/setWasmFolder/);
  });

  test("require('griffin-tfjs') gives every value src/index.ts exports", () => {
    const want = indexValueExports();
    expect(want).toEqual(
      expect.arrayContaining([
        'tf',
        'RecurrentGemmaForCausalLM',
        'GemmaTokenizer',
        'useBackend',
        'Sampler',
        'GenerationState',
      ]),
    );
    const got: Record<string, string> = JSON.parse(
      node(
        'const g = require("griffin-tfjs"); console.log(JSON.stringify(Object.fromEntries(Object.keys(g).map((k) => [k, typeof g[k]]))))',
      ),
    );
    const missing = want.filter((n) => !(n in got));
    expect({missing, hint: missing.length > 0 ? 'dist/ is older than src/index.ts: npm run build' : ''}).toEqual({
      missing: [],
      hint: '',
    });
    expect(got.RecurrentGemmaForCausalLM).toBe('function');
    expect(got.useBackend).toBe('function');
    expect(got.tf).toBe('object');
  }, 60_000);

  test("the ESM bundle exports the same names plus the browser's own", () => {
    const text = fs.readFileSync(BUNDLE, 'utf8');
    const last = [...text.matchAll(/export\s*\{([^}]*)\}/g)].pop();
    expect(last).toBeDefined();
    const names = last![1].split(',').map((p) =>
      p
        .trim()
        .split(/\s+as\s+/)
        .pop()!
        .trim(),
    );
    const missing = [...indexValueExports(), 'setWasmFolder', 'loadTokenizer', 'Trainer', 'finetune'].filter(
      (n) => !names.includes(n),
    );
    expect({missing, hint: missing.length > 0 ? 'dist/browser is older than src/: npm run build' : ''}).toEqual({
      missing: [],
      hint: '',
    });
  });
});
