/**
 * The prefill engine's tiled matmul: out = epilogue([rmsnorm](x) W^T + bias) for M token rows
 * (read from the `dims` buffer, so one pipeline serves every chunk length), W in PyTorch's
 * [out, in] layout, float32 or compact (bfloat16, float16, int8, int4; unpacked with the decode
 * engine's helpers, webgpu_decode/shaders/weights.ts), or block-diagonal float32 [blocks, K, N];
 * or split-K (kSplit: each grid z a slice of K, raw partial sums side by side; the decode engine's
 * large-batch products, webgpu_decode/batched_matmul.ts).
 *   const weight = {dtype: 'float32', groupSize: 0, zeroPoints: false} as const;
 *   const spec: MatmulSpec = {N: 7680, K: 2560, weight, norm: {eps: 1e-6}, bias: true, epilogue: 'geglu'};
 *   const code = matmulSource(spec);   const names = matmulBindings(spec);   const grid = matmulGrid(spec, 2048);
 *
 * A workgroup computes a BM x BN tile of out with (BM / TM) x (BN / TN) threads, each holding
 * TM x TN accumulators (register blocking). Per K-step of BK it loads the x tile [BM, BK] and the
 * weight tile [BN, BK] (vec4 loads; compact words unpacked, scaled, once per tile element, so the
 * unpacking is shared by the tile's BM rows) into workgroup memory, transposed to k-major (consecutive
 * threads take consecutive rows of a tile, so that those stores fall in distinct banks), then
 * each thread multiplies TM / 4 + TN / 4 vec4s of it per k. With `prefetch` the next K-step's
 * global loads are issued before the current step's arithmetic (held in registers); with
 * `buffers` 2 the tiles are double buffered (one barrier per K-step instead of two).
 * The fused norm: each thread sums x^2 of the x rows it loads over all of K, multiplies x by
 * (1 + g[k]) as stored; the partial sums meet in workgroup memory after the loop, and the
 * finished rows are scaled by 1 / sqrt(mean + eps).
 *
 * Bindings (matmulBindings, in order): dims (array<u32>: dims[0] = M; no other word is read),
 * x, [g], w0, [w1 (geglu's up)], [s0, [s1]: int8 row / int4 group scales], [z0, [z1]: int4 zero
 * points], [bias], out. Epilogues: store, gelu, residual (out += v), mul (out *= v), geglu, softcap.
 * WebGPU's default is 8 storage buffers per stage (tfjs opens the device with it): a GeGLU with
 * int8 / int4 weights, the norm and a bias needs 9 (with zero points 11), so it runs as two
 * dispatches, gelu (w0, bias[:N]) then mul (w1, bias[N:]) on the same out: check matmulBindings.
 * N and K must be multiples of 4, and so must xStride, xOffset (vec4 loads of x); M is any >= 0.
 *
 * Tuning (MatmulTuning; each knob: the argument's value if given, else GRIFFIN_PREFILL_MM, else
 * the default): GRIFFIN_PREFILL_MM=bm=128,bn=64,bk=16,tm=8,tn=4,prefetch=1,buffers=1,words=0,group=8.
 * The benchmark that chose the defaults: bench/prefill_matmul.ts (figures in bench/results/NOTES.md).
 *
 * Shape letters: M token rows, N output columns, K inner size, BM/BN/BK the tile, TM/TN each
 * thread's outputs, T threads per workgroup, L weight values per compact load, G int4 groups per row.
 */
import {COMMON_WGSL, f32} from '../../webgpu_decode/shaders/common';
import {hasScales, slotLoad, valuesPerWord, type WeightFormat} from '../../webgpu_decode/shaders/weights';

export type MatmulEpilogue = 'store' | 'gelu' | 'residual' | 'mul' | 'geglu' | 'softcap';

export interface MatmulSpec {
  /** Output columns = the weight's rows ([out, in] layout, y = x W^T). */
  N: number;
  /** Inner size = the weight's columns. */
  K: number;
  weight: WeightFormat;
  /** Fused RMSNorm of each x row: x * rsqrt(mean(x^2) + eps) * (1 + g[k]); binding 'g' [K]. */
  norm?: {eps: number};
  /** Binding 'bias' [N] (geglu: [2N], gate's then up's; blocks: [blocks * N]). */
  bias?: boolean;
  epilogue: MatmulEpilogue;
  /** softcap: out = cap * tanh(v / cap). */
  cap?: number;
  /** x row stride / column offset in floats (default K, or blocks * K; 0). */
  xStride?: number;
  xOffset?: number;
  /** out row stride / column offset in floats (default N, or blocks * N; 0). */
  outStride?: number;
  outOffset?: number;
  /** Block-diagonal: x [M, blocks*K], w [blocks, K, N] float32 ('kn'), out [M, blocks*N]; grid z = block. */
  blocks?: number;
  /**
   * Split-K: the K steps in kSplit equal slices (ceil(K / bk) a multiple of kSplit), grid z = slice;
   * slice z stores its partial product at out column z * N (out [M, kSplit * N] by default): epilogue
   * 'store', no norm, no bias (the caller sums the slices and finishes). Not with blocks.
   */
  kSplit?: number;
}

export interface MatmulTuning {
  /** Tile rows (of M) and columns (of N) per workgroup, K-step. */
  bm: number;
  bn: number;
  bk: number;
  /** Outputs per thread: rows, columns (multiples of 4). */
  tm: number;
  tn: number;
  /** Issue the next K-step's global loads before this step's arithmetic. */
  prefetch: boolean;
  /** Tiles in workgroup memory: 1, or 2 (double buffering; implies prefetch). */
  buffers: 1 | 2;
  /** Compact weights: 32-bit words per load (1, 2 or 4; 0 = the widest that fits BK). */
  words: number;
  /**
   * Workgroup order: runs of `group` M tiles sweep the N tiles together, so that a weight tile is
   * read by that many M tiles while it is in L2 (0 or 1: row by row).
   */
  group: number;
}

/** The defaults (see the header; 12 KB of workgroup memory, 16 KB for geglu: within WebGPU's minimum limit). */
export const MATMUL_DEFAULTS: Readonly<MatmulTuning> = {
  bm: 128,
  bn: 64,
  bk: 16,
  tm: 8,
  tn: 4,
  prefetch: true,
  buffers: 1,
  words: 0,
  group: 8,
};

const KNOBS = Object.keys(MATMUL_DEFAULTS) as (keyof MatmulTuning)[];

/** A tuning from text like 'bm=64,bn=64,tm=4' (the env variable's form); throws a one-line error on a bad knob. */
export function parseMatmulTuning(text: string): Partial<MatmulTuning> {
  const out: Record<string, number | boolean> = {};
  for (const part of text.split(',').map((p) => p.trim())) {
    if (part === '') continue;
    const [k, v] = part.split('=');
    if (!(KNOBS as string[]).includes(k) || v == null || !/^\d+$/.test(v.trim())) {
      throw new Error(`prefill matmul tuning: bad knob "${part}" (expected ${KNOBS.map((n) => `${n}=N`).join(',')})`);
    }
    out[k] = k === 'prefetch' ? v.trim() !== '0' : Number(v);
  }
  return out as Partial<MatmulTuning>;
}

function envTuning(): Partial<MatmulTuning> {
  const v = typeof process !== 'undefined' ? process.env?.GRIFFIN_PREFILL_MM : undefined;
  return v ? parseMatmulTuning(v) : {};
}

/** The tuning a kernel is made with: defaults < GRIFFIN_PREFILL_MM < `tuning`; throws a one-line error if invalid. */
export function matmulTuning(spec: MatmulSpec, tuning: Partial<MatmulTuning> = {}): MatmulTuning {
  const t: MatmulTuning = {...MATMUL_DEFAULTS, ...envTuning(), ...tuning};
  if (t.buffers === 2) t.prefetch = true;
  const bad = (why: string) => new Error(`prefill matmul tuning ${JSON.stringify(t)}: ${why}`);
  const pow2 = (x: number) => Number.isInteger(x) && x > 0 && (x & (x - 1)) === 0;
  if (![t.bm, t.bn, t.bk, t.tm, t.tn].every(pow2)) throw bad('bm, bn, bk, tm, tn must be powers of two');
  if (t.tm < 4 || t.tn < 4 || t.tm > 16 || t.tn > 16) throw bad('tm and tn must be 4, 8 or 16');
  if (t.bm % t.tm !== 0 || t.bn % t.tn !== 0) throw bad('tm must divide bm and tn divide bn');
  if (t.bk < 4 || t.bk > 64) throw bad('bk must be 4..64');
  if (t.buffers !== 1 && t.buffers !== 2) throw bad('buffers must be 1 or 2');
  const T = (t.bm / t.tm) * (t.bn / t.tn);
  if (T < 16 || T > 256) throw bad(`${T} threads per workgroup (16..256)`);
  if (![0, 1, 2, 4].includes(t.words)) throw bad('words must be 0, 1, 2 or 4');
  if (!Number.isInteger(t.group) || t.group < 0 || t.group > 64) throw bad('group must be 0..64');
  if (spec.weight.dtype !== 'float32' && spec.blocks == null) compactLoad(spec, t);
  return t;
}

/** Smaller tiles for few rows, largest first (matmulTuningFor). */
const SMALLER: Partial<MatmulTuning>[] = [
  {bm: 64, bn: 64, bk: 16, tm: 4, tn: 4},
  {bm: 32, bn: 64, bk: 16, tm: 4, tn: 4},
  {bm: 32, bn: 32, bk: 16, tm: 4, tn: 4},
];

/**
 * A tuning for chunks of about M rows: the defaults, or where they leave fewer than `minWorkgroups`
 * workgroups (default 264: two per SM of an H200) the first smaller tile that gives that many (else
 * the smallest). GRIFFIN_PREFILL_MM set: {} (the env variable decides).
 */
export function matmulTuningFor(spec: MatmulSpec, M: number, minWorkgroups = 264): Partial<MatmulTuning> {
  if (Object.keys(envTuning()).length > 0) return {};
  const count = (t: Partial<MatmulTuning>) => matmulGrid(spec, M, t).reduce((a, b) => a * b, 1);
  if (count({}) >= minWorkgroups) return {};
  return SMALLER.find((t) => count(t) >= minWorkgroups) ?? SMALLER[SMALLER.length - 1];
}

/** Compact weights: the load of `words` words (L values) the tile uses. */
function compactLoad(spec: MatmulSpec, t: MatmulTuning) {
  const k = valuesPerWord(spec.weight);
  const fits = (w: number) => (w * k) % 4 === 0 && w * k <= t.bk && t.bk % (w * k) === 0 && spec.K % (w * k) === 0;
  const w = t.words > 0 ? t.words : [4, 2, 1].find(fits);
  if (w == null || !fits(w)) {
    throw new Error(`prefill matmul: ${spec.weight.dtype} loads of ${t.words || 'any'} words do not fit bk=${t.bk}`);
  }
  return slotLoad(spec.weight, w);
}

/** Binding names in order. */
export function matmulBindings(spec: MatmulSpec): string[] {
  const two = spec.epilogue === 'geglu';
  const per = (c: string) => (two ? [`${c}0`, `${c}1`] : [`${c}0`]);
  return [
    'dims',
    'x',
    ...(spec.norm ? ['g'] : []),
    ...per('w'),
    ...(hasScales(spec.weight) ? per('s') : []),
    ...(spec.weight.zeroPoints ? per('z') : []),
    ...(spec.bias ? ['bias'] : []),
    'out',
  ];
}

/** Workgroups for M rows: [N tiles, M tiles, blocks]. */
export function matmulGrid(spec: MatmulSpec, M: number, tuning?: Partial<MatmulTuning>): [number, number, number] {
  const t = matmulTuning(spec, tuning);
  return [Math.ceil(spec.N / t.bn), Math.max(1, Math.ceil(M / t.bm)), spec.blocks ?? spec.kSplit ?? 1];
}

/** Bytes of workgroup memory the kernel declares. */
export function matmulSharedBytes(spec: MatmulSpec, tuning?: Partial<MatmulTuning>): number {
  const t = matmulTuning(spec, tuning);
  const P = spec.epilogue === 'geglu' ? 2 : 1;
  return 4 * t.buffers * t.bk * (t.bm + P * t.bn);
}

/** Throws a one-line error for a spec the kernel cannot run. */
function checkSpec(spec: MatmulSpec): void {
  const {N, K, weight: fmt} = spec;
  const bad = (why: string) => new Error(`prefill matmul: ${why}`);
  const mult4 = (x: number) => Number.isInteger(x) && x > 0 && x % 4 === 0;
  if (!mult4(N) || !mult4(K)) throw bad(`N and K must be positive multiples of 4, got N=${N}, K=${K}`);
  const B = spec.blocks ?? 1;
  if (spec.kSplit != null) {
    const S = spec.kSplit;
    if (!Number.isInteger(S) || S < 1 || S > 64) throw bad(`kSplit must be an integer in [1, 64], got ${S}`);
    if (spec.blocks != null || spec.norm || spec.bias || spec.epilogue !== 'store') {
      throw bad('split-K products store raw partial sums: no blocks, norm, bias or epilogue');
    }
  }
  if (spec.blocks != null) {
    if (!Number.isInteger(B) || B < 1) throw bad(`blocks must be a positive integer, got ${B}`);
    if (fmt.dtype !== 'float32') throw bad('block-diagonal weights are float32 only');
    if (spec.norm) throw bad('block-diagonal products take no fused norm');
    if (spec.epilogue === 'geglu') throw bad('block-diagonal products have no geglu epilogue');
  }
  const xs = spec.xStride ?? B * K,
    xo = spec.xOffset ?? 0;
  if (!Number.isInteger(xs) || !Number.isInteger(xo) || xs % 4 !== 0 || xo % 4 !== 0 || xo < 0) {
    throw bad(`xStride and xOffset must be multiples of 4, got ${xs}, ${xo}`);
  }
  if (xo + B * K > xs) throw bad(`x rows of stride ${xs} cannot hold ${B * K} values from column ${xo}`);
  const Z = spec.blocks ?? spec.kSplit ?? 1;
  const os = spec.outStride ?? Z * N,
    oo = spec.outOffset ?? 0;
  if (!Number.isInteger(os) || !Number.isInteger(oo) || oo < 0) throw bad(`bad outStride/outOffset ${os}, ${oo}`);
  if (oo + Z * N > os) throw bad(`out rows of stride ${os} cannot hold ${Z * N} values from column ${oo}`);
  if (spec.epilogue === 'softcap' && !(spec.cap != null && spec.cap > 0)) throw bad('softcap needs a cap > 0');
  if (fmt.dtype !== 'float32' && K % valuesPerWord(fmt) !== 0) throw bad(`${fmt.dtype} rows of ${K} values`);
  if (fmt.dtype === 'int4' && K % fmt.groupSize !== 0) throw bad(`group size ${fmt.groupSize} does not divide K=${K}`);
  if (spec.norm && !(spec.norm.eps >= 0)) throw bad(`norm eps must be >= 0, got ${spec.norm.eps}`);
}

export function matmulSource(spec: MatmulSpec, tuning?: Partial<MatmulTuning>): string {
  checkSpec(spec);
  const tu = matmulTuning(spec, tuning);
  const {N, K, weight: fmt} = spec;
  const {bm: BM, bn: BN, bk: BK, tm: TM, tn: TN} = tu;
  const NB = spec.blocks ?? 1;
  const kn = spec.blocks != null;
  const compact = fmt.dtype !== 'float32';
  const load = compact && !kn ? compactLoad(spec, tu) : null;
  const L = load?.K ?? 4; // weight values per load along k (kn layout: along n)
  const P = spec.epilogue === 'geglu' ? 2 : 1;
  const TX = BN / TN,
    TY = BM / TM;
  const T = TX * TY;
  const XV = BK / 4; // vec4s of x per tile row
  const xStride = spec.xStride ?? NB * K,
    xOffset = spec.xOffset ?? 0;
  const SK = spec.kSplit ?? 1;
  const outStride = spec.outStride ?? NB * SK * N,
    outOffset = spec.outOffset ?? 0;
  const outVec = outStride % 4 === 0 && outOffset % 4 === 0;
  // K steps per workgroup (split-K: its slice's, from k = kb).
  const nK = Math.ceil(K / BK) / SK;
  if (!Number.isInteger(nK)) throw new Error(`prefill matmul: ${Math.ceil(K / BK)} K steps do not split in ${SK}`);
  const KB = SK > 1 ? 'kb' : '0u';
  const guardN = N % BN !== 0;
  const guardK = K % BK !== 0;
  const bufs = tu.buffers;
  const prefetch = tu.prefetch || bufs === 2;
  const XT = (BK * BM) / 4,
    WT = (BK * BN) / 4; // vec4s per tile
  const G = fmt.dtype === 'int4' ? K / fmt.groupSize : 0;

  const names = matmulBindings(spec);
  const decl = names
    .map((name, i) => {
      let ty = 'array<vec4<f32>>';
      if (name === 'dims') ty = 'array<u32>';
      else if (name.startsWith('w') && load != null) ty = `array<${load.type}>`;
      else if (name.startsWith('s') || name.startsWith('z')) ty = 'array<f32>';
      else if (name === 'out' && !outVec) ty = 'array<f32>';
      const access = name === 'out' ? 'read_write' : 'read';
      return `@group(0) @binding(${i}) var<storage, ${access}> ${name} : ${ty};`;
    })
    .join('\n');

  // ---- global loads into registers (px*, pw*), then stores into workgroup memory ----
  const LX = BM * XV; // x loads per tile
  const nLX = Math.ceil(LX / T);
  const LWrow = kn ? BN / 4 : BK / L; // loads per weight-tile row (kn: per k row)
  const LW = kn ? BK * LWrow : BN * LWrow;
  const nLW = Math.ceil(LW / T);
  const guardIdx = (n: number, total: number, l: number) => (l === n - 1 && total % T !== 0 ? `idx < ${total}u` : '');
  const conds = (...c: string[]) => c.filter((s) => s !== '').join(' && ') || 'true';

  const loadX = (k0: string) => {
    const L2: string[] = [];
    for (let l = 0; l < nLX; l++) {
      L2.push(`{ let idx = t + ${l * T}u; let r = idx % ${BM}u; let k = ${k0} + (idx / ${BM}u) * 4u; let m = m0 + r;`);
      const c = conds(guardIdx(nLX, LX, l), 'm < M', guardK ? `k < ${K}u` : '');
      L2.push(`  px${l} = vec4<f32>(0.0);`);
      L2.push(`  if (${c}) { px${l} = x[(m * ${xStride}u + xcol + k) / 4u]; } }`);
    }
    return L2;
  };
  const storeX = (k0: string, buf: string) => {
    const L2: string[] = [];
    for (let l = 0; l < nLX; l++) {
      const inner: string[] = [];
      inner.push(`let idx = t + ${l * T}u; let r = idx % ${BM}u; let kl = (idx / ${BM}u) * 4u;`);
      let v = `px${l}`;
      if (spec.norm) {
        inner.push(`sq${l} = sq${l} + dot(px${l}, px${l});`);
        const gk = guardK
          ? `select(vec4<f32>(0.0), g[min(${k0} + kl, ${K - 4}u) / 4u], ${k0} + kl < ${K}u)`
          : `g[(${k0} + kl) / 4u]`;
        inner.push(`let xv = px${l} * (vec4<f32>(1.0) + ${gk});`);
        v = 'xv';
      }
      for (let c = 0; c < 4; c++) inner.push(`xs[${buf} + (kl + ${c}u) * ${BM / 4}u + r / 4u][r % 4u] = ${v}[${c}];`);
      const g = guardIdx(nLX, LX, l);
      L2.push(g ? `{ let idx0 = t + ${l * T}u; if (idx0 < ${LX}u) { ${inner.join(' ')} } }` : `{ ${inner.join(' ')} }`);
    }
    return L2;
  };

  const loadW = (k0: string) => {
    const L2: string[] = [];
    for (let l = 0; l < nLW; l++) {
      for (let p = 0; p < P; p++) {
        const pw = `pw${p}_${l}`;
        if (kn) {
          // [blocks, K, N]: row k of the tile, 4 columns.
          L2.push(
            `{ let idx = t + ${l * T}u; let kr = idx / ${LWrow}u; let n = n0 + (idx % ${LWrow}u) * 4u; let k = ${k0} + kr;`,
          );
          const c = conds(guardIdx(nLW, LW, l), guardN ? `n < ${N}u` : '', guardK ? `k < ${K}u` : '');
          L2.push(`  ${pw} = vec4<f32>(0.0);`);
          L2.push(`  if (${c}) { ${pw} = w${p}[(blk * ${K * N}u + k * ${N}u + n) / 4u]; } }`);
        } else {
          L2.push(`{ let idx = t + ${l * T}u; let n = n0 + idx % ${BN}u; let k = ${k0} + (idx / ${BN}u) * ${L}u;`);
          const c = conds(guardIdx(nLW, LW, l), guardN ? `n < ${N}u` : '', guardK ? `k < ${K}u` : '');
          if (load == null) {
            L2.push(`  ${pw} = vec4<f32>(0.0);`);
            L2.push(`  if (${c}) { ${pw} = w${p}[(n * ${K}u + k) / 4u]; } }`);
          } else {
            L2.push(`  ${pw} = ${load.type}();`);
            if (fmt.dtype === 'int8') L2.push(`  sc${p}_${l} = 0.0;`);
            if (fmt.dtype === 'int4') L2.push(`  sc${p}_${l} = 0.0; zp${p}_${l} = 8.0;`);
            const extra: string[] = [];
            if (fmt.dtype === 'int8') extra.push(`sc${p}_${l} = s${p}[n];`);
            if (fmt.dtype === 'int4') {
              extra.push(`let gi = n * ${G}u + k / ${fmt.groupSize}u; sc${p}_${l} = s${p}[gi];`);
              if (fmt.zeroPoints) extra.push(`zp${p}_${l} = z${p}[gi];`);
            }
            L2.push(`  if (${c}) { ${pw} = w${p}[(n * ${K}u + k) / ${L}u]; ${extra.join(' ')} } }`);
          }
        }
      }
    }
    return L2;
  };
  const storeW = (buf: string) => {
    const L2: string[] = [];
    for (let l = 0; l < nLW; l++) {
      const inner: string[] = [`let idx = t + ${l * T}u;`];
      for (let p = 0; p < P; p++) {
        const pw = `pw${p}_${l}`;
        if (kn) {
          inner.push(`ws${p}[${buf} + idx] = ${pw};`);
        } else if (load == null) {
          inner.push(`{ let nl = idx % ${BN}u; let kl = (idx / ${BN}u) * 4u;`);
          for (let c = 0; c < 4; c++)
            inner.push(`ws${p}[${buf} + (kl + ${c}u) * ${BN / 4}u + nl / 4u][nl % 4u] = ${pw}[${c}];`);
          inner.push('}');
        } else {
          inner.push(`{ let nl = idx % ${BN}u; let kl = (idx / ${BN}u) * ${L}u;`);
          const vecs = load.unpack(pw, `zp${p}_${l}`);
          const scale = fmt.dtype === 'int8' || fmt.dtype === 'int4' ? ` * sc${p}_${l}` : '';
          vecs.forEach((e, j) => {
            inner.push(`let u${j} = (${e})${scale};`);
            for (let c = 0; c < 4; c++) {
              inner.push(`ws${p}[${buf} + (kl + ${j * 4 + c}u) * ${BN / 4}u + nl / 4u][nl % 4u] = u${j}[${c}];`);
            }
          });
          inner.push('}');
        }
      }
      const g = guardIdx(nLW, LW, l);
      L2.push(g ? `{ let idx0 = t + ${l * T}u; if (idx0 < ${LW}u) { ${inner.join(' ')} } }` : `{ ${inner.join(' ')} }`);
    }
    return L2;
  };

  // ---- the arithmetic of one K-step from workgroup memory ----
  const compute = (xb: string, wb: string) => {
    const L2: string[] = [];
    L2.push(`for (var kk = 0u; kk < ${BK}u; kk = kk + 1u) {`);
    for (let q = 0; q < TM / 4; q++) L2.push(`  let a${q} = xs[${xb} + kk * ${BM / 4}u + ty * ${TM / 4}u + ${q}u];`);
    for (let p = 0; p < P; p++) {
      for (let r = 0; r < TN / 4; r++)
        L2.push(`  let b${p}_${r} = ws${p}[${wb} + kk * ${BN / 4}u + tx * ${TN / 4}u + ${r}u];`);
    }
    for (let p = 0; p < P; p++) {
      for (let i = 0; i < TM; i++) {
        const a = `a${i >> 2}[${i & 3}]`;
        for (let r = 0; r < TN / 4; r++) {
          const acc = `acc${p}_${i}_${r}`;
          L2.push(`  ${acc} = fma(vec4<f32>(${a}), b${p}_${r}, ${acc});`);
        }
      }
    }
    L2.push('}');
    return L2;
  };

  // ---- the K loop ----
  const body: string[] = [];
  const xBuf = (b: string) => (bufs === 2 ? `${b} * ${XT}u` : '0u');
  const wBuf = (b: string) => (bufs === 2 ? `${b} * ${WT}u` : '0u');
  if (!prefetch) {
    body.push(`for (var kt = 0u; kt < ${nK}u; kt = kt + 1u) {`, `  let k0 = ${KB} + kt * ${BK}u;`);
    body.push(...loadX('k0'), ...loadW('k0'), ...storeX('k0', '0u'), ...storeW('0u'));
    body.push('  workgroupBarrier();', ...compute('0u', '0u'), '  workgroupBarrier();', '}');
  } else if (bufs === 1) {
    body.push(...loadX(KB), ...loadW(KB));
    body.push(`for (var kt = 0u; kt < ${nK}u; kt = kt + 1u) {`, `  let k0 = ${KB} + kt * ${BK}u;`);
    body.push(...storeX('k0', '0u'), ...storeW('0u'), '  workgroupBarrier();');
    body.push(`  if (kt + 1u < ${nK}u) {`, `  let k1 = k0 + ${BK}u;`, ...loadX('k1'), ...loadW('k1'), '  }');
    body.push(...compute('0u', '0u'), '  workgroupBarrier();', '}');
  } else {
    body.push(...loadX(KB), ...loadW(KB), ...storeX(KB, '0u'), ...storeW('0u'), 'workgroupBarrier();');
    body.push(`for (var kt = 0u; kt < ${nK}u; kt = kt + 1u) {`, '  let cur = kt & 1u; let nxt = 1u - cur;');
    body.push(`  let more = kt + 1u < ${nK}u; let k1 = ${KB} + (kt + 1u) * ${BK}u;`);
    body.push('  if (more) {', ...loadX('k1'), ...loadW('k1'), '  }');
    body.push(...compute(xBuf('cur'), wBuf('cur')));
    body.push(
      '  if (more) {',
      ...storeX('k1', xBuf('nxt')),
      ...storeW(wBuf('nxt')),
      '  }',
      '  workgroupBarrier();',
      '}',
    );
  }

  // ---- norm: the rows' sums of squares meet in xs (free after the loop) ----
  const norm: string[] = [];
  if (spec.norm) {
    norm.push('workgroupBarrier();');
    for (let l = 0; l < nLX; l++) {
      const idx = `t + ${l * T}u`;
      const st = `xs[(${idx}) / 4u][(${idx}) % 4u] = sq${l};`;
      norm.push(guardIdx(nLX, LX, l) ? `if (${idx} < ${LX}u) { ${st} }` : st);
    }
    norm.push('workgroupBarrier();');
    norm.push(`for (var r = t; r < ${BM}u; r = r + ${T}u) {`);
    norm.push(
      `  var s = 0.0; for (var c = 0u; c < ${XV}u; c = c + 1u) { let i = c * ${BM}u + r; s = s + xs[i / 4u][i % 4u]; }`,
    );
    norm.push(`  let j = ${LX}u + r; xs[j / 4u][j % 4u] = 1.0 / sqrt(s / ${f32(K)} + ${f32(spec.norm.eps)});`);
    norm.push('}', 'workgroupBarrier();');
  }

  // ---- epilogue ----
  const epi: string[] = [];
  const ep = spec.epilogue;
  for (let i = 0; i < TM; i++) {
    epi.push(`{ let m = m0 + ty * ${TM}u + ${i}u;`);
    epi.push(`  if (m < M) {`);
    if (spec.norm) epi.push(`  let j = ${LX}u + ty * ${TM}u + ${i}u; let rs = xs[j / 4u][j % 4u];`);
    for (let r = 0; r < TN / 4; r++) {
      epi.push(`  { let n = n0 + tx * ${TN}u + ${r * 4}u;`);
      if (guardN) epi.push(`  if (n < ${N}u) {`);
      const scaled = (p: number) => (spec.norm ? `acc${p}_${i}_${r} * rs` : `acc${p}_${i}_${r}`);
      const bofs = kn ? `blk * ${N}u + ` : '';
      epi.push(`  var v = ${scaled(0)};`);
      if (spec.bias) epi.push(`  v = v + bias[(${bofs}n) / 4u];`);
      if (ep === 'geglu') {
        epi.push(`  var up = ${scaled(1)};`);
        if (spec.bias) epi.push(`  up = up + bias[(${N}u + n) / 4u];`);
        epi.push('  v = vec4<f32>(geluT(v.x), geluT(v.y), geluT(v.z), geluT(v.w)) * up;');
      } else if (ep === 'gelu') {
        epi.push('  v = vec4<f32>(geluT(v.x), geluT(v.y), geluT(v.z), geluT(v.w));');
      } else if (ep === 'softcap') {
        const cap = f32(spec.cap!);
        epi.push(
          `  v = vec4<f32>(tanhP(v.x / ${cap}), tanhP(v.y / ${cap}), tanhP(v.z / ${cap}), tanhP(v.w / ${cap})) * ${cap};`,
        );
      }
      const col = `m * ${outStride}u + ${outOffset}u + ${kn || SK > 1 ? `blk * ${N}u + ` : ''}n`;
      if (outVec) {
        const o = `out[(${col}) / 4u]`;
        epi.push(ep === 'residual' ? `  ${o} = ${o} + v;` : ep === 'mul' ? `  ${o} = ${o} * v;` : `  ${o} = v;`);
      } else {
        epi.push(`  let o = ${col};`);
        for (let c = 0; c < 4; c++) {
          const o = `out[o + ${c}u]`;
          const e = `v[${c}]`;
          epi.push(
            ep === 'residual' ? `  ${o} = ${o} + ${e};` : ep === 'mul' ? `  ${o} = ${o} * ${e};` : `  ${o} = ${e};`,
          );
        }
      }
      if (guardN) epi.push('  }');
      epi.push('  }');
    }
    epi.push('  } }');
  }

  const NTN = Math.ceil(N / BN);
  const GM = tu.group;
  const tileOrder =
    GM <= 1
      ? `  let m0 = wid.y * ${BM}u;\n  let n0 = wid.x * ${BN}u;`
      : `  let id = wid.x + wid.y * ${NTN}u;
  let mTiles = (M + ${BM - 1}u) / ${BM}u;
  let first = (id / ${GM * NTN}u) * ${GM}u;
  if (first >= mTiles) { return; }
  let run = min(mTiles - first, ${GM}u);
  let m0 = (first + (id % ${GM * NTN}u) % run) * ${BM}u;
  let nt = (id % ${GM * NTN}u) / run;
  if (nt >= ${NTN}u) { return; }
  let n0 = nt * ${BN}u;`;
  const regs: string[] = [];
  for (let l = 0; l < nLX; l++) regs.push(`var px${l} : vec4<f32>;`);
  if (spec.norm) for (let l = 0; l < nLX; l++) regs.push(`var sq${l} = 0.0;`);
  for (let l = 0; l < nLW; l++) {
    for (let p = 0; p < P; p++) {
      regs.push(`var pw${p}_${l} : ${load?.type ?? 'vec4<f32>'};`);
      if (fmt.dtype === 'int8' || fmt.dtype === 'int4') regs.push(`var sc${p}_${l} = 0.0;`);
      if (fmt.dtype === 'int4') regs.push(`var zp${p}_${l} = 8.0;`);
    }
  }
  for (let p = 0; p < P; p++) {
    for (let i = 0; i < TM; i++) for (let r = 0; r < TN / 4; r++) regs.push(`var acc${p}_${i}_${r} = vec4<f32>(0.0);`);
  }
  const wsDecl = Array.from({length: P}, (_, p) => `var<workgroup> ws${p} : array<vec4<f32>, ${bufs * WT}>;`).join(
    '\n',
  );

  return `
${COMMON_WGSL}
${decl}
var<workgroup> xs : array<vec4<f32>, ${bufs * XT}>;
${wsDecl}

@compute @workgroup_size(${T})
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(local_invocation_index) t : u32) {
  let M = dims[0];
${tileOrder}
  if (m0 >= M) { return; }
  let blk = wid.z;
  let xcol = ${xOffset}u + ${SK > 1 ? '0u' : `blk * ${K}u`};${
    SK > 1
      ? `
  let kb = blk * ${nK * BK}u;`
      : ''
  }
  let tx = t % ${TX}u;
  let ty = t / ${TX}u;
  ${regs.join('\n  ')}
${body.join('\n')}
${norm.join('\n')}
${epi.join('\n')}
}`;
}
