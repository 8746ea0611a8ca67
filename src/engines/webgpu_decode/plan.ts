/// <reference types="@webgpu/types" />
/**
 * The fused decode engine's plan: one token step of the whole model as a list of dispatches,
 * each a WGSL source, its buffers by binding name and its grid, made by one small function per
 * part of the model (embedding, recurrent block, attention block, MLP, final norm + head).
 *   const device = backend.device, usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST;
 *   const own = (floats: number) => device.createBuffer({size: Math.max(16, Math.ceil(floats / 4) * 16), usage});
 *   const weight = (get: () => tf.Tensor) => backend.tensorMap.get(get().dataId).resource as GPUBuffer;  // uploaded
 *   const plan = buildPlan(model, b, {limits: device.limits, own, weight, encoder: device.createCommandEncoder()});
 *   for (const d of plan.dispatches) console.log(d.name, Object.keys(d.bindings), d.grid);
 *
 * The buffers shared by all layers: x [b, d] (the residual stream, updated in place), uy [b, 2e]
 * (linear_x | gelu(linear_y)), o [b, e], hid [b, m], qkv [b, (H + 2K) hd], qr and attn [b, H hd],
 * part [b, H, chunks, hd + 2], step (ids, positions, ring slots, RoPE cos/sin) and logits [b, V].
 * Per recurrent layer: st (conv inputs ring [b, w, e] | h [b, e]); per attention layer: k and v
 * rings [b, S, K, hd] and valid [b, S]. Weights are bound where tfjs keeps them; a few small
 * vectors per layer are packed into one buffer (biases, conv taps).
 *
 * Shape letters: b batch rows, d hidden_size, e lru_width, m intermediate_size / 2, V vocab_size,
 * H query heads, K key/value heads, hd head_dim, W attention window, S = W + 1 ring slots,
 * w conv1d_width, rot rotary dims.
 */
import type * as tf from '@tensorflow/tfjs';
import type {LayerVariable} from '@tensorflow/tfjs-layers';
import type {LocalAttentionBlock} from '../../../layers/attention';
import type {Linear} from '../../../layers/basic';
import {CompactParameter} from '../../../layers/compact';
import type {Embedding, ResidualBlock} from '../../../layers/model_layers';
import {RecurrentBlock} from '../../../layers/recurrent';
import {matmulProjection} from './batched_matmul';
import type {DecodeModelView} from './model_view';
import {
  ArgmaxFinalBinding,
  ArgmaxPartBinding,
  AttnCombineBinding,
  AttnPartialBinding,
  AttnRopePartialBinding,
  AttnSpec,
  argmaxCandWords,
  argmaxFinalSource,
  argmaxPartSource,
  attnChunks,
  attnCombineGrid,
  attnCombineSource,
  attnPartialSource,
  attnRopePartialSharedBytes,
  attnRopePartialSource,
  attnThreads,
  combineSplit,
  EmbedBinding,
  embedSource,
  GemvBinding,
  GemvSpec,
  gemvBindings,
  gemvReduceFloats,
  gemvRows,
  gemvSource,
  gemvSplitGroup,
  RgLruBinding,
  RopeBinding,
  rgLruGrid,
  rgLruSource,
  ropeSource,
  StepLayout,
  stepLayout,
} from './shaders';
import {FLOAT32_WEIGHTS, matrixBytes, sameFormat, type WeightFormat, weightFormat} from './shaders/weights';
import {
  argmaxSlices,
  attnChunkSlots,
  fusedRope,
  gemvLazyX,
  gemvMagicUnpack,
  gemvMaxRows,
  gemvReduce,
  gemvThreads,
  gemvUnroll,
  gemvWords,
  rgLruPlan,
  splitCombine,
} from './tuning';

/** One dispatch of the step. */
export interface PlannedDispatch {
  /** 'embed', 'L3.rglru', 'head', ...: pipeline label and profiling name. */
  readonly name: string;
  readonly code: string;
  /** Buffers by the WGSL variable names of the source's bindings (every one bound, none extra). */
  readonly bindings: Readonly<Partial<Record<string, GPUBuffer>>>;
  readonly grid: [number, number, number];
  /** Bytes of weights / cache it must read (profiling's GB/s); 0 when small. */
  readonly bytes: number;
}

/** A recurrent layer's state: the conv inputs ring [b, w, e] then h [b, e]. */
export interface RecurrentBuffers {
  kind: 'recurrent';
  st: GPUBuffer;
}
/** An attention layer's state: k and v rings [b, S, K, hd], validity [b, S]. */
export interface AttentionBuffers {
  kind: 'attention';
  k: GPUBuffer;
  v: GPUBuffer;
  valid: GPUBuffer;
}
export type LayerBuffers = RecurrentBuffers | AttentionBuffers;

/** What the plan allocates and binds through (the engine's). */
export interface PlanHost {
  readonly limits: GPUSupportedLimits;
  /** A new buffer the engine owns, for `floats` float32 (at least 16 bytes, a multiple of 16). */
  own(floats: number): GPUBuffer;
  /** A weight tensor's buffer, recorded so that the engine notices when it changes. */
  weight(get: () => tf.Tensor): GPUBuffer;
  /** Receives the copies that pack small vectors; submitted once the plan is built. */
  readonly encoder: GPUCommandEncoder;
  /** A new buffer holding these words (the matmul products' row count; without it: GEMVs only). */
  constant?(words: Uint32Array): GPUBuffer;
}

export interface DecodePlan {
  /** In order: embedding pieces, per layer its temporal block then MLP, head pieces. */
  readonly dispatches: PlannedDispatch[];
  /** Per layer, its state's buffers. */
  readonly layers: LayerBuffers[];
  readonly stepLayout: StepLayout;
  readonly stepBuf: GPUBuffer;
  readonly logitsBuf: GPUBuffer;
  /** The residual stream x [b, d] (the head's input: the prefill engine writes its last rows there). */
  readonly xBuf: GPUBuffer;
  /** Attention ring slots (W + 1). */
  readonly slots: number;
  /**
   * The greedy pick (shaders/argmax.ts), run after the head when asked: each row's argmax into
   * the step buffer's ids and into idsBuf (int32 [b]).
   */
  readonly argmax: PlannedDispatch[];
  readonly idsBuf: GPUBuffer;
}

/** The buffers every layer's dispatches share. */
interface Shared {
  x: GPUBuffer;
  uy: GPUBuffer;
  o: GPUBuffer;
  hid: GPUBuffer;
  qkv: GPUBuffer;
  qr: GPUBuffer;
  attn: GPUBuffer;
  part: GPUBuffer;
  step: GPUBuffer;
  logits: GPUBuffer;
}

/** What the per-part functions work from. */
interface Ctx {
  readonly view: DecodeModelView;
  readonly host: PlanHost;
  readonly B: number;
  readonly buf: Shared;
  readonly step: StepLayout;
  readonly attn: AttnSpec;
  /** GEMV threads per workgroup and most rows per workgroup. */
  readonly T: number;
  readonly maxR: number;
  /** The rows whose tuning (GEMV threads and load width, RG-LRU slices) the plan takes (default B). */
  readonly tuneB: number;
}

/** Options of a plan. */
export interface PlanOptions {
  /**
   * Tune every kernel as for an engine of this many rows (>= B): a row's sums then run in the same
   * order for every B planned with the same value (see FusedDecoderOptions.tuningRows).
   */
  tuningRows?: number;
}

type Bindings<N extends string> = Record<N, GPUBuffer>;

function dispatch<N extends string>(
  name: string,
  code: string,
  bindings: Bindings<N>,
  grid: [number, number, number],
  bytes = 0,
): PlannedDispatch {
  return {name, code, bindings, grid, bytes};
}

/** A Linear's bias (the layers here are built with one). */
function biasOf(l: Linear): tf.Tensor {
  if (l.bias == null) throw new Error(`fused decode: ${l.name} has no bias`);
  return l.bias.read();
}

/** A new buffer holding tensors and zero runs (numbers: floats) one after the other. */
function pack(ctx: Ctx, parts: (tf.Tensor | number)[]): GPUBuffer {
  const total = parts.reduce<number>((s, p) => s + (typeof p === 'number' ? p : p.size), 0);
  const buf = ctx.host.own(total);
  let off = 0;
  for (const p of parts) {
    if (typeof p === 'number') {
      ctx.host.encoder.clearBuffer(buf, off * 4, p * 4);
      off += p;
    } else {
      ctx.host.encoder.copyBufferToBuffer(
        ctx.host.weight(() => p),
        0,
        buf,
        off * 4,
        p.size * 4,
      );
      off += p.size;
    }
  }
  return buf;
}

/** A weight matrix as the kernels read it: its format and buffers (packed words, scales, zero points). */
interface BoundMatrix {
  fmt: WeightFormat;
  w: GPUBuffer;
  s?: GPUBuffer;
  z?: GPUBuffer;
}

/** A float32 variable's buffer, or a compact one's packed tensors (layers/compact.ts). */
function matrix(ctx: Ctx, v: LayerVariable): BoundMatrix {
  if (!(v instanceof CompactParameter)) return {fmt: FLOAT32_WEIGHTS, w: ctx.host.weight(() => v.read())};
  const fmt = weightFormat(v.spec);
  const m: BoundMatrix = {fmt, w: ctx.host.weight(() => v.packed.data)};
  if (fmt.dtype === 'int8' || fmt.dtype === 'int4') m.s = ctx.host.weight(() => v.packed.scales);
  if (fmt.zeroPoints) m.z = ctx.host.weight(() => v.packed.zeros);
  return m;
}

/**
 * The GEMV dispatches of one projection over the matrices of its segments (one format for all)
 * and their biases (geglu: gate, up), with the largest rows per workgroup (from maxR, halving)
 * whose tile fits. One dispatch, unless its buffers exceed the device's storage bindings per
 * stage (compact segments bring scales and zero points) or a GeGLU tile would hold more than 32
 * accumulators (over 16 rows): then one per segment (store), or the gate with GeLU then the up
 * projection multiplied in (geglu).
 */
function gemv(
  ctx: Ctx,
  name: string,
  spec: Omit<GemvSpec, 'R' | 'T' | 'weights' | 'words' | 'bias'>,
  mats: BoundMatrix[],
  biases: tf.Tensor[] | null,
  io: {x: GPUBuffer; g?: GPUBuffer; out: GPUBuffer},
): PlannedDispatch[] {
  const fmt = mats[0].fmt;
  if (mats.some((m) => !sameFormat(m.fmt, fmt))) throw new Error(`fused decode: ${name} mixes weight formats`);
  // Many tuning rows: tiled matmuls instead (batched_matmul.ts), where they apply.
  const mm = matmulProjection(ctx, name, spec, mats, biases, io);
  if (mm != null) return mm;
  const whole = {...spec, bias: biases != null, weights: fmt};
  // A GeGLU tile holds 2 x rows accumulators: past 16 rows it is split like a large binding list.
  const tooManyRows = spec.mode === 'geglu' && 2 * spec.B > 32;
  if (!tooManyRows && gemvBindings(whole as GemvSpec).length <= ctx.host.limits.maxStorageBuffersPerShaderStage) {
    const bias =
      biases == null ? undefined : biases.length === 1 ? ctx.host.weight(() => biases[0]) : pack(ctx, biases);
    return [gemvDispatch(ctx, name, whole, mats, {...io, ...(bias ? {bias} : {})})];
  }
  const one = (k: number, part: Partial<GemvSpec>, suffix: string) =>
    gemvDispatch(ctx, `${name}.${suffix}`, {...whole, ...part}, [mats[k]], {
      ...io,
      ...(biases ? {bias: ctx.host.weight(() => biases[k])} : {}),
    });
  if (spec.mode === 'geglu') {
    const m = spec.segments[0];
    return [one(0, {mode: 'store', segments: [m], gelu: [true]}, 'gate'), one(1, {mode: 'mul', segments: [m]}, 'up')];
  }
  let start = spec.outOffset ?? 0;
  return spec.segments.map((n, k) => {
    const d = one(k, {segments: [n], gelu: spec.gelu ? [spec.gelu[k]] : undefined, outOffset: start}, `${k}`);
    start += n;
    return d;
  });
}

/** One GEMV dispatch (see gemv). */
function gemvDispatch(
  ctx: Ctx,
  name: string,
  spec: Omit<GemvSpec, 'R' | 'T' | 'words'>,
  mats: BoundMatrix[],
  bindings: Partial<Bindings<GemvBinding>>,
): PlannedDispatch {
  const limit = ctx.host.limits,
    T = ctx.T;
  const fmt = mats[0].fmt;
  const all: Partial<Bindings<GemvBinding>> = {...bindings};
  mats.forEach((m, k) => {
    all[`w${k}`] = m.w;
    if (m.s != null) all[`s${k}`] = m.s;
    if (m.z != null) all[`z${k}`] = m.z;
  });
  const P = spec.mode === 'geglu' ? 2 : 1;
  const reduce = gemvReduce();
  let R = ctx.maxR;
  const fitsRows = (r: number, rows: number) =>
    r * P * rows <= 32 &&
    spec.segments.every((n) => n % r === 0) &&
    gemvReduceFloats(r * P * rows + (spec.norm ? rows : 0), T, reduce) * 4 <= limit.maxComputeWorkgroupStorageSize;
  const fits = (r: number) => fitsRows(r, spec.B);
  while (R > 1 && !fits(R)) R = R >> 1;
  if (!fits(R)) throw new Error(`fused decode: no GEMV tiling for ${name}`);
  const compact = fmt.dtype !== 'float32';
  const U = gemvUnroll(spec.B, compact),
    words = gemvWords(fmt, spec.IN, T, ctx.tuneB);
  // The split reduction's threads per value as for tuneB rows: a row's sums then run in one order
  // whatever B (see tunedAsOneRow).
  let Rt = ctx.maxR;
  while (Rt > 1 && !fitsRows(Rt, ctx.tuneB)) Rt = Rt >> 1;
  const full: GemvSpec = {
    ...spec,
    R,
    T,
    U,
    words,
    reduce,
    splitGroup: gemvSplitGroup(Rt * P * ctx.tuneB + (spec.norm ? ctx.tuneB : 0), T),
    lazyX: gemvLazyX(spec.B, U, R * P),
    magic: gemvMagicUnpack(),
  };
  const nwg = gemvRows(full) / R;
  const gx = Math.min(nwg, limit.maxComputeWorkgroupsPerDimension);
  const bytes = spec.segments.reduce((a, n) => a + matrixBytes(fmt, n, spec.IN), 0) * P;
  return {name, code: gemvSource(full), bindings: all, grid: [gx, Math.ceil(nwg / gx), 1], bytes};
}

/** x = E[id] * scale, one dispatch per piece of the vocabulary matrix. */
function embeddingDispatches(ctx: Ctx, embed: Embedding): PlannedDispatch[] {
  const {B, buf} = ctx,
    d = ctx.view.config.hidden_size;
  return embed.matrix.pieces.map((p) => {
    const m = matrix(ctx, p.variable);
    const bindings: Partial<Bindings<EmbedBinding>> = {e: m.w, step: buf.step, x: buf.x};
    if (m.s != null) bindings.s = m.s;
    if (m.z != null) bindings.z = m.z;
    return dispatch(
      'embed',
      embedSource({B, D: d, start: p.start, rows: p.rows, scale: embed.scale, step: ctx.step, weights: m.fmt}),
      bindings as Bindings<EmbedBinding>,
      [Math.ceil((B * d) / 256), 1, 1],
      B * d * 4,
    );
  });
}

/** [norm + linear_x | linear_y (+gelu)] -> [conv1d + RG-LRU + * gelu(y)] -> [linear_out + residual]. */
function recurrentDispatches(
  ctx: Ctx,
  li: number,
  blk: ResidualBlock,
  tb: RecurrentBlock,
): {dispatches: PlannedDispatch[]; state: RecurrentBuffers} {
  const {B, buf, host} = ctx,
    c = ctx.view.config;
  const d = c.hidden_size,
    e = c.lru_width,
    H = c.num_attention_heads,
    w = c.conv1d_width;
  const lx = tb.linear_x,
    ly = tb.linear_y,
    lo = tb.linear_out,
    rg = tb.rg_lru,
    cv = tb.conv_1d;
  const xy = gemv(
    ctx,
    `L${li}.xy`,
    {
      B,
      IN: d,
      segments: [e, e],
      gelu: [false, true],
      mode: 'store',
      norm: true,
      eps: c.rms_norm_eps,
      outStride: 2 * e,
    },
    [matrix(ctx, lx.weight), matrix(ctx, ly.weight)],
    [biasOf(lx), biasOf(ly)],
    {x: buf.x, g: host.weight(() => blk.temporal_pre_norm.weight.read()), out: buf.uy},
  );
  const st = host.own(B * w * e + B * e);
  const pk = pack(ctx, [
    cv.weight.read(),
    cv.bias.read(),
    rg.input_gate_bias.read(),
    rg.recurrent_gate_bias.read(),
    rg.recurrent_param.read(),
  ]);
  // The shape chosen for tuneB rows (it fits B <= tuneB rows too; its rows per workgroup are capped
  // at B): the input slices, the one choice that orders a row's sums, are then those of tuneB.
  const rspec = {...rgLruPlan(ctx.tuneB, e, H, w, ctx.step, host.limits.maxComputeWorkgroupStorageSize), B};
  const lru = dispatch<RgLruBinding>(
    `L${li}.rglru`,
    rgLruSource(rspec),
    {
      uy: buf.uy,
      pk,
      wx: host.weight(() => rg.input_gate_weight.read()),
      wa: host.weight(() => rg.recurrent_gate_weight.read()),
      st,
      o: buf.o,
      step: buf.step,
    },
    rgLruGrid(rspec),
    2 * e * (e / H) * 4,
  );
  const out = gemv(
    ctx,
    `L${li}.out`,
    {B, IN: e, segments: [d], mode: 'residual', norm: false, outStride: d},
    [matrix(ctx, lo.weight)],
    [biasOf(lo)],
    {x: buf.o, out: buf.x},
  );
  return {dispatches: [...xy, lru, ...out], state: {kind: 'recurrent', st}};
}

/** [norm + q|k|v] -> [RoPE, ring store] -> [partial attention] -> [combine] -> [o_proj + residual]. */
function attentionDispatches(
  ctx: Ctx,
  li: number,
  blk: ResidualBlock,
  tb: LocalAttentionBlock,
): {dispatches: PlannedDispatch[]; state: AttentionBuffers} {
  const {B, buf, host, attn: aspec} = ctx,
    c = ctx.view.config;
  const d = c.hidden_size,
    H = c.num_attention_heads,
    K = c.num_key_value_heads,
    hd = c.head_dim,
    S = aspec.S;
  const q = tb.q_proj,
    k = tb.k_proj,
    v = tb.v_proj,
    op = tb.o_proj;
  const biased = q.bias != null;
  const kb = host.own(B * S * K * hd),
    vb = host.own(B * S * K * hd),
    valid = host.own(B * S);
  const qkv = gemv(
    ctx,
    `L${li}.qkv`,
    {
      B,
      IN: d,
      segments: [H * hd, K * hd, K * hd],
      mode: 'store',
      norm: true,
      eps: c.rms_norm_eps,
      outStride: (H + 2 * K) * hd,
    },
    [matrix(ctx, q.weight), matrix(ctx, k.weight), matrix(ctx, v.weight)],
    biased ? [biasOf(q), biasOf(k), biasOf(v)] : null,
    {x: buf.x, g: host.weight(() => blk.temporal_pre_norm.weight.read()), out: buf.qkv},
  );
  const attnBytes = 2 * B * S * K * hd * 4;
  // RoPE folded into the partial kernel where its workgroup memory fits (shaders/attention_partial.ts).
  const ropeInPartial = fusedRope() && attnRopePartialSharedBytes(aspec) <= host.limits.maxComputeWorkgroupStorageSize;
  const ropeAttn = ropeInPartial
    ? [
        dispatch<AttnRopePartialBinding>(
          `L${li}.attn`,
          attnRopePartialSource(aspec),
          {qkv: buf.qkv, kr: kb, vr: vb, valid, part: buf.part, step: buf.step},
          [attnChunks(aspec), K, B],
          attnBytes,
        ),
      ]
    : [
        dispatch<RopeBinding>(
          `L${li}.rope`,
          ropeSource(aspec),
          {qkv: buf.qkv, step: buf.step, qr: buf.qr, kr: kb, vr: vb, valid},
          [B, 1, 1],
        ),
        dispatch<AttnPartialBinding>(
          `L${li}.attn`,
          attnPartialSource(aspec),
          {qr: buf.qr, kr: kb, vr: vb, valid, part: buf.part, step: buf.step},
          [attnChunks(aspec), K, B],
          attnBytes,
        ),
      ];
  const split = splitCombine() ? combineSplit(aspec) : null;
  const combine = dispatch<AttnCombineBinding>(
    `L${li}.combine`,
    attnCombineSource(aspec, split),
    {part: buf.part, attn: buf.attn},
    attnCombineGrid(aspec, split),
  );
  const o = gemv(
    ctx,
    `L${li}.o`,
    {B, IN: H * hd, segments: [d], mode: 'residual', norm: false, outStride: d},
    [matrix(ctx, op.weight)],
    [biasOf(op)],
    {x: buf.attn, out: buf.x},
  );
  return {dispatches: [...qkv, ...ropeAttn, combine, ...o], state: {kind: 'attention', k: kb, v: vb, valid}};
}

/** [norm + gate | up + GeGLU] -> [down + residual]. */
function mlpDispatches(ctx: Ctx, li: number, blk: ResidualBlock): PlannedDispatch[] {
  const {B, buf, host} = ctx,
    c = ctx.view.config;
  const d = c.hidden_size,
    m = c.intermediate_size / 2;
  const mlp = blk.mlp_block;
  return [
    ...gemv(
      ctx,
      `L${li}.gateup`,
      {B, IN: d, segments: [m, m], mode: 'geglu', norm: true, eps: c.rms_norm_eps, outStride: m},
      [matrix(ctx, mlp.gate_proj.weight), matrix(ctx, mlp.up_proj.weight)],
      [biasOf(mlp.gate_proj), biasOf(mlp.up_proj)],
      {x: buf.x, g: host.weight(() => blk.channel_pre_norm.weight.read()), out: buf.hid},
    ),
    ...gemv(
      ctx,
      `L${li}.down`,
      {B, IN: m, segments: [d], mode: 'residual', norm: false, outStride: d},
      [matrix(ctx, mlp.down_proj.weight)],
      [biasOf(mlp.down_proj)],
      {x: buf.hid, out: buf.x},
    ),
  ];
}

/** Final RMSNorm + x E^T (the untied head, else the embedding) + soft cap, one dispatch per piece. */
function headDispatches(ctx: Ctx): PlannedDispatch[] {
  const {B, buf, host, view} = ctx,
    c = view.config;
  return (view.lmHead ?? view.embed).matrix.pieces.flatMap((p) =>
    gemv(
      ctx,
      'head',
      {
        B,
        IN: c.hidden_size,
        segments: [p.rows],
        mode: 'softcap',
        norm: true,
        eps: c.rms_norm_eps,
        outStride: c.vocab_size,
        outOffset: p.start,
        cap: c.logits_soft_cap,
      },
      [matrix(ctx, p.variable)],
      null,
      {x: buf.x, g: host.weight(() => view.finalNorm.weight.read()), out: buf.logits},
    ),
  );
}

/** The greedy pick after the head: per-slice candidates, then each row's id (shaders/argmax.ts). */
function argmaxDispatches(ctx: Ctx): {argmax: PlannedDispatch[]; idsBuf: GPUBuffer} {
  const {B, buf, host} = ctx,
    V = ctx.view.config.vocab_size;
  const spec = {B, V, G: argmaxSlices(V), T: 256, step: ctx.step};
  const cand = host.own(argmaxCandWords(spec));
  const idsBuf = host.own(B);
  return {
    argmax: [
      dispatch<ArgmaxPartBinding>(
        'argmax',
        argmaxPartSource(spec),
        {logits: buf.logits, cand},
        [spec.G, B, 1],
        B * V * 4,
      ),
      dispatch<ArgmaxFinalBinding>('argmax.final', argmaxFinalSource(spec), {cand, step: buf.step, ids: idsBuf}, [
        B,
        1,
        1,
      ]),
    ],
    idsBuf,
  };
}

/** The whole step for b rows; throws (before allocating) when a shape does not fit the device's limits. */
export function buildPlan(view: DecodeModelView, B: number, host: PlanHost, opts: PlanOptions = {}): DecodePlan {
  const c = view.config;
  const tuneB = opts.tuningRows ?? B;
  if (!Number.isInteger(tuneB) || tuneB < B || tuneB > 1024)
    throw new Error(`fused decode: tuningRows must be an integer in [${B}, 1024] (the rows), got ${tuneB}`);
  const d = c.hidden_size,
    e = c.lru_width,
    m = c.intermediate_size / 2,
    V = c.vocab_size;
  const H = c.num_attention_heads,
    K = c.num_key_value_heads,
    hd = c.head_dim,
    W = c.attention_window_size;
  const rot = c.rotary_dim,
    S = W + 1;
  const step = stepLayout(B, rot / 2);
  const CS = attnChunkSlots();
  const wgBytes = host.limits.maxComputeWorkgroupStorageSize;
  if (B * (e / H) * 4 > wgBytes) {
    throw new Error(`fused decode: ${B} rows x ${e / H} channels per head exceed workgroup memory`);
  }
  if ((H / K) * CS * 4 > wgBytes / 2) throw new Error('fused decode: too many query heads per key head');

  const own = (floats: number) => host.own(floats);
  const attn: AttnSpec = {B, H, K, HD: hd, ROT: rot, S, step, CS, T: attnThreads(H / K, CS, hd)};
  const hasAttn = c.layers_block_type.includes('attention');
  const buf: Shared = {
    x: own(B * d),
    uy: own(B * 2 * e),
    o: own(B * e),
    hid: own(B * m),
    qkv: own(B * (H + 2 * K) * hd),
    qr: own(B * H * hd),
    attn: own(B * H * hd),
    part: hasAttn ? own(B * H * attnChunks(attn) * (hd + 2)) : own(4),
    step: own(step.words),
    logits: own(B * V),
  };
  const ctx: Ctx = {view, host, B, buf, step, attn, T: gemvThreads(tuneB), maxR: gemvMaxRows(), tuneB};

  const dispatches = embeddingDispatches(ctx, view.embed);
  const layers: LayerBuffers[] = [];
  view.blocks.forEach((blk, li) => {
    const tb = blk.temporal_block;
    const temporal =
      tb instanceof RecurrentBlock ? recurrentDispatches(ctx, li, blk, tb) : attentionDispatches(ctx, li, blk, tb);
    layers.push(temporal.state);
    dispatches.push(...temporal.dispatches, ...mlpDispatches(ctx, li, blk));
  });
  dispatches.push(...headDispatches(ctx));
  const {argmax, idsBuf} = argmaxDispatches(ctx);
  return {
    dispatches,
    layers,
    stepLayout: step,
    stepBuf: buf.step,
    logitsBuf: buf.logits,
    xBuf: buf.x,
    slots: S,
    argmax,
    idsBuf,
  };
}
