#!/usr/bin/env node
/**
 * Builds the browser bundle: dist/browser/griffin.esm.js (one ES module: the package, tfjs and
 * its webgpu / webgl / wasm / cpu backends, sentencepiece-js), with the wasm backend's binaries
 * beside it. Run by `npm run build` after tsc.
 *   node scripts/build_browser.mjs [--no-minify] [--out DIR]     # default dist/browser
 *
 * Node-only modules stay out: src/backend.ts, src/webgpu_node.ts and converters/hub.ts (the Hub
 * through Python's cache) are replaced by their browser versions in src/browser/, fs and path become small browser versions (src/browser/fs.ts,
 * path.ts), and the `webgpu` npm package (Dawn), os, readline, child_process, ... become a stub
 * whose every use is a one-line error (src/browser/node_only.cjs).
 */
import * as esbuild from 'esbuild';
import * as fs from 'fs';
import * as path from 'path';
import {fileURLToPath} from 'url';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const argAt = process.argv.indexOf('--out');
const out = argAt >= 0 ? path.resolve(process.argv[argAt + 1] ?? '') : path.join(root, 'dist/browser');
const minify = !process.argv.includes('--no-minify');

const shims = {
  fs: 'src/browser/fs.ts',
  path: 'src/browser/path.ts',
};
const nodeOnly = [
  'webgpu',
  'os',
  'readline',
  'child_process',
  'module',
  'url',
  'crypto',
  'zlib',
  'util',
  'stream',
  'worker_threads',
  'perf_hooks',
  'http',
  'https',
  'net',
  'tty',
  'events',
  'string_decoder',
];

// The package's own Node-only modules, replaced by their browser versions (same exports).
const replaced = {
  'src/backend.ts': 'src/browser/backend.ts',
  'src/webgpu_node.ts': 'src/browser/webgpu_node.ts',
  'converters/hub.ts': 'src/browser/hub.ts',
};

const nodeModules = {
  name: 'griffin-node-modules',
  setup(build) {
    build.onResolve({filter: /^\.\.?\/.*(backend|webgpu_node|hub)$/}, (args) => {
      const file = path
        .relative(root, path.resolve(args.resolveDir, `${args.path}.ts`))
        .split(path.sep)
        .join('/');
      return replaced[file] ? {path: path.join(root, replaced[file])} : undefined;
    });
    build.onResolve({filter: /^(node:)?[a-z_]+(\/promises)?$/}, (args) => {
      const name = args.path.replace(/^node:/, '').replace(/\/promises$/, '');
      if (shims[name]) return {path: path.join(root, shims[name])};
      if (nodeOnly.includes(name)) return {path: path.join(root, 'src/browser/node_only.cjs')};
      return undefined;
    });
  },
};

// Only what this script writes is replaced (--out may name a folder holding other files).
fs.mkdirSync(out, {recursive: true});
for (const f of fs.readdirSync(out))
  if (/^griffin\.esm\.js|^tfjs-backend-wasm.*\.wasm$/.test(f)) fs.rmSync(path.join(out, f));
const result = await esbuild.build({
  absWorkingDir: root,
  entryPoints: ['src/browser/index.ts'],
  outfile: path.join(out, 'griffin.esm.js'),
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2020',
  minify,
  sourcemap: true,
  legalComments: 'linked',
  metafile: true,
  logLevel: 'warning',
  logOverride: {'unsupported-require-call': 'silent', 'commonjs-variable-in-esm': 'silent'},
  plugins: [nodeModules],
  // The wasm backend finds its binaries next to the bundle (src/browser/backend.ts).
  banner: {js: 'const __griffinBundleUrl = import.meta.url;'},
  define: {'process.env.NODE_ENV': '"production"'},
});

const wasmDir = path.join(root, 'node_modules/@tensorflow/tfjs-backend-wasm/dist');
for (const f of fs.readdirSync(wasmDir).filter((f) => f.endsWith('.wasm')))
  fs.copyFileSync(path.join(wasmDir, f), path.join(out, f));

// Nothing Node-only may have slipped in (a new import of a module not mapped above).
const inputs = Object.keys(result.metafile.inputs);
// (A CommonJS .node.js build of tfjs would also mean two copies of tfjs-core.)
const leaked = inputs.filter((p) =>
  /node_modules\/webgpu\/|dawn\.node|@tensorflow\/.*\.node\.js$|^src\/(backend|webgpu_node)\.ts$|^converters\/hub\.ts$|@huggingface\/hub/.test(
    p,
  ),
);
if (leaked.length > 0) throw new Error(`browser bundle: Node-only modules bundled: ${leaked.join(', ')}`);
if (process.env.GRIFFIN_BUNDLE_META) fs.writeFileSync(process.env.GRIFFIN_BUNDLE_META, JSON.stringify(result.metafile));
const bytes = fs.statSync(path.join(out, 'griffin.esm.js')).size;
console.log(
  `${path.relative(process.cwd(), path.join(out, 'griffin.esm.js'))}: ${(bytes / 1e6).toFixed(1)} MB, ${inputs.length} modules`,
);
