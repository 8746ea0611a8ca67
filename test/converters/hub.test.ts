/**
 * Hub ids as sources (converters/hub.ts) against a fake Hub (test/fake_hub.ts) on localhost, with
 * HF_ENDPOINT and HF_HOME pointed at it and a temp folder: the first load fills the cache in
 * huggingface_hub's layout (blobs named by git blob id / sha256, relative snapshot links, refs),
 * later loads need no network, a cut download resumes with a Range request, and failures are one
 * line. Reference values: the same fixture loaded from its local folder.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {HubError, hubSnapshot} from '../../converters/hub';
import {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {GemmaTokenizer} from '../../src/tokenizer';
import type {Progress} from '../../src/util/progress';
import {type FakeHub, type FakeRepo, gitBlobId, sha256, startFakeHub} from '../fake_hub';

jest.setTimeout(120_000);

const FIX = path.join(__dirname, '../fixtures');
const TINY_A = path.join(FIX, 'tiny-a');
const ADAPTER = path.join(FIX, 'hf-goldens/ours_adapter');
const IDS = [[2, 342, 48, 451, 411, 374, 280, 400, 354, 313, 210, 270]];
const REPO = 'test-org/tiny-a';

const read = (dir: string, f: string) => fs.readFileSync(path.join(dir, f));
const CONFIG = read(TINY_A, 'config.json');
const WEIGHTS = read(TINY_A, 'model.safetensors');
const TOKENIZER = read(path.join(FIX, 'tokenizer'), 'tiny.model');

let tmp: string;
let home: string;
let reference: number[];
let adapterReference: number[];
let v0Dir: string;
let v0Reference: number[];
const env = {...process.env};

const logitsOf = (m: RecurrentGemmaForCausalLM) => {
  const {logits} = m.forward({inputIds: IDS});
  const v = Array.from(logits.dataSync());
  logits.dispose();
  m.dispose();
  return v;
};

/** The repos every test serves: tiny-a (main, and v0 with other weights), an adapter of it, a gated copy. */
function repos(): Record<string, FakeRepo> {
  const adapterConfig = JSON.parse(fs.readFileSync(path.join(ADAPTER, 'adapter_config.json'), 'utf8'));
  adapterConfig.base_model_name_or_path = REPO;
  const main = {
    'config.json': CONFIG,
    'model.safetensors': WEIGHTS,
    'tokenizer.model': TOKENIZER,
    'README.md': new Uint8Array(3),
  };
  return {
    [REPO]: {
      main,
      v0: {'config.json': CONFIG, 'model.safetensors': read(v0Dir, 'model.safetensors'), 'tokenizer.model': TOKENIZER},
    },
    'test-org/lora': {
      main: {
        'adapter_config.json': new TextEncoder().encode(JSON.stringify(adapterConfig)),
        'adapter_model.safetensors': read(ADAPTER, 'adapter_model.safetensors'),
      },
    },
    'test-org/gated': {main},
  };
}

let hub: FakeHub;

beforeAll(async () => {
  await tf.setBackend('cpu');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'griffin-hub-'));
  reference = logitsOf(await RecurrentGemmaForCausalLM.fromPretrained(TINY_A));
  adapterReference = logitsOf(await RecurrentGemmaForCausalLM.fromPretrained(TINY_A, {adapter: ADAPTER}));
  // v0: the same config with other (random) weights.
  const other = await RecurrentGemmaForCausalLM.fromPretrained(TINY_A);
  for (const w of other.getWeights()) w.assign(tf.randomNormal(w.shape, 0, 0.05, 'float32', 7));
  v0Dir = path.join(tmp, 'v0');
  await other.save(v0Dir);
  v0Reference = logitsOf(other);
});

beforeEach(async () => {
  home = fs.mkdtempSync(path.join(tmp, 'home-'));
  hub = await startFakeHub(repos(), {'test-org/gated': {token: 'hf_secret'}});
  for (const k of ['HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN', 'HF_HUB_OFFLINE', 'HF_HUB_CACHE', 'HUGGINGFACE_HUB_CACHE'])
    delete process.env[k];
  process.env.HF_HOME = home;
  process.env.HF_ENDPOINT = hub.url;
});
afterEach(async () => {
  await hub.close();
  process.env = {...env};
});
afterAll(() => fs.rmSync(tmp, {recursive: true, force: true}));

const repoDir = () => path.join(home, 'hub', 'models--test-org--tiny-a');

test("first load downloads into huggingface_hub's layout and gives the local fixture's logits", async () => {
  const events: Progress[] = [];
  const model = await RecurrentGemmaForCausalLM.fromPretrained(REPO, {onProgress: (p) => events.push(p)});
  expect(logitsOf(model)).toEqual(reference);
  const commit = hub.commit(REPO, 'main');
  expect(fs.readFileSync(path.join(repoDir(), 'refs', 'main'), 'utf8')).toBe(commit);
  const snap = path.join(repoDir(), 'snapshots', commit);
  // Only what a model load needs: no tokenizer, no README.
  expect(fs.readdirSync(snap).sort()).toEqual(['config.json', 'model.safetensors']);
  expect(fs.readlinkSync(path.join(snap, 'config.json'))).toBe(`../../blobs/${gitBlobId(CONFIG)}`);
  expect(fs.readlinkSync(path.join(snap, 'model.safetensors'))).toBe(`../../blobs/${sha256(WEIGHTS)}`);
  expect(fs.readdirSync(path.join(repoDir(), 'blobs')).sort()).toEqual([gitBlobId(CONFIG), sha256(WEIGHTS)].sort());
  expect(fs.readFileSync(path.join(snap, 'model.safetensors')).equals(WEIGHTS)).toBe(true);
  // Bytes first (the download), then tensors (the load).
  const bytes = events.filter((e) => e.unit === 'bytes');
  expect(bytes.at(-1)).toMatchObject({loaded: CONFIG.length + WEIGHTS.length, total: CONFIG.length + WEIGHTS.length});
  expect(bytes.every((e, i) => i === 0 || e.loaded >= bytes[i - 1].loaded)).toBe(true);
  expect(events.findIndex((e) => e.unit === 'tensors')).toBeGreaterThan(events.lastIndexOf(bytes.at(-1)!));
});

test('a second load works with the Hub gone, and HF_HUB_OFFLINE=1 uses no network at all', async () => {
  logitsOf(await RecurrentGemmaForCausalLM.fromPretrained(REPO));
  const tok = await GemmaTokenizer.load(REPO);
  await hub.close();
  expect(logitsOf(await RecurrentGemmaForCausalLM.fromPretrained(REPO))).toEqual(reference);
  process.env.HF_HUB_OFFLINE = '1';
  expect(logitsOf(await RecurrentGemmaForCausalLM.fromPretrained(REPO))).toEqual(reference);
  expect((await GemmaTokenizer.load(REPO)).encode('hello world')).toEqual(tok.encode('hello world'));
  // Not cached: one line that says so.
  await expect(RecurrentGemmaForCausalLM.fromPretrained('test-org/lora')).rejects.toThrow(
    /^test-org\/lora: not in the cache at main \(.*\) and HF_HUB_OFFLINE is set; load it once online$/,
  );
  delete process.env.HF_HUB_OFFLINE;
  await expect(RecurrentGemmaForCausalLM.fromPretrained('test-org/lora')).rejects.toThrow(
    /^test-org\/lora: cannot reach http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\), and revision main is not in the cache/,
  );
});

test('an interrupted download is left as .incomplete and resumed with a Range request', async () => {
  const cut = 100_000;
  hub.cutNext('model.safetensors', cut);
  const err = await RecurrentGemmaForCausalLM.fromPretrained(REPO).catch((e: Error) => e);
  expect((err as Error).message).toMatch(
    new RegExp(
      `^test-org/tiny-a: download of model.safetensors interrupted at ${cut} of ${WEIGHTS.length} bytes .*; run again to resume$`,
    ),
  );
  const blob = path.join(repoDir(), 'blobs', sha256(WEIGHTS));
  const snap = path.join(repoDir(), 'snapshots', hub.commit(REPO, 'main'));
  expect(fs.statSync(`${blob}.incomplete`).size).toBe(cut);
  expect(fs.existsSync(blob)).toBe(false);
  expect(fs.existsSync(path.join(snap, 'model.safetensors'))).toBe(false);
  hub.requests.length = 0;
  expect(logitsOf(await RecurrentGemmaForCausalLM.fromPretrained(REPO))).toEqual(reference);
  const ranges = hub.requests.filter((r) => r.url.endsWith('/model.safetensors') && r.range !== 'bytes=0-0');
  expect(ranges.map((r) => r.range)).toEqual([`bytes=${cut}-${WEIGHTS.length - 1}`]);
  expect(fs.existsSync(`${blob}.incomplete`)).toBe(false);
  expect(fs.readFileSync(blob).equals(WEIGHTS)).toBe(true);
});

test('an LFS file whose sha256 is not the listed one is removed, never linked; the next load is whole', async () => {
  hub.corruptNext('model.safetensors');
  await expect(RecurrentGemmaForCausalLM.fromPretrained(REPO)).rejects.toThrow(
    new RegExp(
      `^test-org/tiny-a: model.safetensors has sha256 [0-9a-f]{64}, the Hub lists ${sha256(WEIGHTS)} \\(removed; run again\\)$`,
    ),
  );
  const blob = path.join(repoDir(), 'blobs', sha256(WEIGHTS));
  expect(fs.existsSync(blob)).toBe(false);
  expect(fs.existsSync(`${blob}.incomplete`)).toBe(false);
  expect(logitsOf(await RecurrentGemmaForCausalLM.fromPretrained(REPO))).toEqual(reference);
});

test('a gated repo: one line that says to set HF_TOKEN; the token (option or HF_TOKEN) opens it', async () => {
  const err = (await RecurrentGemmaForCausalLM.fromPretrained('test-org/gated').catch((e: Error) => e)) as Error;
  expect(err).toBeInstanceOf(HubError);
  expect(err.message).not.toContain('\n');
  expect(err.message).toMatch(
    /^test-org\/gated: access denied \(HTTP 401\).*accept its licence at .*test-org\/gated and set HF_TOKEN/,
  );
  expect(logitsOf(await RecurrentGemmaForCausalLM.fromPretrained('test-org/gated', {token: 'hf_secret'}))).toEqual(
    reference,
  );
  const other = fs.mkdtempSync(path.join(tmp, 'home-'));
  process.env.HF_HOME = other;
  process.env.HF_TOKEN = 'hf_secret';
  expect(logitsOf(await RecurrentGemmaForCausalLM.fromPretrained('test-org/gated'))).toEqual(reference);
  expect(hub.requests.filter((r) => r.auth === 'Bearer hf_secret').length).toBeGreaterThan(0);
  process.env.HF_TOKEN = 'hf_wrong';
  await expect(GemmaTokenizer.load('test-org/gated', {cacheDir: path.join(tmp, 'empty')})).rejects.toThrow(
    /access denied \(HTTP 401\) with the token given/,
  );
});

test('an unknown repo or revision is one line', async () => {
  await expect(RecurrentGemmaForCausalLM.fromPretrained('test-org/nothing')).rejects.toThrow(
    /^test-org\/nothing: no such model on http:\/\/127\.0\.0\.1:\d+ and no such local directory \(a private repo needs HF_TOKEN\)$/,
  );
  await expect(RecurrentGemmaForCausalLM.fromPretrained(REPO, {revision: 'nope'})).rejects.toThrow(
    /^test-org\/tiny-a: revision "nope" not found on http/,
  );
  // A path-like name that is neither a directory nor a Hub id stays a path error.
  await expect(RecurrentGemmaForCausalLM.fromPretrained('./test-org/nothing')).rejects.toThrow(/no such directory/);
});

test('revision pinning: a branch, and a commit hash (which a later load takes from the cache with no request)', async () => {
  expect(logitsOf(await RecurrentGemmaForCausalLM.fromPretrained(REPO, {revision: 'v0'}))).toEqual(v0Reference);
  expect(fs.readFileSync(path.join(repoDir(), 'refs', 'v0'), 'utf8')).toBe(hub.commit(REPO, 'v0'));
  const main = hub.commit(REPO, 'main');
  expect(logitsOf(await RecurrentGemmaForCausalLM.fromPretrained(REPO, {revision: main}))).toEqual(reference);
  expect(fs.existsSync(path.join(repoDir(), 'refs', main))).toBe(false);
  hub.requests.length = 0;
  expect(logitsOf(await RecurrentGemmaForCausalLM.fromPretrained(REPO, {revision: main}))).toEqual(reference);
  expect(hub.requests).toEqual([]);
  // The blobs are shared: v0 and main have one config.json blob.
  expect(fs.readdirSync(path.join(repoDir(), 'blobs')).length).toBe(3);
});

test('a Hub adapter brings its Hub base; {adapter: id} attaches one to any base', async () => {
  expect(logitsOf(await RecurrentGemmaForCausalLM.fromPretrained('test-org/lora'))).toEqual(adapterReference);
  expect(logitsOf(await RecurrentGemmaForCausalLM.fromPretrained(TINY_A, {adapter: 'test-org/lora'}))).toEqual(
    adapterReference,
  );
});

test('GemmaTokenizer.load(id) fetches only the tokenizer files', async () => {
  const tok = await GemmaTokenizer.load(REPO);
  const local = await GemmaTokenizer.load(path.join(FIX, 'tokenizer/tiny.model'));
  expect(tok.encode('The history of the world, 1066!')).toEqual(local.encode('The history of the world, 1066!'));
  const snap = await hubSnapshot(REPO, {tokenizer: true}, {offline: true});
  expect(fs.readdirSync(snap)).toEqual(['tokenizer.model']);
  // HF_HUB_CACHE names the cache folder itself (over HF_HOME/hub).
  process.env.HF_HUB_CACHE = path.join(home, 'elsewhere');
  await GemmaTokenizer.load(REPO);
  const commit = hub.commit(REPO, 'main');
  expect(fs.readdirSync(path.join(home, 'elsewhere/models--test-org--tiny-a/snapshots', commit))).toEqual([
    'tokenizer.model',
  ]);
});

test('a local directory named like a Hub id wins, with no request', async () => {
  const cwd = process.cwd();
  const local = path.join(tmp, 'cwd');
  fs.mkdirSync(path.join(local, 'test-org/tiny-a'), {recursive: true});
  for (const f of ['config.json', 'model.safetensors']) fs.copyFileSync(path.join(v0Dir, f), path.join(local, REPO, f));
  process.chdir(local);
  try {
    expect(logitsOf(await RecurrentGemmaForCausalLM.fromPretrained(REPO))).toEqual(v0Reference);
  } finally {
    process.chdir(cwd);
  }
  expect(hub.requests).toEqual([]);
});
