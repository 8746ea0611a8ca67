/**
 * The GPU sampler (ops/sample_webgpu) on SwiftShader against plain references written here:
 * Philox4x32-10 against Random123's published known answers; the repetition penalty, temperature,
 * top-k threshold (ties included) and top-p cutoff (ties at the cutoff, lowest ids first) against
 * a sort-based float64 reference; draw frequencies against the exact renormalised distribution
 * (chi-square and per-token binomial bounds, nothing outside the support); seeded reruns and
 * rows of a batch.
 */

import * as fs from 'fs';
import * as path from 'path';
import {GpuSampler, philox4x32, RowSampling, ST} from '../../ops/sample_webgpu';
import {PHILOX_WGSL} from '../../ops/sample_webgpu/philox';
import {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {initNodeWebGPU} from '../../src/webgpu_node';
import {seededUniform} from '../helpers';
import {describeWebGPU} from '../webgpu_env'; // first: sets the SwiftShader env before Dawn loads
import {runKernel} from './kernel_helpers';

const device = () => (tf.backend() as unknown as {device: GPUDevice}).device;

/**
 * Random123 tests/kat_vectors (github.com/DEShawResearch/random123), the three "philox4x32 10"
 * lines: counter (4 words), key (2 words), expected output (4 words).
 */
const KAT: [number[], number[], number[]][] = [
  [
    [0, 0, 0, 0],
    [0, 0],
    [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8],
  ],
  [
    [0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff],
    [0xffffffff, 0xffffffff],
    [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd],
  ],
  [
    [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
    [0xa4093822, 0x299f31d0],
    [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
  ],
];

// ---- plain references (float64, sort-based) ----

interface Opts {
  temperature: number;
  topK?: number;
  topP?: number;
  minP?: number;
  penalty?: number;
  seen?: number[];
}

/** The row after penalty and temperature, rounded to float32 at each step as both samplers store it. */
function refZ(l: Float32Array, o: Opts): Float32Array {
  const z = Float32Array.from(l);
  const r = o.penalty ?? 1;
  if (r !== 1) for (const id of new Set(o.seen ?? [])) z[id] = z[id] > 0 ? z[id] / r : z[id] * r;
  if (o.temperature > 0 && o.temperature !== 1) for (let i = 0; i < z.length; i++) z[i] = z[i] / o.temperature;
  return z;
}

/** The order-preserving uint32 of a float32 (what the kernels compare). */
function keyOf(z: number): number {
  if (Number.isNaN(z)) return 0;
  const b = new Uint32Array(Float32Array.of(z === 0 ? 0 : z).buffer)[0];
  return (b & 0x80000000 ? ~b : b | 0x80000000) >>> 0;
}

/** Ids by decreasing z, ties by increasing id. */
function order(z: Float32Array): number[] {
  return Array.from(z.keys())
    .filter((i) => !Number.isNaN(z[i]))
    .sort((a, b) => z[b] - z[a] || a - b);
}

function refKth(z: Float32Array, k: number): number {
  const o = order(z);
  return k >= o.length ? -Infinity : z[o[k - 1]];
}

/** The exact distribution the rules define, with the top-p cutoff value and how many ties at it are kept. */
function refDistribution(
  l: Float32Array,
  o: Opts,
): {probs: Float64Array; cutoff: number; ties: number; margin: number} {
  const z = refZ(l, o);
  const V = z.length;
  const th = o.topK !== undefined && o.topK < V ? refKth(z, o.topK) : -Infinity;
  const ids = order(z).filter((i) => z[i] >= th);
  const zmax = z[ids[0]];
  const e = new Float64Array(V);
  for (const i of ids) e[i] = Math.exp(z[i] - zmax);
  let keep = new Set(ids);
  let cutoff = NaN,
    ties = Infinity,
    margin = Infinity;
  if (o.topP !== undefined && o.topP < 1) {
    const total = ids.reduce((s, i) => s + e[i], 0);
    let cum = 0,
      n = 0;
    for (const i of ids) {
      const before = cum;
      cum += e[i];
      n++;
      if (cum >= o.topP * total) {
        margin = Math.min(cum - o.topP * total, o.topP * total - before) / total;
        break;
      }
    }
    cutoff = z[ids[n - 1]];
    ties = ids.slice(0, n).filter((i) => z[i] === cutoff).length;
    keep = new Set(ids.slice(0, n));
  }
  if (o.minP) for (const i of [...keep]) if (e[i] < o.minP) keep.delete(i);
  const probs = new Float64Array(V);
  let s = 0;
  for (const i of keep) s += e[i];
  for (const i of keep) probs[i] = e[i] / s;
  return {probs, cutoff, ties, margin};
}

// ---- running the sampler on arrays ----

function gpuBuffer(data: Float32Array): GPUBuffer {
  const b = device().createBuffer({
    size: Math.ceil(data.byteLength / 16) * 16,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
    mappedAtCreation: true,
  });
  new Float32Array(b.getMappedRange(0, data.byteLength)).set(data);
  b.unmap();
  return b;
}

/** Samples rows of `logits` [b, V]; the sampler's state words come back too. */
async function sampleRows(
  logits: Float32Array,
  V: number,
  rows: RowSampling[],
  seen: number[][] = [],
): Promise<{ids: number[]; state: Uint32Array}> {
  const s = new GpuSampler(device(), V, rows.length, Math.max(1, seen.length));
  seen.forEach((ids, r) => s.setSeen(r, ids));
  const buf = gpuBuffer(logits);
  try {
    const ids = Array.from(await s.sample(buf, rows));
    return {ids, state: await s.readState(rows.length)};
  } finally {
    buf.destroy();
    s.dispose();
  }
}

const stateOf = (st: Uint32Array, r: number, w: number) => st[r * 16 + w];

function randomLogits(seed: number, n: number, scale = 4): Float32Array {
  const r = seededUniform(seed);
  // Roughly normal: the sum of three uniforms.
  return Float32Array.from({length: n}, () => scale * (r() + r() + r() - 1.5));
}

describeWebGPU('GPU sampling kernels', () => {
  beforeAll(async () => {
    await initNodeWebGPU();
  }, 120000);

  test('Philox4x32-10 gives Random123’s known answers, on the host and in WGSL', async () => {
    for (const [ctr, key, want] of KAT) expect(philox4x32(ctr, key)).toEqual(want);
    const code = `${PHILOX_WGSL}
@group(0) @binding(0) var<storage, read_write> io : array<u32>;
@compute @workgroup_size(1)
fn main(@builtin(workgroup_id) wg : vec3<u32>) {
  let o = wg.x * 6u;
  let r = philox(vec4<u32>(io[o], io[o + 1u], io[o + 2u], io[o + 3u]), vec2<u32>(io[o + 4u], io[o + 5u]));
  io[o] = r.x; io[o + 1u] = r.y; io[o + 2u] = r.z; io[o + 3u] = r.w;
}`;
    const io = Uint32Array.from(KAT.flatMap(([c, k]) => [...c, ...k]));
    const [out] = await runKernel(code, [io], [KAT.length, 1, 1]);
    const words = new Uint32Array(out.buffer);
    KAT.forEach(([, , want], i) => expect(Array.from(words.subarray(6 * i, 6 * i + 4))).toEqual(want));
  });

  test('greedy with a repetition penalty: the first index of the penalised maximum; the pick joins the seen ids', async () => {
    const V = 3000;
    const l = randomLogits(1, 2 * V);
    l[V + 17] = 50; // row 1: the max, but seen with penalty 2: 25, so 18 (30) wins
    l[V + 18] = 30;
    l[1234] = 40; // row 0: the max, but seen with penalty 4: 10, so 2000 and 2001 (tied at 12) win: the first
    l[2000] = 12;
    l[2001] = 12;
    const seen = [[1234, 5], [17]];
    const rows: RowSampling[] = [0, 1].map((r) => ({
      seenRow: r,
      seed: 0,
      step: 0,
      temperature: 0,
      repetitionPenalty: r ? 2 : 4,
    }));
    const {ids} = await sampleRows(l, V, rows, seen);
    expect(ids).toEqual([2000, 18]);
    for (let r = 0; r < 2; r++) {
      const z = refZ(l.subarray(r * V, (r + 1) * V), {temperature: 0, penalty: r ? 2 : 4, seen: seen[r]});
      expect(ids[r]).toBe(order(z)[0]);
    }
    // The sampler adds each pick to its row's seen ids: the same logits again pick the next one.
    const s = new GpuSampler(device(), V, 2, 2);
    seen.forEach((x, r) => s.setSeen(r, x));
    const buf = gpuBuffer(l);
    const first = Array.from(await s.sample(buf, rows));
    const second = Array.from(await s.sample(buf, rows));
    buf.destroy();
    s.dispose();
    expect(first).toEqual([2000, 18]);
    // Row 0: 2000 seen now (12 / 4 = 3), so its tie 2001 wins; row 1: 18 seen (15), 17 (25) wins.
    expect(second).toEqual([2001, 17]);
  });

  test.each([
    [1, 1],
    [50, 2],
    [1024, 3],
    [2999, 4],
  ])('top-k threshold, k=%i: the k-th largest z after penalty and temperature', async (k, seed) => {
    const V = 3000,
      b = 3;
    const l = randomLogits(seed, b * V);
    const seen = [[1, 2, 3, 2900], [], Array.from({length: 300}, (_, i) => i * 7)];
    // Temperature 0.5 and penalty 2 are exact in float32, so the reference z is the kernels' z bit for bit.
    const opts = (r: number): Opts => ({temperature: 0.5, topK: k, penalty: 2, seen: seen[r]});
    const rows = [0, 1, 2].map((r) => ({
      seenRow: r,
      seed: r,
      step: 0,
      temperature: 0.5,
      topK: k,
      repetitionPenalty: 2,
    }));
    const {ids, state} = await sampleRows(l, V, rows, seen);
    for (let r = 0; r < b; r++) {
      const z = refZ(l.subarray(r * V, (r + 1) * V), opts(r));
      const th = refKth(z, k);
      expect(stateOf(state, r, ST.kKey)).toBe(keyOf(th));
      expect(stateOf(state, r, ST.max)).toBe(keyOf(Math.max(...z)));
      expect(z[ids[r]]).toBeGreaterThanOrEqual(th);
    }
  });

  test('top-k ties: every token tied with the k-th is kept, and only those', async () => {
    const V = 3000;
    // Values 0..7, each on 375 ids: k = 600 falls inside the second-highest value's group.
    const l = Float32Array.from({length: V}, (_, i) => (i * 5) % 8);
    const rows = [{seenRow: 0, seed: 3, step: 0, temperature: 1, topK: 600}];
    const {state} = await sampleRows(l, V, rows);
    expect(stateOf(state, 0, ST.kKey)).toBe(keyOf(6));
    // k larger than the row: everything kept (threshold key 1 = any non-NaN).
    const all = await sampleRows(l, V, [{...rows[0], topK: V - 1}]);
    expect(stateOf(all.state, 0, ST.kKey)).toBe(keyOf(0));
  });

  test.each([
    [0.5, undefined, 1],
    [0.9, 40, 2],
    [0.95, undefined, 3],
    [0.3, 1000, 4],
  ])('top-p %f (top-k %s): the cutoff and the ties kept at it', async (p, k, seed) => {
    const V = 3000;
    const l = randomLogits(seed, V, 3);
    // Temperature 0.5 is exact in float32 (WGSL's division need not be correctly rounded).
    const o: Opts = {temperature: 0.5, topP: p, topK: k};
    const ref = refDistribution(l, o);
    const {ids, state} = await sampleRows(l, V, [{seenRow: 0, seed, step: 0, temperature: 0.5, topP: p, topK: k}]);
    // The GPU's masses are float32 exps (a few ulp each, so every running sum is within ~1e-6
    // relative of the float64 one) and p is rounded to 2^-24: the cutoff is pinned where the
    // reference's running sum is further than that from p.
    expect(ref.margin).toBeGreaterThan(1e-6);
    expect(stateOf(state, 0, ST.cKey)).toBe(keyOf(ref.cutoff));
    expect(stateOf(state, 0, ST.ties)).toBe(ref.ties);
    expect(ref.probs[ids[0]]).toBeGreaterThan(0);
  });

  test('top-p ties at the cutoff: only as many as the sum needs, lowest ids first', async () => {
    const V = 3000;
    // One token at 3, then 20 tied at 2 (ids 500..519), the rest at -20.
    const l = new Float32Array(V).fill(-20);
    l[7] = 3;
    for (let i = 500; i < 520; i++) l[i] = 2;
    const o: Opts = {temperature: 1, topP: 0.5};
    const ref = refDistribution(l, o);
    expect(ref.ties).toBeGreaterThan(1);
    expect(ref.ties).toBeLessThan(20);
    const rows = Array.from({length: 256}, (_, r) => ({seenRow: 0, seed: 77 + r, step: 0, temperature: 1, topP: 0.5}));
    const logits = new Float32Array(rows.length * V);
    rows.forEach((_, r) => logits.set(l, r * V));
    const {ids, state} = await sampleRows(logits, V, rows);
    expect(stateOf(state, 0, ST.ties)).toBe(ref.ties);
    const drawn = new Set(ids);
    for (const id of drawn) expect(ref.probs[id]).toBeGreaterThan(0);
    // Every kept tie shows up in 256 draws (each has probability ~0.085 here: missing one, ~1e-9).
    for (let i = 500; i < 500 + ref.ties; i++) expect(drawn.has(i)).toBe(true);
  }, 300000);
});

/** Chi-square critical value at about 3e-7 (z = 5, Wilson-Hilferty). */
function chi2Bound(df: number): number {
  const a = 2 / (9 * df);
  return df * (1 - a + 5 * Math.sqrt(a)) ** 3;
}

describeWebGPU('GPU sampling draws', () => {
  beforeAll(async () => {
    await initNodeWebGPU();
  }, 120000);

  test.each<[string, Opts]>([
    ['temperature 0.7', {temperature: 0.7}],
    ['top-k 12, temperature 1.3', {temperature: 1.3, topK: 12}],
    ['top-k 30, top-p 0.9, min-p 0.05, penalty 1.5', {temperature: 0.8, topK: 30, topP: 0.9, minP: 0.05, penalty: 1.5}],
    ['top-p 0.8 with ties', {temperature: 1, topP: 0.8}],
  ])(
    '%s: frequencies match the exact distribution, nothing outside it',
    async (_, o) => {
      const V = 64;
      const l = randomLogits(11, V, 2);
      if (o.topP === 0.8) for (let i = 20; i < 40; i += 2) l[i] = 1.25; // ties around the cutoff
      o.seen = [3, 9, 27, 40];
      const {probs} = refDistribution(l, o);
      const b = 512,
        calls = 8,
        counts = new Float64Array(V);
      const s = new GpuSampler(device(), V, b, b);
      const logits = new Float32Array(b * V);
      for (let r = 0; r < b; r++) logits.set(l, r * V);
      const buf = gpuBuffer(logits);
      for (let c = 0; c < calls; c++) {
        const rows = Array.from({length: b}, (_, r) => ({
          seenRow: r,
          seed: 1000 + r,
          step: c,
          temperature: o.temperature,
          topK: o.topK,
          topP: o.topP,
          minP: o.minP,
          repetitionPenalty: o.penalty,
        }));
        // Picks join the seen ids: set them back so that every draw sees the same row.
        for (let r = 0; r < b; r++) s.setSeen(r, o.seen);
        for (const id of await s.sample(buf, rows)) counts[id]++;
      }
      buf.destroy();
      s.dispose();
      const n = b * calls;
      let chi2 = 0,
        df = -1;
      for (let i = 0; i < V; i++) {
        if (probs[i] === 0) {
          expect(counts[i]).toBe(0);
          continue;
        }
        df++;
        const m = n * probs[i];
        chi2 += (counts[i] - m) ** 2 / m;
        expect(Math.abs(counts[i] - m)).toBeLessThanOrEqual(5 * Math.sqrt(m * (1 - probs[i])) + 1);
      }
      expect(df).toBeGreaterThan(0);
      expect(chi2).toBeLessThan(chi2Bound(df));
    },
    600000,
  );

  test('a seed gives the same ids on every run; a row draws the same alone as in a batch; seeds differ', async () => {
    const V = 3000;
    const l = randomLogits(5, 3 * V, 2);
    const rows = [0, 1, 2].map((r) => ({seenRow: r, seed: 40 + r, step: 9, temperature: 1.5, topP: 0.97}));
    const a = await sampleRows(l, V, rows, [[], [], []]);
    const again = await sampleRows(l, V, rows, [[], [], []]);
    expect(again.ids).toEqual(a.ids);
    for (let r = 0; r < 3; r++) {
      const alone = await sampleRows(l.slice(r * V, (r + 1) * V), V, [{...rows[r], seenRow: 0}]);
      expect(alone.ids[0]).toBe(a.ids[r]);
    }
    // Over 40 steps, two seeds on one row draw different sequences, and each is the same on a rerun.
    const seq = async (seed: number) => {
      const s = new GpuSampler(device(), V, 1, 1);
      const buf = gpuBuffer(l.slice(0, V));
      const out: number[] = [];
      for (let step = 0; step < 40; step++) out.push((await s.sample(buf, [{...rows[0], seed, step}]))[0]);
      buf.destroy();
      s.dispose();
      return out;
    };
    const s1 = await seq(1);
    expect(await seq(1)).toEqual(s1);
    expect(await seq(2)).not.toEqual(s1);
  }, 120000);
});

describeWebGPU('generate samples on the GPU', () => {
  const DIR = path.join(__dirname, '../fixtures/tiny-a');
  const golden = JSON.parse(fs.readFileSync(path.join(DIR, 'golden.json'), 'utf8')).greedy as {
    prompt: number[][];
    sequence: number[][];
  };

  beforeAll(async () => {
    await initNodeWebGPU();
  }, 120000);

  test('top-k 1 at any temperature is the greedy golden; greedy with a penalty is the host’s pick', async () => {
    await tf.setBackend('webgpu');
    const model = await RecurrentGemmaForCausalLM.fromPretrained(DIR);
    const p = golden.prompt[0];
    const steps = golden.sequence[0].length - p.length;
    const out = await model.generate([p], {maxNewTokens: steps, temperature: 0.8, topK: 1, seed: 5, eosTokenId: []});
    expect(out[0]).toEqual(golden.sequence[0]);
    const penalised = {maxNewTokens: 8, temperature: 0, repetitionPenalty: 1.5, eosTokenId: []};
    const gpu = await model.generate([p], penalised);
    model.dispose();
    await tf.setBackend('cpu');
    const cpuModel = await RecurrentGemmaForCausalLM.fromPretrained(DIR);
    expect(await cpuModel.generate([p], penalised)).toEqual(gpu);
    cpuModel.dispose();
    await tf.setBackend('webgpu');
  }, 300000);

  test('seeded generation: the same tokens on a rerun; batch row i draws what it draws alone with seed + i; stops on the host', async () => {
    await tf.setBackend('webgpu');
    const model = await RecurrentGemmaForCausalLM.fromPretrained(DIR);
    const prompts = [
      [2, 17, 33, 90],
      [2, 5, 300, 41],
    ];
    const opts = {
      maxNewTokens: 6,
      temperature: 1.2,
      topP: 0.95,
      topK: 100,
      repetitionPenalty: 1.3,
      seed: 7,
      eosTokenId: [],
    };
    const a = await model.generate(prompts, opts);
    expect(await model.generate(prompts, opts)).toEqual(a);
    const alone = await model.generate([prompts[1]], {...opts, seed: 8});
    expect(alone[0]).toEqual(a[1]);
    // A stop id judged from the ids: row 0 ends on its third token.
    const stop = a[0][prompts[0].length + 2];
    const stopped = await model.generate([prompts[0]], {...opts, stopTokenIds: [stop]});
    const first = a[0].indexOf(stop, prompts[0].length);
    expect(stopped[0]).toEqual(a[0].slice(0, first + 1));
    model.dispose();
  }, 300000);
});
