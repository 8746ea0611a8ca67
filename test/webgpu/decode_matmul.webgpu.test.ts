/**
 * The fused decode engine's large-batch path (src/engines/webgpu_decode/batched_matmul.ts): with
 * 16 or more tuning rows the step's weight products run as tiled matmuls. Random models (float32,
 * compact bfloat16 and int4 with zero points; biases, an untied head, a soft cap) decoding 16 and
 * 20 rows: the prefill's and each step's logits and the final state against decodeStep on the cpu
 * backend, and (float32, bfloat16) against the GEMV path (the threshold off); split-K and whole
 * tiles; and a row's logits and state bit for bit the same in engines of 20, 3 and 1 rows made
 * with the same tuning rows (what src/serve relies on).
 *
 * Tolerances: float32 arithmetic on both sides over the same (unpacked) weight values, sums in
 * other orders and the norm's scale applied after the product: 1e-5 relative, as for the GEMVs.
 */

import type {CompactSpec} from '../../ops/compact/format';
import {RecurrentGemmaConfigArgs} from '../../src/config';
import {disposeFusedDecoders, FusedDecoder, fusedDecodeConfig, fusedDecoderFor} from '../../src/engines/webgpu_decode';
import {decodeMatmulPlan} from '../../src/engines/webgpu_decode/batched_matmul';
import {decodeMatmulConfig} from '../../src/engines/webgpu_decode/tuning';
import {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {initNodeWebGPU} from '../../src/webgpu_node';
import {relError} from '../helpers';
import {describeWebGPU} from '../webgpu_env'; // first: sets the SwiftShader env before Dawn loads
import {uniform} from './kernel_helpers';

const TOL = 1e-5;

const CFG: RecurrentGemmaConfigArgs = {
  vocab_size: 160,
  hidden_size: 128,
  lru_width: 128,
  intermediate_size: 512,
  num_attention_heads: 4,
  num_key_value_heads: 1,
  num_hidden_layers: 3,
  attention_window_size: 6,
  block_types: ['recurrent', 'attention'],
  attention_bias: true,
  tie_word_embeddings: false,
  logits_soft_cap: 10,
};

const DTYPES: [string, CompactSpec | null][] = [
  ['float32', null],
  ['bfloat16', {dtype: 'bfloat16'}],
  ['int4 g32 zero points', {dtype: 'int4', groupSize: 32, zeroPoints: true}],
];

/** A model with seeded random weights (packed when compact): the same values on every backend. */
function makeModel(spec: CompactSpec | null): RecurrentGemmaForCausalLM {
  const model = new RecurrentGemmaForCausalLM(CFG, spec ? {compact: spec} : {});
  let k = 0;
  for (const [name, v] of model.namedParameters()) {
    const shape = v.shape as number[];
    const n = shape.reduce((a, b) => a * b, 1);
    let data: Float32Array;
    if (name.endsWith('recurrent_param')) {
      // a = exp(-8 softplus(p)) in [0.8, 0.999].
      data = uniform(700 + k, n, 0.8, 0.999).map((a) => Math.log(Math.exp(-Math.log(a) / 8) - 1));
    } else {
      const lim = shape.length === 1 ? 0.5 : name.includes('conv_1d') ? 0.6 : Math.sqrt(3 / shape[shape.length - 1]);
      data = uniform(700 + k, n, -lim, lim);
    }
    k++;
    const t = tf.tensor(data, shape);
    v.write(t);
    t.dispose();
  }
  return model;
}

const prompts = (b: number) => Array.from({length: b}, (_, r) => [2, 5 + r, (9 * r) % 150, 11 + 2 * r]);
const ids = (b: number, i: number) => Array.from({length: b}, (_, r) => (3 + i * 37 + r * 11) % CFG.vocab_size!);

/** Logits of each step and the final state's tensors, on the current backend. */
async function decodeRun(
  spec: CompactSpec | null,
  b: number,
  steps: number,
): Promise<{logits: Float32Array[]; state: Float32Array[]; engine: FusedDecoder | null; used: boolean}> {
  const model = makeModel(spec);
  const state = model.prefill(prompts(b));
  // The prefill's logits too: the fused prefill hands its last rows to the engine's head dispatches.
  const logits: Float32Array[] = [Float32Array.from((await state.logits.data()) as Float32Array)];
  let used = true,
    engine: FusedDecoder | null = null;
  for (let i = 0; i < steps; i++) {
    const eng = tf.getBackend() === 'webgpu' ? fusedDecoderFor(model, b) : null;
    const out = model.decodeStep(state, ids(b, i)).logits;
    if (tf.getBackend() === 'webgpu') used = used && eng != null && eng.owner === (state as unknown);
    engine = eng;
    logits.push(Float32Array.from((await out.data()) as Float32Array));
    out.dispose();
  }
  const st: Float32Array[] = [];
  for (const l of state.layers) {
    for (const t of Object.values(l as unknown as Record<string, tf.Tensor>)) {
      if (t instanceof tf.Tensor) st.push(Float32Array.from((await t.data()) as Float32Array));
    }
  }
  const names = engine?.dispatchNames;
  state.dispose();
  disposeFusedDecoders(model);
  model.dispose();
  return {logits, state: st, engine: names ? ({dispatchNames: names} as FusedDecoder) : null, used};
}

function worst(a: Float32Array[], b: Float32Array[]): number {
  expect(a.length).toBe(b.length);
  return Math.max(...a.map((x, i) => relError(x, b[i])));
}

describeWebGPU('fused decode: weight products as tiled matmuls past 16 tuning rows', () => {
  beforeAll(async () => {
    await initNodeWebGPU();
    fusedDecodeConfig.enabled = true;
  });
  afterAll(() => {
    fusedDecodeConfig.enabled = null;
    decodeMatmulConfig.rows = 0;
  });
  // The threshold these cases test (the default is 32): 16 and 20 rows take the matmul path.
  beforeEach(() => {
    decodeMatmulConfig.rows = 16;
  });
  afterEach(() => {
    decodeMatmulConfig.rows = 0;
  });

  test('tiles follow the tuning rows (16 x 128, 32 x 128); split-K, then narrower tiles, for few columns', () => {
    const bf16 = {dtype: 'bfloat16', groupSize: 0, zeroPoints: false} as const;
    const env = (name: string, v: string | null) => {
      if (v == null) delete process.env[name];
      else process.env[name] = v;
    };
    const keep = ['GRIFFIN_DECODE_MM_WG', 'GRIFFIN_DECODE_MM', 'GRIFFIN_DECODE_MM_SPLIT'].map(
      (n) => [n, process.env[n] ?? null] as const,
    );
    const plan = (R: number, N: number, K: number, P: 1 | 2 = 1, shared = 32768) => {
      const p = decodeMatmulPlan(R, N, K, bf16, P, shared);
      return {...p.tuning, split: p.split};
    };
    try {
      env('GRIFFIN_DECODE_MM', null);
      env('GRIFFIN_DECODE_MM_SPLIT', null);
      env('GRIFFIN_DECODE_MM_WG', '0');
      expect(plan(16, 4096, 2560)).toMatchObject({bm: 16, bn: 128, tm: 4, tn: 4, split: 1});
      expect(plan(20, 4096, 2560)).toMatchObject({bm: 32, bn: 128, tm: 8, tn: 4, split: 1});
      // GeGLU at 32 x 128 needs 18 KB: narrowed to fit 16 KB.
      expect(plan(32, 7680, 2560, 2, 16384)).toMatchObject({bm: 32, bn: 64, split: 1});
      expect(plan(200, 4096, 2560)).toMatchObject({bm: 128, bn: 64, tm: 8, tn: 4, split: 1});
      env('GRIFFIN_DECODE_MM_WG', '132');
      // 2560 columns: 20 tiles of 128, x 8 slices of 320 (20 K steps).
      expect(plan(32, 2560, 2560)).toMatchObject({bm: 32, bn: 128, tm: 8, split: 8});
      // 4 K steps per slice at least: 128 inputs are split in 2 only.
      expect(plan(32, 2560, 128)).toMatchObject({split: 2});
      // The vocabulary: enough tiles.
      expect(plan(32, 256000, 2560)).toMatchObject({bm: 32, bn: 128, split: 1});
      env('GRIFFIN_DECODE_MM_SPLIT', '1');
      // No split: 4 x 4 per thread, then halved to 16 columns (160 workgroups).
      expect(plan(32, 2560, 2560)).toMatchObject({bm: 32, bn: 16, tm: 4, split: 1});
      env('GRIFFIN_DECODE_MM_SPLIT', null);
      env('GRIFFIN_DECODE_MM', 'bn=64,tm=4');
      expect(plan(32, 2560, 2560)).toMatchObject({bm: 32, bn: 64, tm: 4, split: 4});
      env('GRIFFIN_DECODE_MM', 'bn=zz');
      expect(() => plan(32, 2560, 2560)).toThrow(/bad knob "bn=zz"/);
      env('GRIFFIN_DECODE_MM', null);
      env('GRIFFIN_DECODE_MM_SPLIT', '100');
      expect(() => plan(32, 2560, 2560)).toThrow(
        /^GRIFFIN_DECODE_MM_SPLIT must be an integer in \[1, 64\], got "100"$/,
      );
    } finally {
      for (const [n, v] of keep) env(n, v);
    }
  });

  describe.each(DTYPES)('%s weights', (_n, spec) => {
    test.each([16, 20])(
      `%i rows: logits and state equal decodeStep on cpu and the GEMV path (${TOL})`,
      async (b) => {
        const steps = 4;
        await tf.setBackend('cpu');
        const cpu = await decodeRun(spec, b, steps);
        await tf.setBackend('webgpu');
        const mm = await decodeRun(spec, b, steps);
        // The GEMV path too (int4's GEMVs of 16+ rows are slow on SwiftShader: cpu only).
        decodeMatmulConfig.rows = -1;
        const gemv = spec?.dtype === 'int4' ? null : await decodeRun(spec, b, steps);
        expect(mm.used && (gemv?.used ?? true)).toBe(true);
        // Every GEMV replaced (the recurrent block's x | y as two products), split-K (the model is
        // narrow: one tile per product), and none without the threshold.
        const names = mm.engine!.dispatchNames;
        expect(names).toContain('L0.xy@mm1');
        for (const k of ['L0.out@mm-sum', 'L1.qkv@mm2', 'L1.o@mm', 'L2.down@mm-sum', 'head@mm-sum'])
          expect(names).toContain(k);
        // GeGLU: one product (int4 with zero points: gate and up, past the 8 bindings).
        for (const li of [0, 1, 2])
          expect(names.some((n) => n.startsWith(`L${li}.gateup@mm`) && n.endsWith('-sum'))).toBe(true);
        if (gemv != null) expect(gemv.engine!.dispatchNames.some((n) => n.includes('@mm'))).toBe(false);
        expect(worst(mm.logits, cpu.logits)).toBeLessThan(TOL);
        expect(worst(mm.state, cpu.state)).toBeLessThan(TOL);
        if (gemv != null) {
          expect(worst(mm.logits, gemv.logits)).toBeLessThan(TOL);
          expect(worst(mm.state, gemv.state)).toBeLessThan(TOL);
        }
      },
      900_000,
    );
  });

  test.each(DTYPES.filter(([n]) => n !== 'bfloat16'))(
    `%s, 16 rows without split-K (whole tiles; int4: GeGLU as two products): equal decodeStep on cpu (${TOL})`,
    async (_n, spec) => {
      await tf.setBackend('cpu');
      const cpu = await decodeRun(spec, 16, 3);
      await tf.setBackend('webgpu');
      process.env.GRIFFIN_DECODE_MM_SPLIT = '1';
      try {
        const mm = await decodeRun(spec, 16, 3);
        expect(mm.used).toBe(true);
        const names = mm.engine!.dispatchNames;
        expect(names.some((n) => n.endsWith('-sum'))).toBe(false);
        expect(names).toContain(spec == null ? 'L0.gateup@mm' : 'L0.gateup@mm-up');
        expect(worst(mm.logits, cpu.logits)).toBeLessThan(TOL);
        expect(worst(mm.state, cpu.state)).toBeLessThan(TOL);
      } finally {
        delete process.env.GRIFFIN_DECODE_MM_SPLIT;
      }
    },
    900_000,
  );

  test('a row has the same bits in engines of 20, 3 and 1 rows tuned for 20', async () => {
    await tf.setBackend('webgpu');
    const model = makeModel({dtype: 'bfloat16'});
    const R = 20,
      steps = 3;
    const V = CFG.vocab_size!;
    /** Per step, the logits of the rows `rows` (ids and positions as in the 20-row engine); and the state. */
    const run = async (rows: number[]) => {
      const eng = new FusedDecoder(model, rows.length, {tuningRows: R});
      const out: Float32Array[] = [];
      try {
        for (let k = 0; k < steps; k++) {
          const all = ids(R, k);
          const l = eng.step(
            rows.map((r) => all[r]),
            rows.map(() => k),
          );
          out.push(Float32Array.from((await l.data()) as Float32Array));
          l.dispose();
        }
        const layers = eng.exportLayers();
        const st: Float32Array[] = [];
        for (const l of layers) {
          for (const t of Object.values(l as unknown as Record<string, tf.Tensor>)) {
            if (t instanceof tf.Tensor) st.push(Float32Array.from((await t.data()) as Float32Array));
          }
        }
        tf.dispose(layers.flatMap((l) => Object.values(l as unknown as Record<string, tf.Tensor>)));
        return {out, st, names: eng.dispatchNames};
      } finally {
        eng.dispose();
      }
    };
    const same = (a: Float32Array, b: Float32Array) => a.length === b.length && a.every((x, i) => Object.is(x, b[i]));
    try {
      const all = await run(Array.from({length: R}, (_, r) => r));
      expect(all.names).toContain('L0.xy@mm1-sum'); // the matmul path, split-K
      for (const rows of [[5, 6, 7], [19], [0]]) {
        const part = await run(rows);
        rows.forEach((r, j) => {
          for (let k = 0; k < steps; k++) {
            expect(same(part.out[k].subarray(j * V, (j + 1) * V), all.out[k].subarray(r * V, (r + 1) * V))).toBe(true);
          }
          // Each state tensor is [b, ...]: row j of the part against row r of the whole.
          all.st.forEach((whole, i) => {
            const per = whole.length / R;
            expect(same(part.st[i].subarray(j * per, (j + 1) * per), whole.subarray(r * per, (r + 1) * per))).toBe(
              true,
            );
          });
        });
      }
    } finally {
      model.dispose();
    }
  }, 900_000);
});
