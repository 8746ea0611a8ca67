/**
 * `griffin serve` as a real process (src/cli.ts through tsx) on a directory assembled from tiny-a
 * and the tiny tokenizer: it answers on its port, stops cleanly on SIGTERM, and bad options end in
 * one line and exit 2.
 */
import {type ChildProcess, spawn, spawnSync} from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const ROOT = path.join(__dirname, '../..');
const TSX = path.join(ROOT, 'node_modules/.bin/tsx');
const FIX = path.join(__dirname, '../fixtures');
let dir: string;

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'griffin-serve-'));
  for (const f of ['config.json', 'model.safetensors']) fs.copyFileSync(path.join(FIX, 'tiny-a', f), path.join(dir, f));
  fs.copyFileSync(path.join(FIX, 'tokenizer/tiny.model'), path.join(dir, 'tokenizer.model'));
});
afterAll(() => fs.rmSync(dir, {recursive: true, force: true}));

test('serves on the port it prints and exits 0 on SIGTERM', async () => {
  const child: ChildProcess = spawn(
    TSX,
    [path.join(ROOT, 'src/cli.ts'), 'serve', '--model', dir, '--backend', 'cpu', '--port', '0', '--max-batch', '2'],
    {cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe']},
  );
  let err = '';
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      const m = /on (http:\/\/127\.0\.0\.1:\d+)/.exec(err);
      if (m) resolve(m[1]);
    });
    child.on('exit', () => reject(new Error(`exited: ${err}`)));
  });
  const name = path.basename(dir);
  const models = await (await fetch(`${url}/v1/models`)).json();
  expect(models.data[0].id).toBe(name);
  const r = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    body: JSON.stringify({prompt: 'The river', max_tokens: 3, temperature: 0}),
  });
  expect((await r.json()).usage.completion_tokens).toBe(3);
  const code = await new Promise<number | null>((resolve) => {
    child.on('exit', (c) => resolve(c));
    child.kill('SIGTERM');
  });
  expect(code).toBe(0);
});

test('bad options: one line, exit 2', () => {
  for (const args of [
    ['--max-batch', '0'],
    ['--port', '70000'],
    ['--max-queue', '-1'],
  ]) {
    const r = spawnSync(TSX, [path.join(ROOT, 'src/cli.ts'), 'serve', '--model', dir, ...args], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  }
});
