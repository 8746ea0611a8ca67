/**
 * AdamW over named tf.Variables, global-norm clipping, and the warmup + cosine schedule.
 *   const params = new Map([['w', tf.variable(tf.zeros([4, 4]))]]);   // named tf.Variables
 *   const opt = new AdamW(params, {weightDecay: 0.01});
 *   const grads = new Map([['w', tf.onesLike(params.get('w')!)]]);   // by the same names
 *   const {grads: clipped, norm} = await clipByGlobalNorm(grads, 1.0);
 *   opt.apply(clipped, learningRate(opt.step + 1, {lr: 2e-4, totalSteps: 100, warmupSteps: 5}));
 *
 * tfjs ships Adam with L2 folded into the gradient but no AdamW; this follows PyTorch's
 * torch.optim.AdamW (decoupled decay p *= 1 - lr*wd, bias-corrected moments). The moments are
 * plain tensors held by name so a checkpoint can store and restore them exactly.
 */
import {tf} from '../tf';

export interface AdamWOptions {
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Decoupled weight decay. Default 0.01. */
  weightDecay?: number;
  /**
   * Which parameters decay. Default: rank >= 2 (matrices), so norms, biases and the RG-LRU's
   * recurrent_param are left alone, as HF's Trainer leaves out biases and norm weights.
   */
  decays?: (name: string, v: tf.Variable) => boolean;
}

export class AdamW {
  /** Updates applied so far (the bias corrections use it). */
  step = 0;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  private readonly m = new Map<string, tf.Variable>();
  private readonly v = new Map<string, tf.Variable>();
  private readonly decays: Set<string>;

  constructor(
    readonly params: Map<string, tf.Variable>,
    opts: AdamWOptions = {},
  ) {
    this.beta1 = opts.beta1 ?? 0.9;
    this.beta2 = opts.beta2 ?? 0.999;
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0.01;
    const decays = opts.decays ?? ((_: string, v: tf.Variable) => v.rank >= 2);
    this.decays = new Set([...params].filter(([n, v]) => decays(n, v)).map(([n]) => n));
    for (const [name, p] of params) {
      this.m.set(name, tf.variable(tf.zerosLike(p), false));
      this.v.set(name, tf.variable(tf.zerosLike(p), false));
    }
  }

  /** One update with learning rate lr; grads by parameter name (a missing one counts as 0). */
  apply(grads: Map<string, tf.Tensor>, lr: number): void {
    this.step++;
    const {beta1: b1, beta2: b2, eps} = this;
    const bc1 = 1 - b1 ** this.step,
      bc2 = 1 - b2 ** this.step;
    for (const [name, p] of this.params) {
      const g = grads.get(name);
      if (g == null) continue;
      tf.tidy(() => {
        const m = this.m.get(name)!,
          v = this.v.get(name)!;
        const m1 = tf.add(tf.mul(m, b1), tf.mul(g, 1 - b1));
        const v1 = tf.add(tf.mul(v, b2), tf.mul(tf.square(g), 1 - b2));
        m.assign(m1);
        v.assign(v1);
        const denom = tf.add(tf.div(tf.sqrt(v1), Math.sqrt(bc2)), eps);
        let next: tf.Tensor = p;
        if (this.weightDecay > 0 && this.decays.has(name)) next = tf.mul(next, 1 - lr * this.weightDecay);
        p.assign(tf.sub(next, tf.mul(tf.div(m1, denom), lr / bc1)));
      });
    }
  }

  /** The moments as `<name>.exp_avg` / `<name>.exp_avg_sq` (PyTorch's state names). */
  stateTensors(): Map<string, tf.Tensor> {
    const out = new Map<string, tf.Tensor>();
    for (const name of this.params.keys()) {
      out.set(`${name}.exp_avg`, this.m.get(name)!);
      out.set(`${name}.exp_avg_sq`, this.v.get(name)!);
    }
    return out;
  }

  /** Restores what stateTensors gave (values by the same names) and the step count. */
  loadState(step: number, get: (name: string) => Float32Array | undefined): void {
    for (const [name, p] of this.params) {
      for (const [key, target] of [
        [`${name}.exp_avg`, this.m.get(name)!],
        [`${name}.exp_avg_sq`, this.v.get(name)!],
      ] as const) {
        const data = get(key);
        if (data == null) throw new Error(`optimizer state lacks ${key}`);
        if (data.length !== p.size)
          throw new Error(`optimizer state ${key} has ${data.length} values, the parameter ${p.size}`);
        const t = tf.tensor(data, p.shape, 'float32');
        target.assign(t);
        t.dispose();
      }
    }
    this.step = step;
  }

  dispose(): void {
    for (const t of [...this.m.values(), ...this.v.values()]) t.dispose();
    this.m.clear();
    this.v.clear();
  }
}

/** Sum of many tensors by pairs: webgpu's addN cannot bind one input per parameter (~80). */
function sumPairwise(ts: tf.Tensor[]): tf.Tensor {
  let level = ts;
  while (level.length > 1) {
    const next: tf.Tensor[] = [];
    for (let i = 0; i < level.length; i += 2)
      next.push(i + 1 < level.length ? tf.add(level[i], level[i + 1]) : level[i]);
    level = next;
  }
  return level[0];
}

/**
 * Scales all gradients by min(1, maxNorm / ||g||) over their joint L2 norm; maxNorm <= 0 or
 * Infinity only measures. Returns new tensors (the caller disposes both sets) and the norm.
 * The scale is applied on the device and the norm read back afterwards, asynchronously, so a
 * GPU backend neither stalls on it nor needs a synchronous read (which webgpu in Node lacks).
 */
export async function clipByGlobalNorm(
  grads: Map<string, tf.Tensor>,
  maxNorm: number,
): Promise<{grads: Map<string, tf.Tensor>; norm: number}> {
  const sq = tf.tidy(() => sumPairwise([...grads.values()].map((g) => tf.sum(tf.square(g)))));
  const clip = maxNorm > 0 && Number.isFinite(maxNorm);
  // maxNorm / max(norm + 1e-6, maxNorm): exactly 1 below the limit.
  const scale = clip ? tf.tidy(() => tf.div(maxNorm, tf.maximum(tf.add(tf.sqrt(sq), 1e-6), maxNorm))) : null;
  const out = new Map<string, tf.Tensor>();
  for (const [k, g] of grads) out.set(k, scale == null ? g.clone() : tf.mul(g, scale));
  const norm = Math.sqrt((await sq.data())[0]);
  tf.dispose([sq, ...(scale ? [scale] : [])]);
  return {grads: out, norm};
}

export interface ScheduleOptions {
  /** Peak learning rate. */
  lr: number;
  totalSteps: number;
  /** Linear warmup from 0 over these many steps. */
  warmupSteps: number;
  /** Where the cosine ends, as a fraction of lr. Default 0.1. */
  minLrRatio?: number;
}

/** The learning rate of update number `step` (1-based): linear warmup, then cosine decay. */
export function learningRate(step: number, o: ScheduleOptions): number {
  const minLr = o.lr * (o.minLrRatio ?? 0.1);
  if (o.warmupSteps > 0 && step <= o.warmupSteps) return (o.lr * step) / o.warmupSteps;
  const span = Math.max(1, o.totalSteps - o.warmupSteps);
  const progress = Math.min(1, Math.max(0, (step - o.warmupSteps) / span));
  return minLr + 0.5 * (o.lr - minLr) * (1 + Math.cos(Math.PI * progress));
}
