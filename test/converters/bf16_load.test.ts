/**
 * The memory-lean half-precision path: 16-bit tensors are read into the upper half of their
 * float32 result and widened in place (converters/safetensors.ts), and the writer takes bf16 /
 * f16 bit patterns. Checked on values: in-place widening equals the plain conversion on every
 * pattern, and a bf16 checkpoint of tiny-a, sharded as the released 2B one, loads to exactly
 * the bf16-rounded weights.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {configTensors} from '../../converters/config_tensors';
import {
  bf16ToF32,
  CheckpointError,
  f16ToF32,
  f32ToBf16,
  listCheckpoint,
  readHeader,
  readTensor,
  widenBf16InPlace,
  widenF16InPlace,
  writeCheckpoint,
  writeSafetensors,
} from '../../converters/safetensors';
import {RecurrentGemmaConfig} from '../../src/config';
import {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {relError} from '../helpers';

const TINY_A = path.join(__dirname, '../fixtures/tiny-a');
let tmp: string;
beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'griffin-bf16-'));
  await tf.setBackend('cpu');
});
afterAll(() => fs.rmSync(tmp, {recursive: true, force: true}));

/** Every 16-bit pattern once, then a few again (an odd count). */
const ALL = Uint16Array.from({length: 65536 + 3}, (_, i) => i % 65536);

function inUpperHalf(u16: Uint16Array, offsetFloats = 0): Float32Array {
  const buf = new ArrayBuffer((offsetFloats + u16.length) * 4);
  const out = new Float32Array(buf, offsetFloats * 4, u16.length);
  new Uint16Array(buf, offsetFloats * 4 + 2 * u16.length, u16.length).set(u16);
  return out;
}

const same = (a: Float32Array, b: Float32Array) =>
  expect(
    Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength)),
  ).toBe(true);

test('widening in place equals the plain conversion on every bf16 and f16 pattern, at any offset', () => {
  for (const offset of [0, 3]) {
    same(widenBf16InPlace(inUpperHalf(ALL, offset)), bf16ToF32(ALL));
    same(widenF16InPlace(inUpperHalf(ALL, offset)), f16ToF32(ALL));
  }
  // Spot values: 1, -2, bf16's smallest subnormal, and half's.
  expect(Array.from(widenBf16InPlace(inUpperHalf(Uint16Array.from([0x3f80, 0xc000, 0x0001]))))).toEqual([
    1,
    -2,
    2 ** -133,
  ]);
  expect(Array.from(widenF16InPlace(inUpperHalf(Uint16Array.from([0x3c00, 0xc000, 0x0001]))))).toEqual([
    1,
    -2,
    2 ** -24,
  ]);
});

test('BF16 and F16 tensors written from bit patterns read back bit-exactly, with the dtype in the header', () => {
  const file = path.join(tmp, 'half.safetensors');
  writeSafetensors(file, [
    {name: 'b', shape: [ALL.length], data: ALL, dtype: 'BF16'},
    {name: 'h', shape: [3, 1], data: Uint16Array.from([0x3c00, 0x7c00, 0x8001]), dtype: 'F16'},
  ]);
  const {tensors} = readHeader(file);
  expect(tensors.get('b')!.dtype).toBe('BF16');
  expect(tensors.get('h')).toMatchObject({dtype: 'F16', shape: [3, 1]});
  same(readTensor(tensors.get('b')!) as Float32Array, bf16ToF32(ALL));
  expect(Array.from(readTensor(tensors.get('h')!))).toEqual([1, Infinity, -(2 ** -24)]);
  expect(() =>
    writeSafetensors(path.join(tmp, 'bad.safetensors'), [{name: 'x', shape: [1], data: new Uint16Array(1)}]),
  ).toThrow(CheckpointError);
  expect(() =>
    writeSafetensors(path.join(tmp, 'bad.safetensors'), [
      {name: 'x', shape: [1], data: new Float32Array(1), dtype: 'BF16'},
    ]),
  ).toThrow(/Uint16Array with dtype 'BF16' or 'F16'/);
});

test('a bf16 tiny-a sharded like the released checkpoint loads to exactly the bf16-rounded weights', async () => {
  const ref = await RecurrentGemmaForCausalLM.fromPretrained(TINY_A);
  const dir = path.join(tmp, 'tiny-a-bf16');
  const weights = [...listCheckpoint(TINY_A).values()].map((m) => ({
    name: m.name,
    shape: m.shape,
    f32: readTensor(m) as Float32Array,
  }));
  writeCheckpoint(
    dir,
    weights.map((w) => ({name: w.name, shape: w.shape, data: f32ToBf16(w.f32), dtype: 'BF16' as const})),
    {maxShardBytes: 100_000},
  );
  fs.copyFileSync(path.join(TINY_A, 'config.json'), path.join(dir, 'config.json'));
  const files = fs.readdirSync(dir).sort();
  expect(files).toContain('model.safetensors.index.json');
  expect(files.filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f)).length).toBeGreaterThan(1);

  const model = await RecurrentGemmaForCausalLM.fromPretrained(dir);
  const params = model.namedParameters();
  for (const w of weights) {
    const got = params.get(w.name)!.read().dataSync() as Float32Array;
    same(got, bf16ToF32(f32ToBf16(w.f32)));
  }
  // bf16 keeps 8 bits of mantissa: the logits stay close to float32's.
  const ids = [[2, 17, 301, 45, 9, 77]];
  const a = model.forward({inputIds: ids}).logits,
    b = ref.forward({inputIds: ids}).logits;
  const err = relError(a.dataSync(), b.dataSync());
  expect(err).toBeGreaterThan(0);
  expect(err).toBeLessThan(2e-2);
  tf.dispose([a, b]);
  model.dispose();
  ref.dispose();
});

test('wasm refuses, in one line, a checkpoint past its 4 GiB heap before allocating anything', async () => {
  // A header-only checkpoint of a model with a 2.1M x 512 vocabulary (1.08e9 parameters, 4.0 GiB in
  // float32), every tensor its config implies present: loadHF must stop on the header, reading no data.
  const dir = path.join(tmp, 'huge');
  fs.mkdirSync(dir);
  const cfg = JSON.parse(fs.readFileSync(path.join(TINY_A, 'config.json'), 'utf8'));
  Object.assign(cfg, {vocab_size: 2_097_152, hidden_size: 512, lru_width: 512, head_dim: 128});
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
  const entries: Record<string, unknown> = {};
  let n = 0;
  for (const [name, shape] of configTensors(RecurrentGemmaConfig.fromJSON(cfg))) {
    const k = shape.reduce((a, b) => a * b, 1);
    entries[name] = {dtype: 'BF16', shape, data_offsets: [2 * n, 2 * (n + k)]};
    n += k;
  }
  const header = Buffer.from(JSON.stringify(entries));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(header.length));
  const fd = fs.openSync(path.join(dir, 'model.safetensors'), 'w');
  fs.writeSync(fd, Buffer.concat([len, header]));
  fs.ftruncateSync(fd, 8 + header.length + 2 * n); // sparse: no disk used
  fs.closeSync(fd);
  const {useBackend} = await import('../../src/backend');
  await useBackend('wasm');
  try {
    await expect(RecurrentGemmaForCausalLM.fromPretrained(dir)).rejects.toThrow(
      /4\.0 GiB in float32, more than the wasm backend's 4 GiB memory.*--backend cpu/,
    );
  } finally {
    await tf.setBackend('cpu');
  }
});
