/// <reference types="@webgpu/types" />
/**
 * The fused prefill engine's plan: one chunk of b rows x t steps of the whole model as a list of
 * dispatches, each a WGSL source, its buffers by binding name and its grid as a function of the
 * chunk's token rows M = b t, made by one small function per part of the model (embedding,
 * recurrent block, attention block, MLP). The final norm + head is the decode engine's.
 *   import {fusedDecoderFor} from '../webgpu_decode';
 *   const dec = fusedDecoderFor(model, 1)!, usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST;
 *   const own = (floats: number) => dec.device.createBuffer({size: Math.max(16, Math.ceil(floats / 4) * 16), usage});
 *   const host = {limits: dec.device.limits, own, weight: (get: () => tf.Tensor) => own(get().size), encoder: dec.device.createCommandEncoder()};
 *   const plan = buildPrefillPlan(model, 1, 512, dec.prefillTarget(), host);   // up to 512 steps per chunk
 *   for (const d of plan.dispatches) console.log(d.name, Object.keys(d.bindings), d.grid(512, 512));
 *
 * Buffers shared by the layers, sized for M = b x capacity rows: x [M, d] (the residual stream,
 * updated in place), uy [M, 2e] (linear_x | gelu(linear_y)), cv [M, e] (conv outputs), gates [M,
 * 2e] (the RG-LRU gates' pre-activations), o [M, e], qkv [M, (H + 2K) hd], attn [M, H hd], hid
 * [M, m]; written by the host per chunk: dims (shaders/dims.ts),
 * ids [M] and pos [M] (u32), rope [M, rot] (C's table). The state is the decode engine's
 * (PrefillTarget): conv ring + h per recurrent layer, k / v rings + valid per attention layer.
 *
 * Shape letters: b batch rows, t steps per row in a chunk, M = b t, d hidden_size, e lru_width,
 * m intermediate_size / 2, H query heads, K key/value heads, hd head_dim, w conv1d_width,
 * rot rotary dims.
 */
import type * as tf from '@tensorflow/tfjs';
import type {LayerVariable} from '@tensorflow/tfjs-layers';
import type {LocalAttentionBlock} from '../../../layers/attention';
import type {Linear} from '../../../layers/basic';
import {CompactParameter} from '../../../layers/compact';
import type {Embedding, ResidualBlock} from '../../../layers/model_layers';
import {RecurrentBlock} from '../../../layers/recurrent';
import type {AttentionBuffers, DecodeModelView, PrefillTarget, RecurrentBuffers} from '../webgpu_decode';
import {FLOAT32_WEIGHTS, sameFormat, type WeightFormat, weightFormat} from '../webgpu_decode/shaders/weights';
import {attentionDispatches, attentionScratch} from './attention_plan';
import {fusedPrefillConfig} from './config';
import type {GridFn, PrefillCtx, PrefillDispatch, PrefillHost, PrefillShared} from './context';
import {prefillConvGrid, prefillConvSource} from './shaders/conv';
import {DIMS_WORDS} from './shaders/dims';
import {prefillEmbedGrid, prefillEmbedSource} from './shaders/embed';
import {
  type MatmulSpec,
  matmulBindings,
  matmulFit,
  matmulGrid,
  matmulPartFloats,
  matmulReduceBindings,
  matmulReduceGrid,
  matmulReduceSource,
  matmulSharedBytes,
  matmulSource,
  matmulSplits,
  matmulTuning,
  matmulTuningFor,
} from './shaders/matmul';
import {simpleMatmulGrid, simpleMatmulSource} from './shaders/matmul_simple';
import {scanChunkedGrid, scanFinishSource, scanPartSource, scanScratchFloats} from './shaders/scan_chunked';

export interface PrefillPlan {
  readonly dispatches: PrefillDispatch[];
  /** Written by the host per chunk. */
  readonly dims: GPUBuffer;
  readonly ids: GPUBuffer;
  readonly pos: GPUBuffer;
  readonly rope: GPUBuffer;
  /** The residual stream [M, d]: its last row per batch row goes to the head. */
  readonly x: GPUBuffer;
  /** What the parts were planned from (head_plan.ts plans the all-rows head from it when first asked). */
  readonly ctx: PrefillCtx;
}

/** A Linear's bias, or null. */
function biasOf(l: Linear): tf.Tensor | null {
  return l.bias == null ? null : l.bias.read();
}

/** A new buffer holding tensors one after the other. */
function pack(ctx: PrefillCtx, parts: tf.Tensor[]): GPUBuffer {
  const total = parts.reduce((s, p) => s + p.size, 0);
  const buf = ctx.host.own(total);
  let off = 0;
  for (const p of parts) {
    ctx.host.encoder.copyBufferToBuffer(
      ctx.host.weight(() => p),
      0,
      buf,
      off * 4,
      p.size * 4,
    );
    off += p.size;
  }
  return buf;
}

/** A weight matrix as the kernels read it: its format and buffers (packed words, scales, zero points). */
export interface BoundMatrix {
  fmt: WeightFormat;
  w: GPUBuffer;
  s?: GPUBuffer;
  z?: GPUBuffer;
  /** Bytes it takes. */
  bytes: number;
}

/** A float32 variable's buffer, or a compact one's packed tensors (layers/compact.ts). */
export function matrix(ctx: PrefillCtx, v: LayerVariable): BoundMatrix {
  if (!(v instanceof CompactParameter)) {
    const t = v.read();
    return {fmt: FLOAT32_WEIGHTS, w: ctx.host.weight(() => v.read()), bytes: t.size * 4};
  }
  const fmt = weightFormat(v.spec);
  const p = v.packed;
  const m: BoundMatrix = {fmt, w: ctx.host.weight(() => v.packed.data), bytes: p.data.size * 4};
  if (fmt.dtype === 'int8' || fmt.dtype === 'int4') {
    m.s = ctx.host.weight(() => v.packed.scales!);
    m.bytes += p.scales!.size * 4;
  }
  if (fmt.zeroPoints) {
    m.z = ctx.host.weight(() => v.packed.zeros!);
    m.bytes += p.zeros!.size * 4;
  }
  return m;
}

/**
 * The matmul dispatches of one projection (shaders/matmul.ts, tiled; shaders/matmul_simple.ts for
 * the shapes it does not take). GeGLU whose buffers exceed the device's storage bindings per stage
 * (compact weights bring scales and zero points) is split: the gate with GeLU into `out`, then the
 * up projection multiplied in (epilogue mul).
 */
export function matmul(
  ctx: PrefillCtx,
  name: string,
  spec: Omit<MatmulSpec, 'weight' | 'bias'>,
  mats: BoundMatrix[],
  bias: GPUBuffer | null,
  io: {x: GPUBuffer; g?: GPUBuffer; out: GPUBuffer},
  biases?: tf.Tensor[],
): PrefillDispatch[] {
  const fmt = mats[0].fmt;
  if (mats.some((m) => !sameFormat(m.fmt, fmt))) throw new Error(`fused prefill: ${name} mixes weight formats`);
  const whole: MatmulSpec = {...spec, weight: fmt, bias: bias != null};
  const limit = ctx.host.limits.maxStorageBuffersPerShaderStage;
  if (spec.epilogue === 'geglu' && matmulBindings(whole).length > limit) {
    const one = (k: number, epilogue: MatmulSpec['epilogue'], suffix: string) =>
      matmulDispatch(ctx, `${name}.${suffix}`, {...whole, epilogue, bias: biases != null}, [mats[k]], {
        ...io,
        ...(biases ? {bias: ctx.host.weight(() => biases[k])} : {}),
      });
    return [one(0, 'gelu', 'gate'), one(1, 'mul', 'up')];
  }
  return [matmulDispatch(ctx, name, whole, mats, {...io, ...(bias ? {bias} : {})})];
}

/** Bytes split-K's partial sums may take (one buffer, shared by the plan's matmuls). */
const PART_BUDGET = 256 * 2 ** 20;

/** Chunk sizes (rows) whose tunings size split-K's buffer: powers of two and one less, up to M. */
function sampleRows(M: number): number[] {
  const out = [M];
  for (let p = 1; p <= M; p *= 2) out.push(p, p - 1);
  return out.filter((m) => m >= 1);
}

function matmulDispatch(
  ctx: PrefillCtx,
  name: string,
  spec: MatmulSpec,
  mats: BoundMatrix[],
  io: {x: GPUBuffer; g?: GPUBuffer; bias?: GPUBuffer; out: GPUBuffer},
): PrefillDispatch {
  const all: Record<string, GPUBuffer> = {dims: ctx.buf.dims, ...io};
  mats.forEach((m, k) => {
    all[`w${k}`] = m.w;
    if (m.s != null) all[`s${k}`] = m.s;
    if (m.z != null) all[`z${k}`] = m.z;
  });
  const bindingsOf = (names: string[]) => Object.fromEntries(names.map((n) => [n, all[n]]));
  const bindings = bindingsOf(matmulBindings(spec, {splitk: 1}));
  const maxX = ctx.host.limits.maxComputeWorkgroupsPerDimension;
  const shared = ctx.host.limits.maxComputeWorkgroupStorageSize;
  const sgSize = ctx.host.subgroupSize ?? 0;
  const checked =
    (grid: GridFn): GridFn =>
    (M, t) => {
      const g = grid(M, t);
      if (g.some((n) => n > maxX)) throw new Error(`fused prefill: ${name}: grid [${g}] past the device's limit`);
      return g;
    };
  const bytes = mats.reduce((a, m) => a + m.bytes, 0);
  // The planned source: GRIFFIN_PREFILL_MM's tiles or the defaults, never split (split-K runs as a variant).
  const base = matmulFit(spec, {splitk: 1}, sgSize);
  let code: string;
  try {
    if (matmulSharedBytes(spec, base) > shared) throw new Error('workgroup memory');
    code = matmulSource(spec, base);
  } catch {
    // Widths or strides that are not multiples of 4 (small test models): one invocation per value.
    return {name, code: simpleMatmulSource(spec), bindings, grid: checked((M) => simpleMatmulGrid(spec, M)), bytes};
  }
  const baseKey = JSON.stringify(matmulTuning(spec, base));
  const tuningAt = (M: number) => matmulFit(spec, matmulTuningFor(spec, M, {subgroupSize: sgSize}), sgSize);
  // Split-K's buffer: the most this matmul's split variants need (within the budget; a chunk that
  // would need more runs unsplit).
  const budget = Math.floor(Math.min(ctx.host.limits.maxStorageBufferBindingSize, PART_BUDGET) / 4);
  for (const M of sampleRows(ctx.B * ctx.capacity)) {
    let f = 0;
    try {
      f = matmulPartFloats(spec, M, tuningAt(M));
    } catch {
      // A tuning this spec cannot take: its variant reports it when a chunk needs it.
    }
    if (f <= budget) ctx.buf.partFloats = Math.max(ctx.buf.partFloats, f);
  }
  return {
    name,
    code,
    bindings,
    grid: checked((M) => matmulGrid(spec, M, base)),
    bytes,
    // Few rows (a short prompt): smaller tiles or split-K, so that the chunk fills the GPU.
    variant: (M) => {
      let tu = tuningAt(M);
      if (matmulSplits(spec, tu) && matmulPartFloats(spec, M, tu) * 4 > (ctx.buf.part?.size ?? 0)) {
        tu = {...tu, splitk: 1};
      }
      const key = JSON.stringify(matmulTuning(spec, tu));
      if (key === baseKey || matmulSharedBytes(spec, tu) > shared) return null;
      const grid = checked((m) => matmulGrid(spec, m, tu));
      if (!matmulSplits(spec, tu)) return {key, code: matmulSource(spec, tu), grid};
      all.part = ctx.buf.part!;
      return {
        key,
        code: matmulSource(spec, tu),
        grid,
        bindings: bindingsOf(matmulBindings(spec, tu)),
        after: {
          code: matmulReduceSource(spec, tu),
          grid: checked((m) => matmulReduceGrid(spec, m, maxX)),
          bindings: bindingsOf(matmulReduceBindings(spec)),
        },
      };
    },
  };
}

/** x = E[id] * scale, one dispatch per piece of the vocabulary matrix. */
function embeddingDispatches(ctx: PrefillCtx, embed: Embedding): PrefillDispatch[] {
  const {buf} = ctx,
    d = ctx.view.config.hidden_size;
  const maxX = ctx.host.limits.maxComputeWorkgroupsPerDimension;
  return embed.matrix.pieces.map((p) => {
    const m = matrix(ctx, p.variable);
    const bindings: Record<string, GPUBuffer> = {e: m.w, dims: buf.dims, ids: buf.ids, x: buf.x};
    if (m.s != null) bindings.s = m.s;
    if (m.z != null) bindings.z = m.z;
    return {
      name: 'embed',
      code: prefillEmbedSource({D: d, start: p.start, rows: p.rows, scale: embed.scale, weights: m.fmt}),
      bindings,
      grid: (M) => prefillEmbedGrid(d, M, maxX),
      bytes: 0,
    };
  });
}

/** [norm + linear_x] [norm + linear_y + gelu] [conv1d] [gates x2] [scan] [linear_out + residual]. */
function recurrentDispatches(
  ctx: PrefillCtx,
  li: number,
  blk: ResidualBlock,
  tb: RecurrentBlock,
  state: RecurrentBuffers,
): PrefillDispatch[] {
  const {buf, host} = ctx,
    c = ctx.view.config;
  const d = c.hidden_size,
    e = c.lru_width,
    H = c.num_attention_heads,
    w = c.conv1d_width;
  const maxX = host.limits.maxComputeWorkgroupsPerDimension;
  const rg = tb.rg_lru,
    cvl = tb.conv_1d;
  for (const v of [rg.input_gate_weight, rg.recurrent_gate_weight]) {
    if (v instanceof CompactParameter) throw new Error('fused prefill: compact RG-LRU gate weights');
  }
  const g = host.weight(() => blk.temporal_pre_norm.weight.read());
  const proj = (l: Linear, epilogue: 'store' | 'gelu', offset: number, suffix: string) => {
    const bias = biasOf(l);
    return matmul(
      ctx,
      `L${li}.${suffix}`,
      {N: e, K: d, norm: {eps: c.rms_norm_eps}, epilogue, outStride: 2 * e, outOffset: offset},
      [matrix(ctx, l.weight)],
      bias == null ? null : host.weight(() => bias),
      {x: buf.x, g, out: buf.uy},
    );
  };
  const conv: PrefillDispatch = {
    name: `L${li}.conv`,
    code: prefillConvSource({E: e, W: w}),
    bindings: {
      dims: buf.dims,
      pos: buf.pos,
      uy: buf.uy,
      cw: host.weight(() => cvl.weight.read()),
      cb: host.weight(() => cvl.bias.read()),
      st: state.st,
      cv: buf.cv,
    },
    grid: (M) => prefillConvGrid(e, M, maxX),
    bytes: 0,
  };
  const gate = (wv: LayerVariable, bv: LayerVariable, offset: number, suffix: string) =>
    matmul(
      ctx,
      `L${li}.${suffix}`,
      {N: e / H, K: e / H, blocks: H, epilogue: 'store', outStride: 2 * e, outOffset: offset},
      [{fmt: FLOAT32_WEIGHTS, w: host.weight(() => wv.read()), bytes: (e * e * 4) / H}],
      host.weight(() => bv.read()),
      {x: buf.cv, out: buf.gates},
    );
  // The scan in chunks of fusedPrefillConfig.scanSteps steps, parallel over them (part), then each chunk from its
  // start state (finish): h and the conv ring end in the state.
  const sspec = {E: e, W: w, L: fusedPrefillConfig.scanSteps};
  const rp = host.weight(() => rg.recurrent_param.read());
  const scan: PrefillDispatch[] = [
    {
      name: `L${li}.scan`,
      code: scanPartSource(sspec),
      bindings: {dims: buf.dims, pos: buf.pos, cv: buf.cv, gates: buf.gates, rp, st: state.st, sc: buf.sc},
      grid: (M, t) => scanChunkedGrid(sspec, M / t, t),
      bytes: 0,
    },
    {
      name: `L${li}.scan2`,
      code: scanFinishSource(sspec),
      bindings: {
        dims: buf.dims,
        pos: buf.pos,
        uy: buf.uy,
        cv: buf.cv,
        gates: buf.gates,
        sc: buf.sc,
        st: state.st,
        o: buf.o,
      },
      grid: (M, t) => scanChunkedGrid(sspec, M / t, t),
      bytes: 0,
    },
  ];
  const lo = tb.linear_out,
    loBias = biasOf(lo);
  const out = matmul(
    ctx,
    `L${li}.out`,
    {N: d, K: e, epilogue: 'residual'},
    [matrix(ctx, lo.weight)],
    loBias == null ? null : host.weight(() => loBias),
    {x: buf.o, out: buf.x},
  );
  return [
    ...proj(tb.linear_x, 'store', 0, 'x'),
    ...proj(tb.linear_y, 'gelu', e, 'y'),
    conv,
    ...gate(rg.input_gate_weight, rg.input_gate_bias, 0, 'gx'),
    ...gate(rg.recurrent_gate_weight, rg.recurrent_gate_bias, e, 'ga'),
    ...scan,
    ...out,
  ];
}

/** [norm + q] [norm + k] [norm + v] [C's RoPE, attention, ring write] [o_proj + residual]. */
function attentionBlockDispatches(
  ctx: PrefillCtx,
  li: number,
  blk: ResidualBlock,
  tb: LocalAttentionBlock,
  state: AttentionBuffers,
): PrefillDispatch[] {
  const {buf, host} = ctx,
    c = ctx.view.config;
  const d = c.hidden_size,
    H = c.num_attention_heads,
    K = c.num_key_value_heads,
    hd = c.head_dim;
  const g = host.weight(() => blk.temporal_pre_norm.weight.read());
  const QKV = (H + 2 * K) * hd;
  const proj = (l: Linear, N: number, offset: number, suffix: string) => {
    const bias = biasOf(l);
    return matmul(
      ctx,
      `L${li}.${suffix}`,
      {N, K: d, norm: {eps: c.rms_norm_eps}, epilogue: 'store', outStride: QKV, outOffset: offset},
      [matrix(ctx, l.weight)],
      bias == null ? null : host.weight(() => bias),
      {x: buf.x, g, out: buf.qkv},
    );
  };
  const op = tb.o_proj,
    opBias = biasOf(op);
  return [
    ...proj(tb.q_proj, H * hd, 0, 'q'),
    ...proj(tb.k_proj, K * hd, H * hd, 'k'),
    ...proj(tb.v_proj, K * hd, (H + K) * hd, 'v'),
    ...attentionDispatches(ctx, li, state),
    ...matmul(
      ctx,
      `L${li}.o`,
      {N: d, K: H * hd, epilogue: 'residual'},
      [matrix(ctx, op.weight)],
      opBias == null ? null : host.weight(() => opBias),
      {x: buf.attn, out: buf.x},
    ),
  ];
}

/** [norm + gate | up + GeGLU] -> [down + residual]. */
function mlpDispatches(ctx: PrefillCtx, li: number, blk: ResidualBlock): PrefillDispatch[] {
  const {buf, host} = ctx,
    c = ctx.view.config;
  const d = c.hidden_size,
    m = c.intermediate_size / 2;
  const mlp = blk.mlp_block;
  const biases = [mlp.gate_proj, mlp.up_proj].map(biasOf);
  const withBias = biases.every((b) => b != null);
  const downBias = biasOf(mlp.down_proj);
  return [
    ...matmul(
      ctx,
      `L${li}.gateup`,
      {N: m, K: d, norm: {eps: c.rms_norm_eps}, epilogue: 'geglu'},
      [matrix(ctx, mlp.gate_proj.weight), matrix(ctx, mlp.up_proj.weight)],
      withBias ? pack(ctx, biases as tf.Tensor[]) : null,
      {x: buf.x, g: host.weight(() => blk.channel_pre_norm.weight.read()), out: buf.hid},
      withBias ? (biases as tf.Tensor[]) : undefined,
    ),
    ...matmul(
      ctx,
      `L${li}.down`,
      {N: d, K: m, epilogue: 'residual'},
      [matrix(ctx, mlp.down_proj.weight)],
      downBias == null ? null : host.weight(() => downBias),
      {x: buf.hid, out: buf.x},
    ),
  ];
}

/** Floats per token row of the largest shared buffer (what bounds the chunk against the binding limit). */
export function rowFloats(view: DecodeModelView): number {
  const c = view.config;
  const H = c.num_attention_heads,
    K = c.num_key_value_heads,
    hd = c.head_dim;
  return Math.max(c.hidden_size, 2 * c.lru_width, c.intermediate_size / 2, (H + 2 * K) * hd, H * hd);
}

/** The whole chunk for b rows of up to `capacity` steps. */
export function buildPrefillPlan(
  view: DecodeModelView,
  B: number,
  capacity: number,
  target: PrefillTarget,
  host: PrefillHost,
): PrefillPlan {
  const c = view.config;
  const d = c.hidden_size,
    e = c.lru_width,
    m = c.intermediate_size / 2;
  const H = c.num_attention_heads,
    K = c.num_key_value_heads,
    hd = c.head_dim;
  const M = B * capacity;
  const bytes = M * rowFloats(view) * 4;
  const most = Math.min(host.limits.maxStorageBufferBindingSize, host.limits.maxBufferSize);
  if (bytes > most) throw new Error(`fused prefill: ${M} token rows need ${bytes} bytes in one buffer, past ${most}`);
  const hasAttn = c.layers_block_type.includes('attention');
  const hasRec = c.layers_block_type.includes('recurrent');
  const own = (floats: number) => host.own(floats);
  const buf: PrefillShared = {
    dims: own(DIMS_WORDS),
    ids: own(M),
    pos: own(M),
    rope: own(hasAttn ? M * c.rotary_dim : 4),
    x: own(M * d),
    uy: own(hasRec ? M * 2 * e : 4),
    cv: own(hasRec ? M * e : 4),
    gates: own(hasRec ? M * 2 * e : 4),
    o: own(hasRec ? M * e : 4),
    qkv: own(hasAttn ? M * (H + 2 * K) * hd : 4),
    attn: own(hasAttn ? M * H * hd : 4),
    hid: own(M * m),
    sc: own(hasRec ? scanScratchFloats({E: e, W: c.conv1d_width, L: fusedPrefillConfig.scanSteps}, B, capacity) : 4),
    scratch: {},
    part: null,
    partFloats: 0,
  };
  const ctx: PrefillCtx = {view, host, B, capacity, buf, target};
  if (hasAttn) buf.scratch = attentionScratch(ctx);

  const dispatches = embeddingDispatches(ctx, view.embed);
  view.blocks.forEach((blk, li) => {
    const tb = blk.temporal_block;
    const st = target.layers[li];
    if (tb instanceof RecurrentBlock) {
      if (st.kind !== 'recurrent') throw new Error(`fused prefill: layer ${li}: state of another kind`);
      dispatches.push(...recurrentDispatches(ctx, li, blk, tb, st));
    } else {
      if (st.kind !== 'attention') throw new Error(`fused prefill: layer ${li}: state of another kind`);
      dispatches.push(...attentionBlockDispatches(ctx, li, blk, tb as LocalAttentionBlock, st));
    }
    dispatches.push(...mlpDispatches(ctx, li, blk));
  });
  if (buf.partFloats > 0) buf.part = own(buf.partFloats);
  return {dispatches, dims: buf.dims, ids: buf.ids, pos: buf.pos, rope: buf.rope, x: buf.x, ctx};
}
