/**
 * loadHF on broken and unusual checkpoints: every failure is one line naming the file or tensor
 * and leaves no tensor behind; tied / untied heads, BF16 / F16 and sharded checkpoints load.
 * Modified checkpoints are copies of test/fixtures/tiny-a written to temp directories.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  bf16ToF32,
  f16ToF32,
  f32ToBf16,
  listCheckpoint,
  readTensor,
  WriteTensor,
  writeCheckpoint,
} from '../../converters/safetensors';
import {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {f32ToF16, maxAbsDiff, relError, seededUniform, writeRawSafetensors} from '../helpers';

const DIR = path.join(__dirname, '../fixtures/tiny-a');
const CONFIG = JSON.parse(fs.readFileSync(path.join(DIR, 'config.json'), 'utf8'));
const EMBED = 'model.embed_tokens.weight';

let tmpRoot: string;
let tensors: WriteTensor[];
let reference: RecurrentGemmaForCausalLM;
let referenceLogits: Float32Array;
const IDS = [
  [2, 17, 301, 5, 5, 88, 511, 0, 9, 140, 33, 7],
  [2, 400, 1, 3, 250, 250, 12, 99, 64, 65, 66, 10],
];

beforeAll(async () => {
  await tf.setBackend('cpu');
  tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'griffin-hf-test-'));
  tensors = [...listCheckpoint(DIR).values()].map((m) => ({
    name: m.name,
    shape: m.shape,
    data: readTensor(m) as Float32Array,
  }));
  reference = await RecurrentGemmaForCausalLM.fromPretrained(DIR);
  referenceLogits = logits(reference);
});
afterAll(() => {
  reference?.dispose();
  fs.rmSync(tmpRoot, {recursive: true, force: true});
});

let dirCount = 0;
/** A fresh checkpoint dir: config.json (optionally changed) and the given tensors. */
function checkpoint(
  ts: WriteTensor[] | null,
  config: Record<string, unknown> = CONFIG,
  opts?: {maxShardBytes?: number},
): string {
  const dir = path.join(tmpRoot, `ckpt-${dirCount++}`);
  fs.mkdirSync(dir);
  if (ts != null) writeCheckpoint(dir, ts, {maxShardBytes: opts?.maxShardBytes, metadata: {format: 'pt'}});
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
  return dir;
}

function logits(model: RecurrentGemmaForCausalLM): Float32Array {
  const out = model.forward({inputIds: IDS});
  const l = out.logits.dataSync() as Float32Array;
  out.logits.dispose();
  return l;
}

/** RecurrentGemmaForCausalLM.fromPretrained(dir) must reject with a one-line Error containing every part, leaving no tensor. */
async function expectLoadError(dir: string, ...parts: string[]): Promise<string> {
  const before = tf.memory().numTensors;
  let err: unknown;
  try {
    const m = await RecurrentGemmaForCausalLM.fromPretrained(dir);
    m.dispose();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(Error);
  const msg = (err as Error).message;
  expect(msg).not.toMatch(/[\r\n]/);
  for (const p of parts) expect(msg).toContain(p);
  expect(tf.memory().numTensors).toBe(before);
  return msg;
}

describe('loadHF failures: one line naming the file or tensor, nothing left behind', () => {
  test('directory missing', async () => {
    const dir = path.join(tmpRoot, 'no-such-dir');
    await expectLoadError(dir, dir);
  });

  test('config.json missing', async () => {
    const dir = checkpoint(tensors);
    fs.rmSync(path.join(dir, 'config.json'));
    await expectLoadError(dir, path.join(dir, 'config.json'));
  });

  test('config.json not valid JSON', async () => {
    const dir = checkpoint(tensors);
    fs.writeFileSync(path.join(dir, 'config.json'), '{"hidden_size": 64,\n  oops');
    await expectLoadError(dir, path.join(dir, 'config.json'), 'JSON');
  });

  test('config.json with an invalid config names the field', async () => {
    const dir = checkpoint(tensors, {...CONFIG, num_attention_heads: 5});
    await expectLoadError(dir, path.join(dir, 'config.json'), 'num_attention_heads');
  });

  test('safetensors missing', async () => {
    const dir = checkpoint(null);
    await expectLoadError(dir, dir, 'model.safetensors');
  });

  test('a tensor with the wrong shape', async () => {
    const name = 'model.layers.1.temporal_block.linear_x.weight';
    const bad = tensors.map((t) => (t.name === name ? {name, shape: [32, 128], data: t.data} : t));
    const dir = checkpoint(bad);
    await expectLoadError(dir, path.join(dir, 'model.safetensors'), JSON.stringify(name), '[32,128]', '[64,64]');
  });

  test('a missing tensor', async () => {
    const name = 'model.layers.2.temporal_block.k_proj.weight';
    const dir = checkpoint(tensors.filter((t) => t.name !== name));
    await expectLoadError(dir, dir, JSON.stringify(name));
  });

  test('an unknown extra tensor', async () => {
    const name = 'model.layers.2.temporal_block.k_proj.bias'; // attention_bias is false
    const dir = checkpoint([...tensors, {name, shape: [16], data: new Float32Array(16)}]);
    await expectLoadError(dir, path.join(dir, 'model.safetensors'), JSON.stringify(name));
  });

  test('a tensor of an integer dtype', async () => {
    const name = 'model.final_norm.weight';
    const dir = checkpoint(
      tensors.map((t) => (t.name === name ? {name, shape: t.shape, data: new Int32Array(t.data.length)} : t)),
    );
    await expectLoadError(dir, JSON.stringify(name), 'I32');
  });

  test('a truncated safetensors file', async () => {
    const dir = checkpoint(tensors);
    const file = path.join(dir, 'model.safetensors');
    fs.truncateSync(file, fs.statSync(file).size - 1000);
    await expectLoadError(dir, file);
  });

  test('a header length past the end of the file', async () => {
    const dir = checkpoint(null);
    const file = path.join(dir, 'model.safetensors');
    const buf = Buffer.alloc(64, 0x20);
    buf.writeBigUInt64LE(1_000_000n, 0);
    fs.writeFileSync(file, buf);
    await expectLoadError(dir, file, '1000000');
  });

  test('a shard named by the index is missing', async () => {
    const dir = checkpoint(tensors, CONFIG, {maxShardBytes: 60_000});
    const shards = fs
      .readdirSync(dir)
      .filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f))
      .sort();
    expect(shards.length).toBeGreaterThan(1);
    fs.rmSync(path.join(dir, shards[1]));
    await expectLoadError(dir, shards[1]);
  });
});

describe('the LM head', () => {
  test('lm_head.weight present with tie_word_embeddings true is accepted (and the embedding used)', async () => {
    const embed = tensors.find((t) => t.name === EMBED)!;
    // A different matrix, so that using it by mistake would show.
    const head = Float32Array.from(embed.data, (v, i) => v + (i % 7) * 0.01);
    const dir = checkpoint([...tensors, {name: 'lm_head.weight', shape: embed.shape, data: head}]);
    const m = await RecurrentGemmaForCausalLM.fromPretrained(dir);
    expect(m.lmHead).toBeNull();
    expect(m.namedParameters().has('lm_head.weight')).toBe(false);
    expect(maxAbsDiff(logits(m), referenceLogits)).toBe(0);
    m.dispose();
  });

  test('tie_word_embeddings false loads lm_head.weight and uses it', async () => {
    const embed = tensors.find((t) => t.name === EMBED)!;
    const rng = seededUniform(5);
    const head = Float32Array.from(embed.data, () => (2 * rng() - 1) * 0.3);
    const dir = checkpoint([...tensors, {name: 'lm_head.weight', shape: embed.shape, data: head}], {
      ...CONFIG,
      tie_word_embeddings: false,
    });
    const m = await RecurrentGemmaForCausalLM.fromPretrained(dir);
    expect(m.lmHead).not.toBeNull();
    expect(maxAbsDiff(m.namedParameters().get('lm_head.weight')!.read().dataSync(), head)).toBe(0);
    const out = m.forward({inputIds: IDS, outputHiddenStates: true});
    const got = out.logits.dataSync();
    expect(relError(got, referenceLogits)).toBeGreaterThan(0.1);
    // logits = cap * tanh(final_norm(x) @ lm_head^T), in float64 from the last hidden state.
    const hs = out.hiddenStates!;
    const h = hs[hs.length - 1].dataSync();
    const d = CONFIG.hidden_size,
      V = CONFIG.vocab_size,
      cap = CONFIG.logits_soft_cap;
    const want = new Float64Array(got.length);
    for (let r = 0; r < h.length / d; r++) {
      for (let v = 0; v < V; v++) {
        let s = 0;
        for (let c = 0; c < d; c++) s += h[r * d + c] * head[v * d + c];
        want[r * V + v] = cap * Math.tanh(s / cap);
      }
    }
    expect(relError(got, want)).toBeLessThan(1e-5);
    tf.dispose([out.logits, ...hs]);
    m.dispose();
  });

  test('tie_word_embeddings false without lm_head.weight is a missing tensor', async () => {
    const dir = checkpoint(tensors, {...CONFIG, tie_word_embeddings: false});
    await expectLoadError(dir, '"lm_head.weight"');
  });

  test('tie_word_embeddings false with lm_head = embedding gives the tied logits', async () => {
    const embed = tensors.find((t) => t.name === EMBED)!;
    const dir = checkpoint([...tensors, {name: 'lm_head.weight', shape: embed.shape, data: embed.data}], {
      ...CONFIG,
      tie_word_embeddings: false,
    });
    const m = await RecurrentGemmaForCausalLM.fromPretrained(dir);
    expect(maxAbsDiff(logits(m), referenceLogits)).toBeLessThan(1e-6);
    m.dispose();
  });
});

describe('half-precision and sharded checkpoints', () => {
  test('the f32 -> f16 test helper gives the IEEE patterns', () => {
    const v = new Float32Array([1, -2, 65504, 1e6, 2 ** -24, 2 ** -25, 1 / 3, 0.1, 2 ** -14]);
    expect([...f32ToF16(v)]).toEqual([0x3c00, 0xc000, 0x7bff, 0x7c00, 0x0001, 0x0000, 0x3555, 0x2e66, 0x0400]);
  });

  /** Writes the fixture with every tensor converted to `dtype`; returns the dir and the rounded weights. */
  function halfCheckpoint(dtype: 'BF16' | 'F16') {
    const dir = checkpoint(null);
    const enc = dtype === 'BF16' ? f32ToBf16 : f32ToF16;
    const dec = dtype === 'BF16' ? bf16ToF32 : f16ToF32;
    const rounded: WriteTensor[] = [];
    const raw = tensors.map((t) => {
      const u16 = enc(t.data as Float32Array);
      rounded.push({name: t.name, shape: t.shape, data: dec(u16)});
      return {name: t.name, dtype, shape: t.shape, bytes: new Uint8Array(u16.buffer)};
    });
    writeRawSafetensors(path.join(dir, 'model.safetensors'), raw);
    return {dir, rounded};
  }

  // Measured on tiny-a: 2.4e-3 (BF16) and 3.0e-4 (F16); the bounds leave a factor of about 4.
  for (const [dtype, tol] of [
    ['BF16', 1e-2],
    ['F16', 1e-3],
  ] as const) {
    test(`${dtype} checkpoint: weights are the rounded values, logits within ${tol} relative error of f32`, async () => {
      const {dir, rounded} = halfCheckpoint(dtype);
      const meta = listCheckpoint(dir);
      expect([...meta.values()].every((m) => m.dtype === dtype)).toBe(true);
      const m = await RecurrentGemmaForCausalLM.fromPretrained(dir);
      const params = m.namedParameters();
      for (const t of rounded) {
        expect({name: t.name, d: maxAbsDiff(params.get(t.name)!.read().dataSync(), t.data)}).toEqual({
          name: t.name,
          d: 0,
        });
      }
      const got = logits(m);
      const err = relError(got, referenceLogits);
      console.log(`${dtype} checkpoint: logits relative error ${err.toExponential(2)} against f32`);
      expect(err).toBeLessThan(tol);
      expect(err).toBeGreaterThan(0); // the rounding really happened
      // Same as an f32 checkpoint holding the rounded values.
      const m32 = await RecurrentGemmaForCausalLM.fromPretrained(checkpoint(rounded));
      expect(maxAbsDiff(logits(m32), got)).toBe(0);
      m.dispose();
      m32.dispose();
    });
  }

  test('a sharded checkpoint loads and gives identical logits', async () => {
    const dir = checkpoint(tensors, CONFIG, {maxShardBytes: 60_000});
    const files = fs.readdirSync(dir);
    expect(files).toContain('model.safetensors.index.json');
    expect(files).not.toContain('model.safetensors');
    const shards = files.filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f));
    expect(shards.length).toBeGreaterThan(2);
    const progress: number[] = [];
    const m = await RecurrentGemmaForCausalLM.fromPretrained(dir, {onProgress: (p) => progress.push(p.loaded)});
    expect(progress.length).toBe(tensors.length);
    expect(maxAbsDiff(logits(m), referenceLogits)).toBe(0);
    m.dispose();
  });
});

describe('token ids', () => {
  for (const bad of [512, -1, 100000]) {
    test(`id ${bad} outside [0, vocab) throws a RangeError naming it`, () => {
      const before = tf.memory().numTensors;
      let err: unknown;
      try {
        reference.forward({inputIds: [[2, 5, bad, 7]]});
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(RangeError);
      expect((err as Error).message).toContain(String(bad));
      expect((err as Error).message).toContain('512');
      expect(tf.memory().numTensors).toBe(before);
    });
  }

  test('the ids 0 and vocab - 1 are accepted', () => {
    const out = reference.forward({inputIds: [[0, 511]]});
    expect(out.logits.shape).toEqual([1, 2, 512]);
    out.logits.dispose();
  });
});
