/** safetensors reader/writer: round trips, hand-built half-precision files, shards, the fixture, and every error. */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  bf16ToF32,
  CheckpointError,
  f16ToF32,
  f32ToBf16,
  iterateCheckpoint,
  listCheckpoint,
  readHeader,
  readTensor,
  TensorMeta,
  WriteTensor,
  writeCheckpoint,
  writeSafetensors,
} from '../../converters/safetensors';

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'griffin-safetensors-'));
});
afterAll(() => {
  fs.rmSync(tmp, {recursive: true, force: true});
});

let counter = 0;
function freshDir(): string {
  const d = path.join(tmp, `d${counter++}`);
  fs.mkdirSync(d);
  return d;
}

/** Builds a safetensors file byte by byte, independently of the module under test. */
function rawFile(file: string, header: unknown, data: ArrayLike<number> = [], headerLen?: bigint): string {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(headerLen ?? BigInt(json.length));
  fs.writeFileSync(file, Buffer.concat([len, json, Buffer.from(Uint8Array.from(data))]));
  return file;
}

function u16le(values: number[]): number[] {
  return values.flatMap((v) => [v & 0xff, v >>> 8]);
}

function expectCheckpointError(fn: () => unknown, file: string, pattern?: RegExp): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(CheckpointError);
  const msg = (err as Error).message;
  expect(msg).toContain(path.basename(file));
  expect(msg).not.toMatch(/\n/);
  if (pattern) expect(msg).toMatch(pattern);
}

async function collect(dir: string, only?: Set<string>) {
  const out = [];
  for await (const t of iterateCheckpoint(dir, only)) out.push(t);
  return out;
}

/** Bit-exact comparison, so NaN, -0 and subnormals count. */
function expectBits(actual: Float32Array | Int32Array, expected: ArrayLike<number>): void {
  expect(actual.length).toBe(expected.length);
  let firstDiff = '';
  for (let i = 0; i < expected.length && !firstDiff; i++) {
    if (!Object.is(actual[i], expected[i])) firstDiff = `${actual[i]} vs ${expected[i]} at ${i}`;
  }
  expect(firstDiff).toBe('');
}

function ramp(n: number, scale: number, offset = 0): Float32Array {
  return Float32Array.from({length: n}, (_, i) => (i - offset) * scale);
}

describe('F32 / I32 round trip', () => {
  test('values, shapes, metadata and header layout survive exactly', () => {
    const file = path.join(freshDir(), 'rt.safetensors');
    const special = new Float32Array([0, -0, 1e-45, -3.4028234663852886e38, Infinity, -Infinity, NaN, Math.PI, 1 / 3]);
    const tensors: WriteTensor[] = [
      {name: 'a.weight', shape: [3, 3], data: special},
      {name: 'scalar', shape: [], data: new Float32Array([42.5])},
      {name: 'empty', shape: [0, 4], data: new Float32Array(0)},
      {name: 'ids', shape: [2, 2], data: new Int32Array([-2147483648, -1, 0, 2147483647])},
      // A view into a larger buffer: only its own bytes may be written.
      {name: 'view', shape: [3], data: new Float32Array(new Float32Array([9, 1, 2, 3, 9]).buffer, 4, 3)},
    ];
    writeSafetensors(file, tensors, {format: 'pt', note: 'ünïcode'});
    expect(fs.existsSync(`${file}.tmp`)).toBe(false);

    const bytes = fs.readFileSync(file);
    const n = Number(bytes.readBigUInt64LE(0));
    expect(n % 8).toBe(0);
    const headerText = bytes.subarray(8, 8 + n).toString('utf8');
    expect(headerText).toMatch(/^\{.*\} *$/);
    expect(bytes.length).toBe(8 + n + (9 + 1 + 0 + 4 + 3) * 4);

    const {tensors: metas, metadata} = readHeader(file);
    expect(metadata).toEqual({format: 'pt', note: 'ünïcode'});
    expect([...metas.keys()]).toEqual(['a.weight', 'scalar', 'empty', 'ids', 'view']);
    const a = metas.get('a.weight')!;
    expect(a).toEqual({name: 'a.weight', dtype: 'F32', shape: [3, 3], file, begin: 8 + n, end: 8 + n + 36});
    expect(metas.get('ids')!.dtype).toBe('I32');
    expect(metas.get('scalar')!.shape).toEqual([]);
    for (const t of tensors) {
      const got = readTensor(metas.get(t.name)!);
      expect(got).toBeInstanceOf(t.data instanceof Int32Array ? Int32Array : Float32Array);
      expectBits(got, t.data);
    }
  });

  test('no metadata means no __metadata__ key', () => {
    const file = path.join(freshDir(), 'nometa.safetensors');
    writeSafetensors(file, [{name: 'x', shape: [1], data: new Float32Array([1])}]);
    expect(fs.readFileSync(file).toString('utf8')).not.toContain('__metadata__');
    expect(readHeader(file).metadata).toEqual({});
  });
});

describe('hand-built half-precision and other dtypes', () => {
  test('BF16 bit patterns read to exact float32', () => {
    const bits = [0x3f80, 0xc000, 0x3fc0, 0x4049, 0x0001, 0x8000, 0x7f80, 0xff80, 0x7fc0, 0x7f7f];
    // 0x0001 is a float32 subnormal; 0x7f7f is the largest finite bf16.
    const expected = [1, -2, 1.5, 3.140625, 2 ** -133, -0, Infinity, -Infinity, NaN, (2 - 2 ** -7) * 2 ** 127];
    const file = rawFile(
      path.join(freshDir(), 'bf16.safetensors'),
      {__metadata__: {format: 'pt'}, w: {dtype: 'BF16', shape: [2, 5], data_offsets: [0, 20]}},
      u16le(bits),
    );
    const meta = readHeader(file).tensors.get('w')!;
    expect(meta.dtype).toBe('BF16');
    const got = readTensor(meta);
    expect(got).toBeInstanceOf(Float32Array);
    expectBits(got, expected);
  });

  test('F16 bit patterns, subnormals and specials included, read to exact float32', () => {
    const bits = [
      0x3c00, 0xc000, 0x3555, 0x0001, 0x8001, 0x03ff, 0x0400, 0x7bff, 0xfbff, 0x7c00, 0xfc00, 0x7e00, 0x0000, 0x8000,
      0x3bff,
    ];
    // 0x3555 (about 1/3): exponent 13, mantissa 0x155. 0x0001..0x03ff are subnormal.
    const expected = [
      1,
      -2,
      (1 + 0x155 / 1024) * 2 ** -2,
      2 ** -24,
      -(2 ** -24),
      1023 * 2 ** -24,
      2 ** -14,
      65504,
      -65504,
      Infinity,
      -Infinity,
      NaN,
      0,
      -0,
      1 - 2 ** -11,
    ];
    const file = rawFile(
      path.join(freshDir(), 'f16.safetensors'),
      {h: {dtype: 'F16', shape: [15], data_offsets: [0, 30]}},
      u16le(bits),
    );
    expectBits(readTensor(readHeader(file).tensors.get('h')!), expected);
  });

  test('F64, I32 and I64 convert; an I64 outside int32 is an error naming file and tensor', () => {
    const f64 = Buffer.alloc(24);
    [0.1, -1e300, 2 ** -1074].forEach((v, i) => f64.writeDoubleLE(v, 8 * i));
    const i64 = Buffer.alloc(32);
    [0n, -1n, 2147483647n, -2147483648n].forEach((v, i) => i64.writeBigInt64LE(v, 8 * i));
    const big = Buffer.alloc(16);
    big.writeBigInt64LE(5n, 0);
    big.writeBigInt64LE(2147483648n, 8);
    const i32 = Buffer.alloc(8);
    i32.writeInt32LE(-7, 0);
    i32.writeInt32LE(123456789, 4);
    const file = rawFile(
      path.join(freshDir(), 'mixed.safetensors'),
      {
        d: {dtype: 'F64', shape: [3], data_offsets: [0, 24]},
        l: {dtype: 'I64', shape: [2, 2], data_offsets: [24, 56]},
        big: {dtype: 'I64', shape: [2], data_offsets: [56, 72]},
        i: {dtype: 'I32', shape: [2], data_offsets: [72, 80]},
        u: {dtype: 'U8', shape: [3], data_offsets: [80, 83]},
      },
      [...f64, ...i64, ...big, ...i32, 1, 2, 3],
    );
    const {tensors} = readHeader(file);
    expectBits(readTensor(tensors.get('d')!), [Math.fround(0.1), -Infinity, 0]);
    const l = readTensor(tensors.get('l')!);
    expect(l).toBeInstanceOf(Int32Array);
    expectBits(l, [0, -1, 2147483647, -2147483648]);
    expectBits(readTensor(tensors.get('i')!), [-7, 123456789]);
    expectCheckpointError(() => readTensor(tensors.get('big')!), file, /"big".*2147483648/);
    // U8 is a valid dtype (so the file lists) but not one this reader converts.
    expectCheckpointError(() => readTensor(tensors.get('u')!), file, /"u".*U8/);
  });

  test('tensors come back in file order whatever the header order', () => {
    const file = rawFile(
      path.join(freshDir(), 'order.safetensors'),
      {
        second: {dtype: 'F32', shape: [1], data_offsets: [4, 8]},
        first: {dtype: 'F32', shape: [1], data_offsets: [0, 4]},
      },
      [0, 0, 0x80, 0x3f, 0, 0, 0, 0x40],
    );
    const {tensors} = readHeader(file);
    expect([...tensors.keys()]).toEqual(['first', 'second']);
    expectBits(readTensor(tensors.get('first')!), [1]);
    expectBits(readTensor(tensors.get('second')!), [2]);
  });
});

describe('conversions', () => {
  const f32Bits = (b: number) => new Float32Array(new Uint32Array([b]).buffer);

  test('f32ToBf16 rounds to nearest even and keeps NaN a NaN', () => {
    expect(f32ToBf16(f32Bits(0x3f800000))[0]).toBe(0x3f80);
    expect(f32ToBf16(f32Bits(0x3f808000))[0]).toBe(0x3f80); // tie, even stays
    expect(f32ToBf16(f32Bits(0x3f818000))[0]).toBe(0x3f82); // tie, odd rounds up
    expect(f32ToBf16(f32Bits(0x3f808001))[0]).toBe(0x3f81); // just above the tie
    expect(f32ToBf16(f32Bits(0x3f807fff))[0]).toBe(0x3f80); // just below
    expect(f32ToBf16(f32Bits(0xbf818000))[0]).toBe(0xbf82); // sign does not matter
    expect(f32ToBf16(f32Bits(0x7f7fffff))[0]).toBe(0x7f80); // max float overflows to inf
    expect(f32ToBf16(f32Bits(0xff800000))[0]).toBe(0xff80);
    expect(f32ToBf16(f32Bits(0x00000001))[0]).toBe(0x0000); // smallest subnormal rounds to 0
    const nan = f32ToBf16(f32Bits(0x7f800001))[0]; // payload only in the dropped bits
    expect(Number.isNaN(bf16ToF32(new Uint16Array([nan]))[0])).toBe(true);
  });

  test('bf16 values survive f32ToBf16 -> bf16ToF32, others land on a neighbour', () => {
    const exact = new Float32Array([0, -0, 1, -2, 3.140625, 2 ** -133, Infinity, -Infinity, 1.5 * 2 ** 100]);
    expectBits(bf16ToF32(f32ToBf16(exact)), exact);
    const third = bf16ToF32(f32ToBf16(new Float32Array([1 / 3])))[0];
    expect(Math.abs(third - 1 / 3)).toBeLessThanOrEqual(2 ** -10);
    // Works on a view with a byte offset.
    const view = new Float32Array(new Float32Array([7, 1, 2]).buffer, 4, 2);
    expectBits(bf16ToF32(f32ToBf16(view)), [1, 2]);
  });

  test('f16ToF32 on every pattern is what the IEEE formula gives', () => {
    const all = Uint16Array.from({length: 65536}, (_, i) => i);
    const got = f16ToF32(all);
    for (let h = 0; h < 65536; h++) {
      const s = h & 0x8000 ? -1 : 1,
        e = (h >> 10) & 31,
        m = h & 1023;
      const want =
        e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15);
      if (!Object.is(got[h], want)) throw new Error(`f16 0x${h.toString(16)}: ${got[h]} vs ${want}`);
    }
  });
});

describe('sharded checkpoints', () => {
  function model(): WriteTensor[] {
    return [
      {name: 'model.embed_tokens.weight', shape: [16, 8], data: ramp(128, 0.25, 64)}, // 512 B
      {name: 'model.layers.0.mlp.w', shape: [8, 8], data: ramp(64, -1.5)}, // 256 B
      {name: 'model.layers.0.mlp.b', shape: [8], data: ramp(8, 3)}, // 32 B
      {name: 'model.layers.1.mlp.w', shape: [8, 8], data: ramp(64, 0.125, 3)}, // 256 B
      {name: 'model.layers.1.step', shape: [], data: new Int32Array([-5])}, // 4 B
      {name: 'model.final_norm.scale', shape: [8], data: ramp(8, 1e-3)}, // 32 B
    ];
  }

  test('small maxShardBytes gives HF-named shards and an index; list and iterate return everything exactly', async () => {
    const dir = freshDir();
    const tensors = model();
    writeCheckpoint(dir, tensors, {maxShardBytes: 300, metadata: {source: 'test'}});
    const files = fs.readdirSync(dir).sort();
    // Greedy in order: [embed 512] [w0 256, b0 32] [w1 256, step 4, norm 32]
    expect(files).toEqual([
      'model-00001-of-00003.safetensors',
      'model-00002-of-00003.safetensors',
      'model-00003-of-00003.safetensors',
      'model.safetensors.index.json',
    ]);
    const indexText = fs.readFileSync(path.join(dir, 'model.safetensors.index.json'), 'utf8');
    const index = JSON.parse(indexText);
    expect(index.metadata).toEqual({source: 'test', total_size: 512 + 256 + 32 + 256 + 4 + 32});
    expect(index.weight_map).toEqual({
      'model.embed_tokens.weight': 'model-00001-of-00003.safetensors',
      'model.final_norm.scale': 'model-00003-of-00003.safetensors',
      'model.layers.0.mlp.b': 'model-00002-of-00003.safetensors',
      'model.layers.0.mlp.w': 'model-00002-of-00003.safetensors',
      'model.layers.1.mlp.w': 'model-00003-of-00003.safetensors',
      'model.layers.1.step': 'model-00003-of-00003.safetensors',
    });
    expect(Object.keys(index.weight_map)).toEqual(Object.keys(index.weight_map).sort()); // sort_keys=True
    expect(indexText.endsWith('}\n')).toBe(true);
    expect(readHeader(path.join(dir, 'model-00002-of-00003.safetensors')).metadata).toEqual({
      format: 'pt',
      source: 'test',
    });

    const listed = listCheckpoint(dir);
    expect([...listed.keys()]).toEqual(tensors.map((t) => t.name));
    for (const t of tensors) expectBits(readTensor(listed.get(t.name)!), t.data);

    const streamed = await collect(dir);
    expect(streamed.map((t) => t.name)).toEqual(tensors.map((t) => t.name));
    streamed.forEach((t, i) => {
      expect(t.shape).toEqual(tensors[i].shape);
      expectBits(t.data, tensors[i].data);
    });
    const only = await collect(dir, new Set(['model.layers.1.step', 'model.embed_tokens.weight', 'not.there']));
    expect(only.map((t) => t.name)).toEqual(['model.embed_tokens.weight', 'model.layers.1.step']);
    expectBits(only[1].data, [-5]);
  });

  test('everything within maxShardBytes gives a single model.safetensors with format pt', async () => {
    const dir = freshDir();
    writeCheckpoint(dir, model());
    expect(fs.readdirSync(dir)).toEqual(['model.safetensors']);
    expect(readHeader(path.join(dir, 'model.safetensors')).metadata).toEqual({format: 'pt'});
    const streamed = await collect(dir);
    expect(streamed.length).toBe(6);
    streamed.forEach((t, i) => expectBits(t.data, model()[i].data));
  });

  test('a factory source is planned and written without a list, and stale files are replaced', async () => {
    const dir = freshDir();
    writeCheckpoint(dir, model()); // an earlier single-file save that must not shadow the shards
    let calls = 0;
    function* gen(): Iterable<WriteTensor> {
      calls++;
      yield* model();
    }
    writeCheckpoint(dir, gen, {maxShardBytes: 600});
    expect(calls).toBe(2);
    expect(fs.readdirSync(dir).sort()).toEqual([
      'model-00001-of-00002.safetensors',
      'model-00002-of-00002.safetensors',
      'model.safetensors.index.json',
    ]);
    const streamed = await collect(dir);
    streamed.forEach((t, i) => expectBits(t.data, model()[i].data));

    writeCheckpoint(dir, model()); // and back to one file
    expect(fs.readdirSync(dir)).toEqual(['model.safetensors']);
  });

  test('a factory that changes between calls is an error, and leaves no tmp file', () => {
    const dir = freshDir();
    let calls = 0;
    const factory = () => (calls++ === 0 ? model() : model().reverse());
    expectCheckpointError(
      () => writeCheckpoint(dir, factory, {maxShardBytes: 300}),
      'model-00001-of-00003.safetensors',
      /same tensors/,
    );
    expect(fs.readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });
});

describe('the tiny-a fixture', () => {
  const dir = path.join(__dirname, '..', 'fixtures', 'tiny-a');
  const file = path.join(dir, 'model.safetensors');

  test('lists its 78 F32 tensors', () => {
    const {tensors, metadata} = readHeader(file);
    expect(tensors.size).toBe(78);
    expect(metadata).toEqual({format: 'pt'});
    for (const m of tensors.values()) expect(m.dtype).toBe('F32');
    const embed = tensors.get('model.embed_tokens.weight')!;
    expect(embed.dtype).toBe('F32');
    expect(embed.shape).toEqual([512, 64]);
    expect(listCheckpoint(dir).size).toBe(78);
  });

  test('a tensor reads to the bytes at its offsets', async () => {
    const embed = readHeader(file).tensors.get('model.embed_tokens.weight')!;
    const data = readTensor(embed);
    expect(data.length).toBe(512 * 64);
    const bytes = fs.readFileSync(file);
    for (const i of [0, 1, 4095, 32767]) expect(data[i]).toBe(bytes.readFloatLE(embed.begin + 4 * i));
    const streamed = await collect(dir, new Set(['model.embed_tokens.weight']));
    expect(streamed.length).toBe(1);
    expectBits(streamed[0].data, data);
    expect((await collect(dir)).length).toBe(78);
  });
});

describe('errors are CheckpointErrors naming the file', () => {
  let dir: string;
  beforeAll(() => {
    dir = freshDir();
  });
  const f32 = (name: string, shape: unknown, offsets: unknown) => ({
    [name]: {dtype: 'F32', shape, data_offsets: offsets},
  });

  test('file shorter than 8 bytes', () => {
    const file = path.join(dir, 'short.safetensors');
    fs.writeFileSync(file, Buffer.from([1, 0, 0]));
    expectCheckpointError(() => readHeader(file), file, /short/);
  });

  test('missing file', () => {
    expectCheckpointError(() => readHeader(path.join(dir, 'nope.safetensors')), 'nope.safetensors');
  });

  test('header length past the end of the file, or absurd', () => {
    expectCheckpointError(
      () => readHeader(rawFile(path.join(dir, 'past.safetensors'), {}, [], 1000n)),
      'past.safetensors',
      /past the end/,
    );
    expectCheckpointError(
      () => readHeader(rawFile(path.join(dir, 'absurd.safetensors'), {}, [], 2n ** 62n)),
      'absurd.safetensors',
      /absurd/,
    );
    expectCheckpointError(
      () => readHeader(rawFile(path.join(dir, 'huge.safetensors'), {}, [], 0xffffffffffffffffn)),
      'huge.safetensors',
      /absurd/,
    );
  });

  test('header not JSON, not UTF-8, or not an object', () => {
    expectCheckpointError(
      () => readHeader(rawFile(path.join(dir, 'notjson.safetensors'), '{"a": ')),
      'notjson.safetensors',
      /JSON/,
    );
    const bad = path.join(dir, 'notutf8.safetensors');
    fs.writeFileSync(bad, Buffer.from([2, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xfe]));
    expectCheckpointError(() => readHeader(bad), bad, /UTF-8/);
    for (const [name, h] of [
      ['array', '[]'],
      ['null', 'null'],
      ['number', '3'],
      ['string', '"x"'],
    ]) {
      const file = rawFile(path.join(dir, `${name}.safetensors`), h);
      expectCheckpointError(() => readHeader(file), file, /not a JSON object/);
    }
  });

  test('bad entries, metadata and dtypes', () => {
    const cases: [string, unknown, RegExp][] = [
      ['entry', {t: 5}, /"t".*not an object/],
      ['dtype', {t: {dtype: 'F12', shape: [1], data_offsets: [0, 4]}}, /"t".*unknown dtype "F12"/],
      ['nodtype', {t: {shape: [1], data_offsets: [0, 4]}}, /unknown dtype/],
      ['protodtype', {t: {dtype: 'constructor', shape: [1], data_offsets: [0, 4]}}, /unknown dtype/],
      ['meta', {__metadata__: {a: 1}}, /__metadata__ "a"/],
      ['metaarr', {__metadata__: []}, /__metadata__/],
    ];
    for (const [name, header, re] of cases) {
      const file = rawFile(path.join(dir, `${name}.safetensors`), header, [0, 0, 0, 0]);
      expectCheckpointError(() => readHeader(file), file, re);
    }
  });

  test('bad shapes', () => {
    for (const [i, shape] of ([[-1], [1.5], ['1'], 4, null, undefined, [1e300]] as unknown[]).entries()) {
      const file = rawFile(path.join(dir, `shape${i}.safetensors`), f32('t', shape, [0, 4]), [0, 0, 0, 0]);
      expectCheckpointError(() => readHeader(file), file, /"t".*shape/);
    }
  });

  test('bad data_offsets', () => {
    for (const [i, offsets] of ([[4, 0], [0], [0, 4, 8], 'x', [-4, 0], [0, 4.5], null] as unknown[]).entries()) {
      const file = rawFile(path.join(dir, `off${i}.safetensors`), f32('t', [1], offsets), [0, 0, 0, 0, 0, 0, 0, 0]);
      expectCheckpointError(() => readHeader(file), file, /"t".*data_offsets/);
    }
  });

  test('end past the data, i.e. a truncated file, is caught by readHeader', () => {
    const file = rawFile(
      path.join(dir, 'trunc.safetensors'),
      {...f32('a', [2], [0, 8]), ...f32('b', [2], [8, 16])},
      [0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    );
    expectCheckpointError(() => readHeader(file), file, /"b".*past the end of the data/);
  });

  test('byte length not numel * bytes per element', () => {
    const file = rawFile(path.join(dir, 'len.safetensors'), f32('t', [3], [0, 8]), [0, 0, 0, 0, 0, 0, 0, 0]);
    expectCheckpointError(() => readHeader(file), file, /"t".*needs 12 bytes/);
    const overflow = rawFile(
      path.join(dir, 'ovf.safetensors'),
      f32('t', [2 ** 40, 2 ** 40], [0, 8]),
      [0, 0, 0, 0, 0, 0, 0, 0],
    );
    expectCheckpointError(() => readHeader(overflow), overflow, /"t"/);
  });

  test('a file truncated after its header was read fails on readTensor', () => {
    const file = path.join(dir, 'later.safetensors');
    writeSafetensors(file, [{name: 'x', shape: [4], data: new Float32Array([1, 2, 3, 4])}]);
    const meta: TensorMeta = readHeader(file).tensors.get('x')!;
    fs.truncateSync(file, meta.begin + 6);
    expectCheckpointError(() => readTensor(meta), file, /truncated/);
  });

  test('readHeader on a directory', () => {
    expectCheckpointError(() => readHeader(dir), dir);
  });

  test('listCheckpoint: no checkpoint, missing shard, tensor absent from its shard, broken index', () => {
    const empty = freshDir();
    expectCheckpointError(() => listCheckpoint(empty), empty, /no checkpoint/);
    expectCheckpointError(() => listCheckpoint(path.join(empty, 'missing')), 'missing', /no checkpoint/);

    const sharded = freshDir();
    writeSafetensors(path.join(sharded, 'model-00001-of-00002.safetensors'), [
      {name: 'a', shape: [1], data: new Float32Array([1])},
    ]);
    const index = path.join(sharded, 'model.safetensors.index.json');
    const writeIndex = (map: unknown) =>
      fs.writeFileSync(index, JSON.stringify({metadata: {total_size: 8}, weight_map: map}));

    writeIndex({a: 'model-00001-of-00002.safetensors', b: 'model-00002-of-00002.safetensors'});
    expectCheckpointError(() => listCheckpoint(sharded), 'model-00002-of-00002.safetensors', /does not exist/);
    expectCheckpointError(() => listCheckpoint(sharded), 'model.safetensors.index.json');

    writeIndex({a: 'model-00001-of-00002.safetensors', c: 'model-00001-of-00002.safetensors'});
    expectCheckpointError(() => listCheckpoint(sharded), 'model-00001-of-00002.safetensors', /"c".*absent/);

    writeIndex({a: '../elsewhere.safetensors'});
    expectCheckpointError(() => listCheckpoint(sharded), 'model.safetensors.index.json', /not a shard file name/);

    fs.writeFileSync(index, '{"weight_map": ');
    expectCheckpointError(() => listCheckpoint(sharded), 'model.safetensors.index.json', /JSON/);
    fs.writeFileSync(index, '{"metadata": {}}');
    expectCheckpointError(() => listCheckpoint(sharded), 'model.safetensors.index.json', /weight_map/);

    writeIndex({a: 'model-00001-of-00002.safetensors'});
    expect([...listCheckpoint(sharded).keys()]).toEqual(['a']);
  });

  test('iterateCheckpoint surfaces the same errors', async () => {
    const empty = freshDir();
    await expect(collect(empty)).rejects.toThrow(CheckpointError);
  });

  test('writer rejects bad input without leaving files behind', () => {
    const wdir = freshDir();
    const file = path.join(wdir, 'w.safetensors');
    const cases: [WriteTensor[], RegExp][] = [
      [[{name: 'x', shape: [3], data: new Float32Array(2)}], /"x".*3 elements/],
      [
        [
          {name: 'x', shape: [1], data: new Float32Array(1)},
          {name: 'x', shape: [1], data: new Float32Array(1)},
        ],
        /"x".*twice/,
      ],
      [[{name: 'x', shape: [-1], data: new Float32Array(1)}], /shape/],
      [[{name: 'x', shape: [1], data: new Float64Array(1) as unknown as Float32Array}], /Float32Array/],
      [[{name: '__metadata__', shape: [1], data: new Float32Array(1)}], /name/],
    ];
    for (const [tensors, re] of cases) expectCheckpointError(() => writeSafetensors(file, tensors), file, re);
    expectCheckpointError(() => writeSafetensors(file, [], {a: 1 as unknown as string}), file, /metadata/);
    expectCheckpointError(
      () => writeSafetensors(path.join(wdir, 'no', 'such', 'dir.safetensors'), []),
      'dir.safetensors',
      /write failed/,
    );
    expect(fs.readdirSync(wdir)).toEqual([]);
  });
});
