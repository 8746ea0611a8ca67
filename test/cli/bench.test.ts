/**
 * `griffin bench` as a real process (src/cli.ts through tsx): option mistakes end in one line and
 * exit 2; a tiny-config run prints the table and writes JSON whose structure and derived numbers
 * are checked (never the speeds themselves).
 */
import {spawnSync} from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {scanBytes} from '../../src/bench/common';

const ROOT = path.join(__dirname, '../..');
const TSX = path.join(ROOT, 'node_modules/.bin/tsx');
const TINY_A = path.join(__dirname, '../fixtures/tiny-a');

function griffin(args: string[]) {
  const r = spawnSync(TSX, [path.join(ROOT, 'src/cli.ts'), 'bench', ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 120_000,
  });
  return {code: r.status, stdout: r.stdout, stderr: r.stderr};
}

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'griffin-bench-'));
});
afterAll(() => fs.rmSync(dir, {recursive: true, force: true}));

test.each([
  [['--config', 'huge'], /argument 'huge' is invalid\. Allowed choices are tiny, small, 2b, 9b, mid/],
  [['--backend', 'gpu'], /argument 'gpu' is invalid\. Allowed choices are cpu, wasm, webgpu, tensorflow/],
  [['--prompt-lengths', '128,,2048'], /--prompt-lengths must be positive integers separated by commas/],
  [['--batch', '1,0'], /--batch must be positive integers/],
  [['--new-tokens', '2.5'], /--new-tokens must be an integer >= 1/],
  [['--config', 'tiny', '--model', TINY_A], /give --config or --model, not both/],
  [['--model', path.join(TINY_A, 'nope')], /model directory not found/],
  [['--model', TINY_A, '--layers', '2'], /--layers and --vocab shrink a --config, not a --model/],
  [['--frobnicate'], /unknown option '--frobnicate'/],
])('bench %j: one-line usage error, exit 2', (args, message) => {
  const r = griffin(args as string[]);
  expect(r.code).toBe(2);
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
  expect(r.stderr).toMatch(message as RegExp);
  expect(r.stdout).toBe('');
});

test('bench --config 2b on wasm: one line saying the weights do not fit its 4 GiB heap, before allocating', () => {
  const r = griffin(['--config', '2b', '--backend', 'wasm', '--no-json']);
  expect(r.code).toBe(1);
  expect(r.stderr.trim().split('\n')).toEqual([
    "griffin: --config 2b has 10.7 GB of float32 weights, past the wasm backend's 4 GiB heap; use --backend cpu (or tensorflow, webgpu), or shrink it with --layers / --vocab",
  ]);
});

test('bench --config tiny on cpu: table on stdout, JSON with the machine and every measurement', () => {
  const file = path.join(dir, 'tiny.json');
  const r = griffin([
    '--config',
    'tiny',
    '--backend',
    'cpu',
    '--prompt-lengths',
    '16,40',
    '--batch',
    '1,3',
    '--new-tokens',
    '3',
    '--decode-prompt',
    '8',
    '--reps',
    '1',
    '--train-seq',
    '12',
    '--train-steps',
    '1',
    '--json',
    file,
  ]);
  expect(r.stderr).not.toMatch(/Error|at .*\.ts:/);
  expect(r.code).toBe(0);
  // Progress on stderr, one line per measurement.
  expect(r.stderr).toMatch(/prefill t=16: .* tokens\/s/);
  expect(r.stderr).toMatch(/decode b=3: .* tokens\/s/);
  expect(r.stderr).toContain(`written to ${file}`);

  const j = JSON.parse(fs.readFileSync(file, 'utf8'));
  expect(j.bench).toBe('griffin');
  expect(j.environment).toMatchObject({
    backend: 'cpu',
    node: process.version,
    cpus: os.cpus().length,
    cpu: os.cpus()[0].model,
  });
  // tiny: 4 layers of width 64, vocab 512 (tied): the same count as tiny-a's checkpoint.
  expect(j.model).toMatchObject({source: 'random:tiny', layers: 4, hidden: 64, vocab: 512, params: 163520});
  expect(j.load.ms).toBeGreaterThan(0);

  expect(j.prefill.map((p: {t: number}) => p.t)).toEqual([16, 40]);
  for (const p of j.prefill) {
    expect(p.tokPerS).toBeCloseTo((p.t / p.ms) * 1000, 0);
    expect(p.cpuMs).toBeGreaterThan(0); // CPU time of the same work (one thread: about the wall time, or less)
  }
  expect(j.decode.map((d: {b: number}) => d.b)).toEqual([1, 3]);
  for (const d of j.decode) {
    expect(d).toMatchObject({promptLen: 8, steps: 3});
    expect(d.tokPerS).toBeCloseTo((d.b / d.msPerStep) * 1000, 0);
    expect(d.cpuMsPerStep).toBeGreaterThan(0);
  }
  // Scan: forward and backward per length at the config's lru width, bandwidth = bytes / time.
  expect(j.scan.map((s: {t: number; pass: string}) => `${s.t}:${s.pass}`)).toEqual([
    '16:fwd',
    '16:bwd',
    '40:fwd',
    '40:bwd',
  ]);
  for (const s of j.scan) {
    expect(s.e).toBe(64);
    expect(s.GBps / (scanBytes(s.pass, s.b, s.t, s.e) / s.ms / 1e6)).toBeCloseTo(1, 3);
  }
  // A fine-tuning step on random weights: the loss is near ln(512) = 6.24 (uniform guessing).
  expect(j.train).toMatchObject({b: 1, t: 12, params: 163520});
  expect(Math.abs(j.train.loss - Math.log(512))).toBeLessThan(1.5);
  expect(j.train.tokPerS).toBeCloseTo((12 / j.train.ms) * 1000, 0);
  // Memory: the kernel's peak resident set covers at least the weights.
  expect(j.memory.rssSource).toBe('VmHWM');
  expect(j.memory.peakRssMB).toBeGreaterThan((163520 * 4) / 2 ** 20);
  expect(j.memory.peakRssMB).toBeGreaterThanOrEqual(j.load.peakRssMB);

  // The table: a header naming the machine, then one row per measurement.
  const lines = r.stdout.trim().split('\n');
  expect(lines[0]).toMatch(/^griffin bench: random:tiny \(163520 params\) on cpu, /);
  const whats = lines.slice(3).map((l) => l.split(/\s{2,}/)[0]);
  expect(whats).toEqual([
    'load',
    'prefill',
    'prefill',
    'decode',
    'decode',
    'scan fwd',
    'scan bwd',
    'scan fwd',
    'scan bwd',
    'train step',
    'peak memory',
  ]);
});

test('bench --model tiny-a --skip-*: loads the checkpoint, measures only what is asked, --no-json writes nothing', () => {
  const before = fs.readdirSync(path.join(ROOT, 'bench/results'));
  const r = griffin([
    '--model',
    TINY_A,
    '--backend',
    'wasm',
    '--prompt-lengths',
    '8',
    '--skip-decode',
    '--skip-scan',
    '--skip-train',
    '--reps',
    '1',
    '--no-json',
  ]);
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(/^griffin bench: .*tiny-a \(163520 params\) on wasm/);
  const whats = r.stdout
    .trim()
    .split('\n')
    .slice(3)
    .map((l) => l.split(/\s{2,}/)[0]);
  expect(whats).toEqual(['load', 'prefill', 'peak memory']);
  expect(r.stderr).not.toContain('written to');
  expect(fs.readdirSync(path.join(ROOT, 'bench/results'))).toEqual(before);
});
