/**
 * Bad inputs refused in one line naming the file: invalid UTF-8 in JSONL (file:line), convert
 * without a tokenizer (unless --no-tokenizer), tfjs shard paths outside the model's directory,
 * overlapping or gapped safetensors byte ranges, a damaged tokenizer.model; --resume passing over
 * a damaged newest checkpoint; usage errors exit 2.
 */
import {spawnSync} from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {readHeader, readTensor} from '../../converters/safetensors';
import {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {GemmaTokenizer} from '../../src/tokenizer';
import {loadJsonl, parseJsonl} from '../../src/training/data';
import {Trainer} from '../../src/training/trainer';
import {writeRawSafetensors} from '../helpers';

jest.setTimeout(300_000);

const ROOT = path.join(__dirname, '../..');
const FIX = path.join(__dirname, '../fixtures');
const TINY_A = path.join(FIX, 'tiny-a');
const TOK = path.join(FIX, 'tokenizer/tiny.model');
const DATA = path.join(__dirname, '../training/fixtures/alice_train.jsonl');
let tmp: string;

const griffin = (args: string[]) =>
  spawnSync(path.join(ROOT, 'node_modules/.bin/tsx'), [path.join(ROOT, 'src/cli.ts'), ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 120_000,
  });
async function loadError(dir: string): Promise<string> {
  try {
    (await RecurrentGemmaForCausalLM.fromPretrained(dir)).dispose();
    return 'loaded';
  } catch (e) {
    return (e as Error).message;
  }
}

beforeAll(async () => {
  await tf.setBackend('cpu');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'griffin-inputs-'));
});
afterAll(() => fs.rmSync(tmp, {recursive: true, force: true}));

test('invalid UTF-8 in JSONL: refused naming file:line (a lenient read would train on U+FFFD)', () => {
  const file = path.join(tmp, 'bad.jsonl');
  const ok = Buffer.from('{"text": "fine"}\n{"text": "also fine"}\n');
  // 0xC3 0x28: a two-byte lead followed by an ASCII byte, invalid.
  fs.writeFileSync(
    file,
    Buffer.concat([ok, Buffer.from('{"text": "caf'), Buffer.from([0xc3, 0x28]), Buffer.from('"}\n')]),
  );
  expect(() => parseJsonl(file)).toThrow(
    `${file}:3: not valid UTF-8 (the file must be UTF-8 text; --skip-bad-lines leaves such lines out)`,
  );
  // Valid multi-byte text (and a BOM) still reads.
  fs.writeFileSync(file, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"text": "café – ü"}\n')]));
  expect(parseJsonl(file)).toEqual([{kind: 'text', text: 'café – ü', line: 1}]);
});

test('griffin convert from a directory without a tokenizer: exit 2 unless --no-tokenizer', () => {
  const out = path.join(tmp, 'conv');
  let r = griffin(['convert', '--from', TINY_A, '--out', out]);
  expect(r.stderr).toBe(
    `griffin: --from ${TINY_A} has no tokenizer.json or tokenizer.model: pass --no-tokenizer to convert the weights alone\n`,
  );
  expect(r.status).toBe(2);
  expect(fs.existsSync(out)).toBe(false);
  r = griffin(['convert', '--from', TINY_A, '--out', out, '--no-tokenizer']);
  expect(r.status).toBe(0);
  expect(fs.readdirSync(out).filter((f) => !f.endsWith('.bin'))).toEqual(['model.json']);
});

test('a tfjs manifest path leaving the model directory is refused before any shard is read', async () => {
  const dir = path.join(tmp, 'web');
  const m = await RecurrentGemmaForCausalLM.fromPretrained(TINY_A);
  await m.save(dir, {format: 'tfjs'});
  m.dispose();
  // The shard moved next door, where a '../' path would find it.
  const other = path.join(tmp, 'other');
  fs.mkdirSync(other);
  fs.renameSync(path.join(dir, 'group1-shard1of1.bin'), path.join(other, 'group1-shard1of1.bin'));
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8'));
  for (const p of ['../other/group1-shard1of1.bin', path.join(other, 'group1-shard1of1.bin'), 'sub/../../x.bin']) {
    json.weightsManifest[0].paths = [p];
    fs.writeFileSync(path.join(dir, 'model.json'), JSON.stringify(json));
    expect(await loadError(dir)).toBe(
      `${dir}/model.json: weight shard path ${JSON.stringify(p)} leaves the model's directory (only relative paths of plain names are read)`,
    );
  }
});

test('safetensors: overlapping and gapped data_offsets are refused naming the tensors', () => {
  const f = path.join(tmp, 'ranges.safetensors');
  const raw = (a: [number, number], b: [number, number], total: number) => {
    const header = Buffer.from(
      JSON.stringify({
        a: {dtype: 'F32', shape: [2], data_offsets: a},
        b: {dtype: 'F32', shape: [2], data_offsets: b},
      }),
    );
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(header.length));
    fs.writeFileSync(f, Buffer.concat([len, header, Buffer.alloc(total)]));
  };
  raw([0, 8], [4, 12], 12);
  expect(() => readHeader(f)).toThrow(`${f}: tensor "b": data_offsets [4, 12] overlap those of "a" (which end at 8)`);
  raw([0, 8], [0, 8], 8);
  expect(() => readHeader(f)).toThrow(/tensor "b": data_offsets \[0, 8\] overlap those of "a"/);
  raw([0, 8], [12, 20], 20);
  expect(() => readHeader(f)).toThrow(
    `${f}: tensor "b": data_offsets begin at 12, leaving bytes 8..12 unaccounted for (a gap)`,
  );
  raw([0, 8], [8, 16], 16);
  expect([...readHeader(f).tensors.keys()]).toEqual(['a', 'b']);
  writeRawSafetensors(f, [{name: 'x', dtype: 'F32', shape: [1], bytes: new Uint8Array(4)}]);
  expect([...readHeader(f).tensors.keys()]).toEqual(['x']);
});

test('a damaged tokenizer.model: the error names the file', async () => {
  const bad = path.join(tmp, 'tokenizer.model');
  fs.writeFileSync(bad, Buffer.from([0x0a, 0xff, 0xff, 0xff]));
  await expect(GemmaTokenizer.load(bad)).rejects.toThrow(bad);
});

test('--resume passes over a damaged newest checkpoint to the one before it, and says so', async () => {
  const tok = await GemmaTokenizer.load(TOK);
  const train = loadJsonl(DATA, tok, {seqLen: 32});
  const out = path.join(tmp, 'run');
  const opts = {
    train,
    seqLen: 32,
    batchSize: 2,
    steps: 3,
    lr: 1e-3,
    outDir: out,
    checkpointEvery: 1,
    keepCheckpoints: 3,
  };
  const m = await RecurrentGemmaForCausalLM.fromPretrained(TINY_A);
  const t = new Trainer(m, opts);
  await t.train();
  t.dispose();
  const ck = (s: number) => path.join(out, 'checkpoints', `step-00000${s}`);
  // Damage step 3 (a truncated optimizer state); step 2 is whole.
  const opt = path.join(ck(3), 'optimizer.safetensors');
  fs.truncateSync(opt, fs.statSync(opt).size - 100);
  const notes: string[] = [];
  const t2 = new Trainer(m, {...opts, log: (l) => notes.push(l)});
  expect(t2.resume()).toBe(ck(2));
  expect(t2.step).toBe(2);
  expect(notes).toHaveLength(1);
  expect(notes[0]).toMatch(
    new RegExp(`^${ck(3)} is damaged \\(.*optimizer\\.safetensors.*\\); resuming from the checkpoint before it$`),
  );
  // The weights are step 2's, as its checkpoint holds them (and differ from step 3's).
  const held = (s: number) => readHeader(path.join(ck(s), 'model.safetensors')).tensors;
  const name = 'model.layers.0.mlp_block.up_proj.weight';
  const now = m.namedParameters().get(name)!.read().dataSync();
  expect([...now]).toEqual([...readTensor(held(2).get(name)!)]);
  expect([...now]).not.toEqual([...readTensor(held(3).get(name)!)]);
  // Other settings are not damage: no fallback, the resume stops.
  const t4 = new Trainer(m, {...opts, batchSize: 4});
  expect(() => t4.resume()).toThrow(/written with batchSize 2, this run has 4/);
  [t2, t4].forEach((x) => x.dispose());
  m.dispose();
});

test('usage errors exit 2: a missing --data, an unknown --backend', () => {
  const model = path.join(tmp, 'model');
  fs.mkdirSync(model);
  for (const f of ['config.json', 'model.safetensors']) fs.copyFileSync(path.join(TINY_A, f), path.join(model, f));
  fs.copyFileSync(TOK, path.join(model, 'tokenizer.model'));
  const cases: [string[], RegExp][] = [
    [
      ['finetune', '--model', model, '--data', path.join(tmp, 'nope.jsonl'), '--out', path.join(tmp, 'o')],
      /^griffin: --data: file not found: .*nope\.jsonl\n$/,
    ],
    [
      ['generate', '--model', model, '--prompt', 'x', '--backend', 'tpu'],
      /unknown backend "tpu": --backend takes cpu, wasm, webgpu, tensorflow\.\n$/,
    ],
  ];
  for (const [args, message] of cases) {
    const r = griffin(args);
    expect(r.stderr).toMatch(message);
    expect(r.status).toBe(2);
  }
});
