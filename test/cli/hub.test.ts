/**
 * Hub ids on the command line (src/cli/hub.ts) as real processes (src/cli.ts through tsx) against
 * the fake Hub (test/fake_hub.ts, HF_ENDPOINT): `griffin generate --model owner/name` prints the
 * same text as with the fixture's local folder, shows a byte bar, and works again offline; `convert
 * --from owner/name` writes the tfjs layout; mistakes end in one line and a non-zero exit.
 */
import {spawn} from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {type FakeHub, startFakeHub} from '../fake_hub';

jest.setTimeout(300_000);

const ROOT = path.join(__dirname, '../..');
const TSX = path.join(ROOT, 'node_modules/.bin/tsx');
const FIX = path.join(__dirname, '../fixtures');
const REPO = 'test-org/tiny-a';

let tmp: string;
let local: string;
let hub: FakeHub;

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'griffin-cli-hub-'));
  local = path.join(tmp, 'local');
  fs.mkdirSync(local);
  for (const f of ['config.json', 'model.safetensors'])
    fs.copyFileSync(path.join(FIX, 'tiny-a', f), path.join(local, f));
  fs.copyFileSync(path.join(FIX, 'tokenizer/tiny.model'), path.join(local, 'tokenizer.model'));
  const files = Object.fromEntries(fs.readdirSync(local).map((f) => [f, fs.readFileSync(path.join(local, f))]));
  hub = await startFakeHub(
    {[REPO]: {main: files}, 'test-org/gated': {main: files}},
    {'test-org/gated': {token: 'hf_x'}},
  );
});
afterAll(async () => {
  await hub?.close();
  fs.rmSync(tmp, {recursive: true, force: true});
});

/** Runs griffin asynchronously (the fake Hub answers from this process meanwhile). */
function griffin(
  args: string[],
  env: Record<string, string> = {},
): Promise<{code: number | null; stdout: string; stderr: string}> {
  const base = {...process.env};
  for (const k of ['HF_TOKEN', 'HF_HUB_OFFLINE', 'HF_HUB_CACHE', 'HUGGINGFACE_HUB_CACHE']) delete base[k];
  const child = spawn(TSX, [path.join(ROOT, 'src/cli.ts'), ...args], {
    cwd: ROOT,
    env: {...base, HF_HOME: path.join(tmp, 'hf-home'), HF_ENDPOINT: hub.url, ...env},
  });
  let stdout = '',
    stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  child.stdin.end();
  return new Promise((ok) => child.on('close', (code) => ok({code, stdout, stderr})));
}

const GENERATE = [
  '--prompt',
  'The history of the world',
  '--temperature',
  '0',
  '--max-new-tokens',
  '20',
  '--backend',
  'cpu',
];

test("generate --model owner/name: the local folder's text, a byte bar, then the same offline", async () => {
  const want = await griffin(['generate', '--model', local, ...GENERATE]);
  expect(want.code).toBe(0);
  expect(want.stdout.trim().length).toBeGreaterThan(0);
  const got = await griffin(['generate', '--model', REPO, ...GENERATE]);
  expect(got.stderr).toMatch(/^test-org\/tiny-a \[#{24}\] 671\.1\/671\.1 kB /m);
  expect(got.code).toBe(0);
  expect(got.stdout).toBe(want.stdout);
  const offline = await griffin(['generate', '--model', REPO, ...GENERATE], {HF_HUB_OFFLINE: '1'});
  expect(offline.code).toBe(0);
  expect(offline.stdout).toBe(want.stdout);
  expect(offline.stderr).not.toMatch(/MB/);
  const pinned = await griffin(['generate', '--model', REPO, '--revision', hub.commit(REPO, 'main'), ...GENERATE]);
  expect(pinned.stdout).toBe(want.stdout);
});

test('convert --from owner/name writes the tfjs layout and the tokenizer', async () => {
  const out = path.join(tmp, 'web');
  const r = await griffin(['convert', '--from', REPO, '--out', out]);
  expect(r.code).toBe(0);
  expect(fs.readdirSync(out).sort()).toEqual(['group1-shard1of1.bin', 'model.json', 'tokenizer.model']);
});

test('finetune --model owner/name: the adapter names the Hub id as its base, and generate --model ADAPTER loads it', async () => {
  const data = path.join(tmp, 'train.jsonl');
  fs.writeFileSync(
    data,
    ['the history of the world', 'the quick brown fox'].map((text) => JSON.stringify({text})).join('\n'),
  );
  const out = path.join(tmp, 'lora');
  const r = await griffin([
    'finetune',
    '--model',
    REPO,
    '--data',
    data,
    '--out',
    out,
    '--lora-rank',
    '2',
    '--steps',
    '1',
    '--backend',
    'cpu',
    '--seq-len',
    '16',
  ]);
  expect(r.code).toBe(0);
  expect(JSON.parse(fs.readFileSync(path.join(out, 'adapter_config.json'), 'utf8')).base_model_name_or_path).toBe(REPO);
  const viaHub = await griffin(['generate', '--model', out, ...GENERATE], {HF_HUB_OFFLINE: '1'});
  expect(viaHub.code).toBe(0);
  const viaLocal = await griffin(['generate', '--model', local, '--adapter', out, ...GENERATE]);
  expect(viaLocal.code).toBe(0);
  expect(viaHub.stdout).toBe(viaLocal.stdout);
});

test('mistakes: one line and a non-zero exit', async () => {
  const gated = await griffin(['generate', '--model', 'test-org/gated', ...GENERATE]);
  expect(gated.code).toBe(1);
  expect(gated.stderr).toMatch(/^griffin: test-org\/gated: access denied \(HTTP 401\).*set HF_TOKEN/);
  expect(gated.stderr.trim().split('\n')).toHaveLength(1);
  const missing = await griffin(['generate', '--model', 'test-org/none', ...GENERATE]);
  expect(missing.code).toBe(1);
  expect(missing.stderr).toMatch(
    /^griffin: test-org\/none: no such model on http:\/\/127\.0\.0\.1:\d+ and no such local directory/,
  );
  expect(missing.stderr.trim().split('\n')).toHaveLength(1);
  const revision = await griffin(['generate', '--model', REPO, '--revision', 'nope', ...GENERATE]);
  expect(revision.stderr.trim()).toMatch(/^griffin: test-org\/tiny-a: revision "nope" not found on http/);
  const localRevision = await griffin(['generate', '--model', local, '--revision', 'v1', ...GENERATE]);
  expect(localRevision.code).toBe(2);
  expect(localRevision.stderr.trim()).toBe(
    `griffin: --revision is for a Hub id (owner/name); ${local} is a local path`,
  );
});
