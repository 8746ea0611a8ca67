/**
 * `griffin convert` to compact tfjs exports (converters/tfjs_export.ts) and loading them back
 * (converters/tfjs_weights.ts through the file and URL loaders):
 *   - every dtype of tiny-a: the shards take the bytes the format says (counted here from the HF
 *     header), reloading with dtype 'auto' keeps the encoding, and the packed words, scales and
 *     zero points are the very ones fromPretrained(hfDir, {dtype}) packs, so the logits are equal;
 *   - an int4 export asked for float32 holds the unpacked values; a bfloat16 export asked for int4
 *     packs what an HF checkpoint of those values packs; float32 and float16 exports load with
 *     plain tf.loadLayersModel;
 *   - bad exports (group size, scales, shard length, encoding) are one-line refusals on both
 *     loaders with nothing left allocated; convert refuses its input directory (also through a
 *     link), a group size the widths do not take, a directory of other files; a failing convert
 *     leaves nothing behind and an earlier export intact;
 *   - memory: the reader is instrumented, and convert never holds more than about one tensor.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as v8 from 'v8';
import * as vm from 'vm';
import {listCheckpoint} from '../../converters/safetensors';
import {exportTfjs, openTensorSource, type TensorSource} from '../../converters/tfjs_export';
import {CompactParameter} from '../../layers/compact';
import {RecurrentGemmaConfig} from '../../src/config';
import {CausalLMCore} from '../../src/core/model';
import {type PretrainedOptions, RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {runGriffin} from '../cli_run';
import {maxAbsDiff, relError} from '../helpers';

const TINY_A = path.join(__dirname, '../fixtures/tiny-a');
const IDS = [
  [2, 342, 48, 451, 411, 374, 280, 400, 354, 313],
  [2, 151, 472, 279, 89, 208, 152, 327, 8, 504],
];
let tmp: string;

beforeAll(async () => {
  await tf.setBackend('cpu');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'griffin-convert-'));
});
afterAll(() => fs.rmSync(tmp, {recursive: true, force: true}));

function logits(m: RecurrentGemmaForCausalLM): Float32Array {
  const out = m.forward({inputIds: IDS}).logits;
  const v = out.dataSync() as Float32Array;
  out.dispose();
  return v;
}

type Case = {dtype: 'float32' | 'float16' | 'bfloat16' | 'int8' | 'int4'; groupSize?: number; zeroPoints?: boolean};
const CASES: Case[] = [
  {dtype: 'float32'},
  {dtype: 'float16'},
  {dtype: 'bfloat16'},
  {dtype: 'int8'},
  {dtype: 'int4', groupSize: 32},
  {dtype: 'int4', groupSize: 32, zeroPoints: true},
];
const label = (c: Case) => `${c.dtype}${c.groupSize ? `-g${c.groupSize}` : ''}${c.zeroPoints ? '-zp' : ''}`;

/**
 * The bytes an export's shards must take, from the HF header and the format's definition: a
 * matrix (a rank-2 `.weight`) at its bits per value plus 2 bytes per float16 scale (one per row
 * for int8, per group for int4) and 1 per int4 zero point; everything else 4 bytes a value.
 */
function expectedShardBytes(c: Case): number {
  const bits = {float32: 32, float16: 16, bfloat16: 16, int8: 8, int4: 4}[c.dtype];
  let n = 0;
  for (const m of listCheckpoint(TINY_A).values()) {
    if (m.name === 'lm_head.weight') continue; // tied in tiny-a
    const values = m.shape.reduce((a, b) => a * b, 1);
    if (!(m.shape.length === 2 && m.name.endsWith('.weight'))) {
      n += 4 * values;
      continue;
    }
    const [R, C] = m.shape;
    n += (values * bits) / 8;
    if (c.dtype === 'int8') n += 2 * R;
    if (c.dtype === 'int4') n += (R * C * (c.zeroPoints ? 3 : 2)) / c.groupSize!;
  }
  return n;
}

const shardBytes = (dir: string) =>
  fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.bin'))
    .reduce((s, f) => s + fs.statSync(path.join(dir, f)).size, 0);

/** Every compact parameter's packed tensors, by name. */
function packedOf(
  m: RecurrentGemmaForCausalLM,
): Map<string, {data: Int32Array; scales: Float32Array; zeros: Float32Array}> {
  const out = new Map();
  for (const [name, v] of m.namedParameters()) {
    if (!(v instanceof CompactParameter)) continue;
    const p = v.packed;
    out.set(name, {data: p.data.dataSync(), scales: p.scales.dataSync(), zeros: p.zeros.dataSync()});
  }
  return out;
}

const made = new Set<string>();
async function exported(c: Case): Promise<string> {
  const dir = path.join(tmp, 'exports', label(c));
  if (!made.has(dir)) {
    await exportTfjs(openTensorSource(TINY_A), dir, {...c, shardBytes: 64 * 1024});
    made.add(dir);
  }
  return dir;
}

describe.each(CASES)('convert tiny-a to %o', (c) => {
  test('the shards take the bytes the format says; reloaded, the same packed words and logits as fromPretrained(hfDir, {dtype})', async () => {
    const dir = await exported(c);
    expect(shardBytes(dir)).toBe(expectedShardBytes(c));
    const opts: PretrainedOptions = {dtype: c.dtype, groupSize: c.groupSize, zeroPoints: c.zeroPoints};
    const ref = await RecurrentGemmaForCausalLM.fromPretrained(TINY_A, opts);
    const back = await RecurrentGemmaForCausalLM.fromPretrained(dir, {dtype: 'auto'});
    try {
      expect(back.weightDtype).toBe(c.dtype);
      expect(back.compact).toEqual(ref.compact);
      expect(back.weightBytes()).toBe(ref.weightBytes());
      const want = packedOf(ref),
        got = packedOf(back);
      expect([...got.keys()]).toEqual([...want.keys()]);
      // The embedding, 6 linears in each of 3 recurrent layers, 7 in the attention layer.
      expect(got.size).toBe(c.dtype === 'float32' ? 0 : 1 + 3 * 6 + 7);
      for (const [name, w] of want) expect(got.get(name)).toEqual(w);
      const err = maxAbsDiff(logits(back), logits(ref));
      expect(err).toBeLessThanOrEqual(1e-6);
    } finally {
      ref.dispose();
      back.dispose();
    }
  });
});

test('an int4 export asked for float32 holds the unpacked int4 values; a bfloat16 export asked for int4 packs what its values pack', async () => {
  const int4 = {dtype: 'int4', groupSize: 32} as const;
  const hfInt4 = await RecurrentGemmaForCausalLM.fromPretrained(TINY_A, int4);
  const asF32 = await RecurrentGemmaForCausalLM.fromPretrained(await exported(int4), {dtype: 'float32'});
  expect(asF32.weightDtype).toBe('float32');
  const f32Params = asF32.namedParameters();
  let matrices = 0;
  for (const [name, v] of hfInt4.namedParameters()) {
    const unpacked = v.read(); // a new tensor for a compact parameter, the variable itself otherwise
    expect(f32Params.get(name)!.read().dataSync()).toEqual(unpacked.dataSync());
    if (v instanceof CompactParameter) {
      matrices++;
      unpacked.dispose();
    }
  }
  expect(matrices).toBe(26);
  // The same values, computed by float32 kernels: within float32 rounding of the compact ones.
  expect(relError(logits(asF32), logits(hfInt4))).toBeLessThan(1e-5);
  hfInt4.dispose();
  asF32.dispose();

  // bfloat16 values (exact in float32), saved as an HF checkpoint, packed as int4 from there.
  const bfDir = await exported({dtype: 'bfloat16'});
  const bfValues = await RecurrentGemmaForCausalLM.fromPretrained(bfDir, {dtype: 'float32'});
  const hfOfBf = path.join(tmp, 'hf-of-bf16');
  await bfValues.save(hfOfBf, {format: 'hf'});
  bfValues.dispose();
  const want = await RecurrentGemmaForCausalLM.fromPretrained(hfOfBf, int4);
  const got = await RecurrentGemmaForCausalLM.fromPretrained(bfDir, int4);
  expect(got.compact).toEqual({dtype: 'int4', groupSize: 32, zeroPoints: false});
  expect(packedOf(got)).toEqual(packedOf(want));
  want.dispose();
  got.dispose();
});

test.each(['float32', 'float16'] as const)(
  'a %s export loads with plain tf.loadLayersModel and predicts the same',
  async (dtype) => {
    const dir = await exported({dtype});
    const json = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8'));
    const data = Buffer.concat(json.weightsManifest[0].paths.map((p: string) => fs.readFileSync(path.join(dir, p))));
    const plain = await tf.loadLayersModel(
      tf.io.fromMemory({
        modelTopology: json.modelTopology,
        weightSpecs: json.weightsManifest[0].weights,
        weightData: data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength),
      }),
    );
    const x = tf.tensor2d(IDS, undefined, 'int32');
    const y = plain.predict(x) as tf.Tensor;
    const ref = await RecurrentGemmaForCausalLM.fromPretrained(dir, {dtype: 'float32'});
    expect(maxAbsDiff(y.dataSync(), logits(ref))).toBeLessThan(1e-5);
    tf.dispose([x, y]);
    plain.dispose();
    ref.dispose();
  },
);

describe('bad compact exports: one line, on the file and the URL loader, nothing left allocated', () => {
  let server: {url: string; close(): Promise<void>};
  const EMBED = 'model.embed_tokens/weight';

  /** A copy of the int4 export with its model.json (and shards) changed by `edit`. */
  async function variant(name: string, edit: (json: any, dir: string) => void): Promise<string> {
    const src = await exported({dtype: 'int4', groupSize: 32});
    const dir = path.join(tmp, 'bad', name);
    fs.cpSync(src, dir, {recursive: true});
    const json = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8'));
    edit(json, dir);
    fs.writeFileSync(path.join(dir, 'model.json'), JSON.stringify(json));
    return name;
  }
  const entry = (json: any, name: string) => json.weightsManifest[0].weights.find((w: any) => w.name === name);
  const compact = (json: any) => json.userDefinedMetadata.griffin.compact;

  const CASES_BAD: [string, (json: any, dir: string) => void, RegExp][] = [
    [
      'group-size',
      (j) => {
        compact(j)[EMBED].groupSize = 128;
      },
      /model\.json: compact weight "model\.embed_tokens\/weight": group size 128 does not divide the width 64/,
    ],
    [
      'no-scales',
      (j) => {
        delete compact(j)[EMBED].scales;
      },
      /model\.json: compact weight "model\.embed_tokens\/weight" names no scales entry/,
    ],
    [
      'scales-gone',
      (j) => {
        compact(j)[EMBED].scales = 'nowhere/scales';
      },
      /compact weight "model\.embed_tokens\/weight": its scales "nowhere\/scales" are missing/,
    ],
    [
      'scales-shape',
      (j) => {
        entry(j, `${EMBED}/scales`).shape = [2, 512];
      },
      /its scales "model\.embed_tokens\/weight\/scales" are float32 \[2,512\], expected float32 \[512,2\]/,
    ],
    [
      'words-shape',
      (j) => {
        entry(j, EMBED).shape = [256, 16];
      },
      /compact weight "model\.embed_tokens\/weight" is stored as int32 \[256,16\], its int4 words need int32 \[512,8\]/,
    ],
    [
      'short-shard',
      (_, dir) => {
        const shard = path.join(dir, 'group1-shard2of2.bin');
        fs.truncateSync(shard, fs.statSync(shard).size - 3);
      },
      /the shards hold \d+ bytes, the manifest needs \d+ \(truncated or corrupt\)/,
    ],
    [
      'long-shard',
      (_, dir) => fs.appendFileSync(path.join(dir, 'group1-shard1of2.bin'), Buffer.alloc(8)),
      /(the shards hold \d+ bytes, the manifest needs \d+|the shards hold more bytes than the manifest needs)/,
    ],
    [
      'unknown-compact',
      (j) => {
        compact(j)[EMBED].dtype = 'int3';
      },
      /compact weight "model\.embed_tokens\/weight" has an unknown encoding "int3" \(expected one of bfloat16, float16, int8, int4\)/,
    ],
    [
      'unknown-standard',
      (j) => {
        entry(j, 'model.final_norm/weight').quantization = {dtype: 'uint4'};
      },
      /weight "model\.final_norm\/weight" has an unknown encoding \(dtype "float32", quantization \{"dtype":"uint4"\}\)/,
    ],
    [
      'words-without-entry',
      (j) => {
        delete compact(j)[EMBED];
      },
      /weight "model\.embed_tokens\/weight" is int32 words without a griffin\.compact entry/,
    ],
  ];

  beforeAll(async () => {
    for (const [name, edit] of CASES_BAD) await variant(name, edit);
    const {startServer} = require('../../scripts/serve.js');
    server = await startServer({root: path.join(tmp, 'bad')});
  });
  afterAll(async () => {
    await server?.close();
  });

  test('the int4 export used here has two shards (so a shard can be short)', async () => {
    const dir = await exported({dtype: 'int4', groupSize: 32});
    expect(fs.readdirSync(dir).filter((f) => f.endsWith('.bin'))).toEqual([
      'group1-shard1of2.bin',
      'group1-shard2of2.bin',
    ]);
  });

  test('the intact export over http (fromPretrained(url)): the same packed words as from its directory', async () => {
    const dir = await exported({dtype: 'int4', groupSize: 32});
    fs.cpSync(dir, path.join(tmp, 'bad', 'intact'), {recursive: true});
    const viaUrl = await RecurrentGemmaForCausalLM.fromPretrained(`${server.url}/intact/`, {dtype: 'auto'});
    const viaDir = await RecurrentGemmaForCausalLM.fromPretrained(dir, {dtype: 'auto'});
    expect(viaUrl.compact).toEqual({dtype: 'int4', groupSize: 32, zeroPoints: false});
    expect(packedOf(viaUrl)).toEqual(packedOf(viaDir));
    expect(maxAbsDiff(logits(viaUrl), logits(viaDir))).toBe(0);
    viaUrl.dispose();
    viaDir.dispose();
  });

  test.each(CASES_BAD.map(([name, , re]) => [name, re] as const))('%s', async (name, re) => {
    for (const source of [path.join(tmp, 'bad', name), `${server.url}/${name}/`]) {
      for (const dtype of ['auto', 'float32'] as const) {
        const before = tf.memory().numTensors;
        let message = '';
        try {
          const m = await RecurrentGemmaForCausalLM.fromPretrained(source, {dtype});
          m.dispose();
        } catch (e) {
          message = (e as Error).message;
        }
        expect(message).toMatch(re);
        expect(message).not.toMatch(/\n/);
        expect(tf.memory().numTensors).toBe(before);
      }
    }
  });
});

describe('griffin convert: refusals in one line, nothing half-written', () => {
  const run = (args: string[]) => runGriffin(['convert', ...args]);
  const leftovers = (dir: string) => fs.readdirSync(dir).filter((f) => /\.atomic-|\.(tmp|old)-/.test(f));

  test('usage errors exit 2 in one line', async () => {
    const out = path.join(tmp, 'cli', 'never');
    const link = path.join(tmp, 'cli-link');
    fs.mkdirSync(path.join(tmp, 'cli'), {recursive: true});
    fs.symlinkSync(TINY_A, link);
    for (const [args, re] of [
      [['--dtype', 'int3'], /--dtype must be one of float32, float16, bfloat16, int8, int4, uint8, got int3/],
      [['--dtype', 'int8', '--group-size', '32'], /--group-size is for --dtype int4/],
      [['--dtype', 'int4', '--group-size', '48'], /--group-size must be one of 32, 64, 128/],
      [['--dtype', 'int8', '--zero-points'], /--zero-points is for --dtype int4/],
      [['--format', 'hf', '--dtype', 'int4'], /--format hf is written in float32/],
    ] as [string[], RegExp][]) {
      const r = await run(['--from', TINY_A, '--out', out, ...args]);
      expect([r.code, r.stderr.trim().split('\n').length]).toEqual([2, 1]);
      expect(r.stderr).toMatch(re);
    }
    for (const onto of [TINY_A, link, `${TINY_A}/`]) {
      const r = await run(['--from', TINY_A, '--out', onto, '--dtype', 'int8']);
      expect(r.code).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(/is the --from directory \(symlinks resolved\)/);
    }
    expect(fs.existsSync(out)).toBe(false);
    expect(leftovers(path.join(tmp, 'cli'))).toEqual([]);
  });

  test('a group size the widths do not take, and a directory of other files: exit 1, one line, nothing written', async () => {
    const out = path.join(tmp, 'cli', 'g64');
    let r = await run(['--from', TINY_A, '--out', out, '--no-tokenizer', '--dtype', 'int4']);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([
      `griffin: ${TINY_A}: tensor "model.layers.0/mlp_block.down_proj.weight": group size 64 does not divide the width 96`,
    ]);
    expect(fs.existsSync(out)).toBe(false);
    const other = path.join(tmp, 'cli', 'other');
    fs.mkdirSync(other);
    fs.writeFileSync(path.join(other, 'notes.txt'), 'mine');
    r = await run(['--from', TINY_A, '--out', other, '--no-tokenizer', '--dtype', 'int8']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/other: exists and holds files but no checkpoint; give a new or empty directory/);
    expect(fs.readdirSync(other)).toEqual(['notes.txt']);
    expect(leftovers(path.join(tmp, 'cli'))).toEqual([]);
  });

  test('a convert that fails midway leaves no directory, and an earlier export intact; a second one replaces it whole', async () => {
    const out = path.join(tmp, 'atomic', 'web');
    fs.mkdirSync(path.dirname(out), {recursive: true});
    const failing = (after: number): TensorSource => {
      const src = openTensorSource(TINY_A);
      return {
        ...src,
        async *tensors() {
          let n = 0;
          for await (const t of src.tensors()) {
            if (n++ === after) throw new Error('disk on fire');
            yield t;
          }
        },
      };
    };
    await expect(exportTfjs(failing(40), out, {dtype: 'int8'})).rejects.toThrow('disk on fire');
    expect(fs.readdirSync(path.dirname(out))).toEqual([]);

    const r = await run(['--from', TINY_A, '--out', out, '--no-tokenizer', '--dtype', 'int8']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/converting \[#+\] 654\.1\/654\.1 kB 78\/78 tensors/);
    expect(r.stderr).toMatch(/wrote .*web \(tfjs, int8, weights 0\.2 MB\)/);
    const before = fs.readFileSync(path.join(out, 'model.json'), 'utf8');
    await expect(exportTfjs(failing(10), out, {dtype: 'float16'})).rejects.toThrow('disk on fire');
    expect(fs.readFileSync(path.join(out, 'model.json'), 'utf8')).toBe(before);
    expect(fs.readdirSync(path.dirname(out))).toEqual(['web']);

    // The old model's files go (a stale shard, an old tokenizer); files that are no model's stay.
    fs.writeFileSync(path.join(out, 'group1-shard2of2.bin'), 'x');
    fs.writeFileSync(path.join(out, 'tokenizer.model'), 'old');
    fs.writeFileSync(path.join(out, 'notes.txt'), 'mine');
    await exportTfjs(openTensorSource(TINY_A), out, {dtype: 'float16'});
    expect(fs.readdirSync(out).sort()).toEqual(['group1-shard1of1.bin', 'model.json', 'notes.txt']);
    expect(fs.readFileSync(path.join(out, 'notes.txt'), 'utf8')).toBe('mine');
    expect(fs.readdirSync(path.dirname(out))).toEqual(['web']);
  });

  test('a tfjs export converts again (int8 -> float32): the int8 values, unpacked', async () => {
    const int8 = await exported({dtype: 'int8'});
    const out = path.join(tmp, 'again');
    await exportTfjs(openTensorSource(int8), out, {dtype: 'float32'});
    const a = await RecurrentGemmaForCausalLM.fromPretrained(out, {dtype: 'auto'});
    const b = await RecurrentGemmaForCausalLM.fromPretrained(int8, {dtype: 'float32'});
    expect(a.weightDtype).toBe('float32');
    expect(maxAbsDiff(logits(a), logits(b))).toBe(0);
    a.dispose();
    b.dispose();
  });
});

describe('memory: convert holds about one tensor at a time', () => {
  test('an instrumented reader: no more than the largest tensor and a little more is alive at any read; no tensor is used after the next is read', async () => {
    // A checkpoint of many tensors, none large: 12 layers of 128-wide matrices.
    const config = new RecurrentGemmaConfig({
      num_hidden_layers: 12,
      vocab_size: 512,
      hidden_size: 128,
      intermediate_size: 768,
      num_attention_heads: 4,
      num_key_value_heads: 1,
      lru_width: 128,
    });
    const hf = path.join(tmp, 'many');
    const model = new CausalLMCore(config);
    const {savePretrained} = await import('../../converters/index');
    await savePretrained(model, hf, {format: 'hf'});
    model.dispose();
    const metas = [...listCheckpoint(hf).values()];
    const total = metas.reduce((n, m) => n + (m.end - m.begin), 0);
    const largest = Math.max(...metas.map((m) => m.end - m.begin));
    expect(total).toBeGreaterThan(30 * largest);

    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    /**
     * The source, instrumented: at each matrix read (after a full GC; the vectors are too small to
     * matter) the ArrayBuffer bytes alive; the previous tensor poisoned.
     */
    const instrumented = (src: TensorSource, record: number[] | null): TensorSource => ({
      ...src,
      async *tensors() {
        let prev: Float32Array | null = null;
        for await (const t of src.tensors()) {
          prev?.fill(Number.NaN);
          if (record && t.shape.length === 2) {
            gc();
            record.push(process.memoryUsage().arrayBuffers);
          }
          prev = t.data;
          yield t;
        }
      },
    });
    const plain = path.join(tmp, 'many-plain');
    await exportTfjs(openTensorSource(hf), plain, {dtype: 'int8'});

    gc();
    const base = process.memoryUsage().arrayBuffers;
    const alive: number[] = [];
    const watched = path.join(tmp, 'many-watched');
    await exportTfjs(instrumented(openTensorSource(hf), alive), watched, {dtype: 'int8'});
    expect(alive).toHaveLength(metas.filter((m) => m.shape.length === 2).length);
    const peak = Math.max(...alive) - base;
    console.log(
      `convert int8: ${metas.length} tensors, ${(total / 1e6).toFixed(2)} MB, largest ${(largest / 1e3).toFixed(0)} kB; ` +
        `ArrayBuffers alive at a read at most ${(peak / 1e3).toFixed(0)} kB above the start`,
    );
    // The tensor just read plus the last one's packed bytes and slack; holding them all would be 30x more.
    expect(peak).toBeLessThan(3 * largest + 256 * 1024);
    // Poisoning each tensor once the next was read changed nothing: none was kept for later.
    const shards = (d: string) => fs.readdirSync(d).filter((f) => f.endsWith('.bin'));
    expect(shards(watched)).toEqual(shards(plain));
    for (const f of shards(plain))
      expect(fs.readFileSync(path.join(watched, f)).equals(fs.readFileSync(path.join(plain, f)))).toBe(true);
  }, 120_000);
});
