/**
 * Trainer: fine-tuning with what LayersModel.fit lacks for a language model: AdamW, warmup +
 * cosine schedule, global-norm clipping, gradient accumulation weighted by target tokens,
 * padded or packed batches, LoRA, gradient checkpointing, held-out evaluation, and checkpoints
 * that resume to exactly the uninterrupted run.
 *   import {loadJsonl} from './data';
 *   const train = loadJsonl('train.jsonl', tok, {seqLen: 256});
 *   const trainer = new Trainer(model, {train, steps: 100, lora: {rank: 8}});
 *   const result = await trainer.train();       // result.evalAfter?.perplexity, result.history
 *
 * Host reads are asynchronous (await tensor.data()), so it also runs on webgpu in Node, which
 * cannot read device memory synchronously.
 *
 * Everything random derives from `seed`: the data order (one shuffle per epoch, a function of
 * seed and epoch), LoRA's initial A, and dropout masks (one seed per micro-batch from an Rng
 * whose state goes into each checkpoint). A checkpoint holds the trainable weights, AdamW's
 * moments, step, data position and that state, so `resume()` continues bit for bit.
 */
import * as fs from 'fs';
import * as path from 'path';
import {checkpointTensors, readAllTensorData, writeTensorData} from '../../converters/checkpoint_tensors';
import {writeHFFiles} from '../../converters/hf';
import {ADAPTER_WEIGHTS, adapterWriter} from '../../converters/lora_adapter';
import {listCheckpoint, readHeader, readTensor, TensorMeta, writeSafetensors} from '../../converters/safetensors';
import {addLora, LoraConfig, loraAdapters, loraParameters, setLoraTraining} from '../../layers/lora';
import type {CausalLMCore} from '../core/model';
import {tf} from '../tf';
import {deriveSeed, hashNumbers, Rng} from '../util/rng';
import {
  listCheckpoints,
  OPTIMIZER_STATE,
  pruneCheckpoints,
  removeLeftovers,
  stepDirName,
  TRAINER_STATE,
  writeDirAtomically,
} from './checkpoint';
import {Batch, buildBatch, Dataset, Example, planBatches} from './data';
import {AdamW, clipByGlobalNorm, learningRate} from './optimizer';

export interface TrainerOptions {
  /** Training examples (loadJsonl's Dataset, or ids + labels). */
  train: Dataset | Example[];
  /** Held-out examples: loss and perplexity before, every evalEvery steps, and after. */
  eval?: Dataset | Example[] | null;
  /** Rows per micro-batch. Default 4. */
  batchSize?: number;
  /** Longest row (packing fills rows up to it). Default: the longest example. */
  seqLen?: number;
  /** Pack several examples into each row (positionIds restart at 0 for each). Default false. */
  pack?: boolean;
  /** Shuffle the examples every epoch (seeded). Default true. */
  shuffle?: boolean;
  /** Pad id for batches. Default 0 (Gemma's <pad>). */
  padId?: number;
  /** Micro-batches per optimizer step. Default 1. */
  gradAccum?: number;
  /** Passes over the data (default 1), unless `steps` is given. */
  epochs?: number;
  /** Optimizer steps; the data repeats as needed. Overrides epochs. */
  steps?: number;
  /** Peak learning rate. Default 2e-4 with LoRA, 2e-5 without. */
  lr?: number;
  /** Linear warmup steps. Default 5% of the steps. */
  warmupSteps?: number;
  /** The cosine ends at lr * minLrRatio. Default 0.1. */
  minLrRatio?: number;
  /** AdamW's decoupled weight decay (matrices only). Default 0.01. */
  weightDecay?: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Clip the gradients' global L2 norm to this; 0 turns clipping off. Default 1. */
  maxGradNorm?: number;
  /** Train LoRA adapters (added if the model has none) instead of every weight. */
  lora?: LoraConfig | null;
  /** Recompute block activations in the backward pass: memory of one block's activations, one extra forward. */
  gradientCheckpointing?: boolean;
  seed?: number;
  /** Evaluate every this many steps as well (0: only before and after). */
  evalEvery?: number;
  /** Directory for checkpoints (`<outDir>/checkpoints/step-NNNNNN`); none are written without it. */
  outDir?: string | null;
  /** Write a checkpoint every this many steps (0: only at the end). */
  checkpointEvery?: number;
  /** Checkpoints kept on disk (the newest). Default 2. */
  keepCheckpoints?: number;
  onStep?: (s: StepInfo) => void;
  onEval?: (e: EvalResult) => void;
  onCheckpoint?: (dir: string, step: number) => void;
  /** One-line notes, e.g. a damaged checkpoint that resume() passed over. */
  log?: (line: string) => void;
}

export interface StepInfo {
  step: number;
  totalSteps: number;
  /** Mean loss over the step's target tokens. */
  loss: number;
  lr: number;
  /** Before clipping. */
  gradNorm: number;
  /** Target tokens in this step. */
  targets: number;
  /** Input tokens (padding excluded) per second over this step. */
  tokensPerSecond: number;
  epoch: number;
  elapsedSeconds: number;
  /** Estimated from the mean step time so far. */
  remainingSeconds: number;
}

export interface EvalResult {
  step: number;
  loss: number;
  perplexity: number;
  targets: number;
}

export interface TrainResult {
  steps: number;
  evalBefore: EvalResult | null;
  evalAfter: EvalResult | null;
  history: {step: number; loss: number; lr: number; gradNorm: number}[];
  /** The last checkpoint written, if any. */
  checkpoint: string | null;
  /** True when requestStop() ended the run early. */
  stopped: boolean;
}

export interface LossAndGradients {
  /** Mean loss over the target tokens of all the batches. */
  loss: number;
  targets: number;
  /** By parameter name; the caller disposes them. */
  grads: Map<string, tf.Tensor>;
}

interface State {
  step: number;
  epoch: number;
  batchInEpoch: number;
  rng: number;
  history: TrainResult['history'];
}

/** What must match between a checkpoint and the run that resumes from it. */
interface Settings {
  batchSize: number;
  seqLen: number;
  pack: boolean;
  shuffle: boolean;
  padId: number;
  gradAccum: number;
  totalSteps: number;
  lr: number;
  warmupSteps: number;
  minLrRatio: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  eps: number;
  maxGradNorm: number;
  seed: number;
  lora: {rank: number; alpha: number; dropout: number; targets: string[]} | null;
  data: number;
}

/** A checkpoint of another run (other settings or data): resume() does not pass over it. */
class SettingsMismatch extends Error {}

const examplesOf = (d: Dataset | Example[]) => (Array.isArray(d) ? d : d.examples);

/** Tokens that are not padding. */
function realTokens(b: Batch): number {
  if (b.attentionMask == null) return b.inputIds.length * b.inputIds[0].length;
  return b.attentionMask.reduce((n, row) => n + row.reduce((a, x) => a + x, 0), 0);
}

export class Trainer {
  readonly model: CausalLMCore;
  /** The trainable variables by name: HF names, or PEFT names for LoRA. */
  readonly params: Map<string, tf.Variable>;
  readonly optimizer: AdamW;
  readonly totalSteps: number;
  readonly settings: Settings;
  private readonly opts: TrainerOptions;
  private readonly examples: Example[];
  private readonly lengths: number[];
  private readonly evalBatches: Batch[];
  private readonly rng: Rng;
  private readonly isLora: boolean;
  private state: State;
  private planCache: {epoch: number; plan: number[][][]} | null = null;
  private stopRequested = false;

  constructor(model: CausalLMCore, opts: TrainerOptions) {
    this.model = model;
    this.opts = opts;
    this.examples = examplesOf(opts.train);
    if (this.examples.length === 0) throw new Error('no training examples');
    this.lengths = this.examples.map((e) => e.ids.length);
    const int = (v: number | undefined, name: string, dflt: number, min = 1) => {
      const x = v ?? dflt;
      if (!Number.isInteger(x) || x < min) throw new Error(`${name} must be an integer >= ${min}, got ${x}`);
      return x;
    };
    const batchSize = int(opts.batchSize, 'batchSize', 4);
    const gradAccum = int(opts.gradAccum, 'gradAccum', 1);
    const longest = this.lengths.reduce((a, b) => Math.max(a, b), 0);
    const seqLen = int(opts.seqLen, 'seqLen', Math.max(longest, 2), 2);
    if (longest > seqLen)
      throw new Error(
        `an example has ${longest} tokens, more than seqLen ${seqLen} (load the data with the same seqLen)`,
      );
    const pack = opts.pack ?? false;
    const shuffle = opts.shuffle ?? true;
    const seed = opts.seed ?? 0;

    const numeric = (v: number | undefined, name: string, dflt: number, ok: (x: number) => boolean) => {
      const x = v ?? dflt;
      if (!Number.isFinite(x) || !ok(x)) throw new Error(`${name} is out of range: ${x}`);
      return x;
    };
    const lora = opts.lora != null || loraAdapters(model).size > 0;
    const hyper = {
      lr: numeric(opts.lr, 'lr', lora ? 2e-4 : 2e-5, (x) => x > 0),
      minLrRatio: numeric(opts.minLrRatio, 'minLrRatio', 0.1, (x) => x >= 0 && x <= 1),
      weightDecay: numeric(opts.weightDecay, 'weightDecay', 0.01, (x) => x >= 0),
      beta1: numeric(opts.beta1, 'beta1', 0.9, (x) => x >= 0 && x < 1),
      beta2: numeric(opts.beta2, 'beta2', 0.999, (x) => x >= 0 && x < 1),
      eps: numeric(opts.eps, 'eps', 1e-8, (x) => x > 0),
      maxGradNorm: numeric(opts.maxGradNorm, 'maxGradNorm', 1, (x) => x >= 0),
    };
    const partial = {batchSize, seqLen, pack, shuffle, seed};
    let totalSteps: number;
    if (opts.steps != null) {
      totalSteps = int(opts.steps, 'steps', 1);
    } else {
      const epochs = int(opts.epochs, 'epochs', 1);
      let micro = 0;
      for (let e = 0; e < epochs; e++) micro += this.planFor(e, partial).length;
      totalSteps = Math.ceil(micro / gradAccum);
    }
    this.totalSteps = totalSteps;
    const warmupSteps = int(opts.warmupSteps, 'warmupSteps', Math.floor(totalSteps * 0.05), 0);

    // Only now, with every option checked, touch the model.
    if (opts.lora != null && loraAdapters(model).size === 0) addLora(model, {seed, ...opts.lora});
    this.isLora = lora;
    this.params = lora
      ? loraParameters(model)
      : new Map(
          [...model.namedParameters()].filter(([, v]) => v.trainable).map(([n, v]) => [n, v.read() as tf.Variable]),
        );
    if (this.params.size === 0) throw new Error('the model has no trainable weights');
    this.state = {step: 0, epoch: 0, batchInEpoch: 0, rng: deriveSeed(seed, 2), history: []};
    this.rng = new Rng(this.state.rng);
    const adapters = [...loraAdapters(model).values()];
    this.settings = {
      batchSize,
      seqLen,
      pack,
      shuffle,
      padId: opts.padId ?? 0,
      gradAccum,
      totalSteps,
      warmupSteps,
      ...hyper,
      seed,
      lora: lora
        ? {
            rank: adapters[0].rank,
            alpha: adapters[0].alpha,
            dropout: adapters[0].dropout,
            targets: [...new Set(adapters.map((a) => a.module.slice(a.module.lastIndexOf('.') + 1)))],
          }
        : null,
      // A hash of every id and label: a resumed run must train on the same data.
      data: hashNumbers(
        (function* (ex: Example[]) {
          for (const e of ex) {
            yield e.ids.length;
            yield* e.ids;
            yield* e.labels;
          }
        })(this.examples),
      ),
    };
    this.optimizer = new AdamW(this.params, {
      beta1: this.settings.beta1,
      beta2: this.settings.beta2,
      eps: this.settings.eps,
      weightDecay: this.settings.weightDecay,
    });
    const evalEx = opts.eval != null ? examplesOf(opts.eval) : [];
    const evalLen = evalEx.reduce((a, e) => Math.max(a, e.ids.length), seqLen);
    this.evalBatches = planBatches(
      evalEx.map((e) => e.ids.length),
      evalEx.map((_, i) => i),
      {batchSize, seqLen: evalLen, pack},
    ).map((rows) => buildBatch(evalEx, rows, this.settings.padId, pack));
  }

  get step(): number {
    return this.state.step;
  }
  /** Where the next batch comes from. */
  get dataPosition(): {epoch: number; batchInEpoch: number} {
    return {epoch: this.state.epoch, batchInEpoch: this.state.batchInEpoch};
  }

  /** Ends train() after the current step (which still checkpoints when there is an outDir). */
  requestStop(): void {
    this.stopRequested = true;
  }

  private planFor(
    epoch: number,
    s: {batchSize: number; seqLen: number; pack: boolean; shuffle: boolean; seed: number},
  ): number[][][] {
    if (this.planCache?.epoch === epoch) return this.planCache.plan;
    const order = this.examples.map((_, i) => i);
    if (s.shuffle) new Rng(deriveSeed(s.seed, 1, epoch)).shuffle(order);
    const plan = planBatches(this.lengths, order, s);
    this.planCache = {epoch, plan};
    return plan;
  }

  /** The next gradAccum micro-batches of the data stream (fewer at the very end of the epochs). */
  private nextBatches(): Batch[] {
    const out: Batch[] = [];
    while (out.length < this.settings.gradAccum) {
      if (this.opts.steps == null && this.state.epoch >= (this.opts.epochs ?? 1)) break;
      const plan = this.planFor(this.state.epoch, this.settings);
      out.push(buildBatch(this.examples, plan[this.state.batchInEpoch], this.settings.padId, this.settings.pack));
      if (++this.state.batchInEpoch >= plan.length) {
        this.state.epoch++;
        this.state.batchInEpoch = 0;
      }
    }
    return out;
  }

  private forwardLoss(batch: Batch, withLabels = true): tf.Scalar {
    return this.model.forward({
      inputIds: batch.inputIds,
      labels: withLabels ? batch.labels : null,
      attentionMask: batch.attentionMask,
      positionIds: batch.positionIds,
      gradientCheckpointing: this.opts.gradientCheckpointing ?? false,
    }).loss!;
  }

  /**
   * Loss and gradients of a step made of these micro-batches: each one's mean loss weighted by
   * its share of the target tokens, so the result is the mean over all of them, as one big
   * batch would give. `seeds` (one per batch) turn on LoRA dropout.
   */
  async lossAndGradients(batches: Batch[], seeds?: number[]): Promise<LossAndGradients> {
    const total = batches.reduce((s, b) => s + b.targets, 0);
    const vars = [...this.params.values()];
    const nameOf = new Map([...this.params].map(([n, v]) => [v.name, n]));
    const grads = new Map<string, tf.Tensor>();
    const losses: tf.Tensor[] = [];
    let loss = 0;
    try {
      batches.forEach((batch, i) => {
        if (batch.targets === 0) return;
        if (this.isLora) setLoraTraining(this.model, seeds != null, seeds?.[i]);
        const w = batch.targets / total;
        const r = tf.variableGrads(() => tf.mul(this.forwardLoss(batch), w) as tf.Scalar, vars);
        losses.push(r.value);
        for (const [vname, g] of Object.entries(r.grads)) {
          const name = nameOf.get(vname)!;
          const prev = grads.get(name);
          if (prev == null) {
            grads.set(name, g);
          } else {
            grads.set(name, tf.add(prev, g));
            tf.dispose([prev, g]);
          }
        }
      });
      // Read only now, so that a GPU queues every micro-batch before the first wait.
      for (const l of losses) loss += (await l.data())[0];
    } catch (e) {
      tf.dispose([...grads.values()]);
      throw e;
    } finally {
      tf.dispose(losses);
      if (this.isLora) setLoraTraining(this.model, false);
    }
    for (const [name, v] of this.params) if (!grads.has(name)) grads.set(name, tf.zerosLike(v));
    return {loss, targets: total, grads};
  }

  /** One optimizer step on the next micro-batches. */
  async trainStep(): Promise<StepInfo> {
    const t0 = Date.now();
    const batches = this.nextBatches();
    if (batches.length === 0) throw new Error('no data left for another step');
    const seeds = batches.map(() => this.rng.nextUint32());
    const {loss, targets, grads} = await this.lossAndGradients(batches, seeds);
    const {grads: clipped, norm} = await clipByGlobalNorm(grads, this.settings.maxGradNorm);
    tf.dispose([...grads.values()]);
    const step = this.state.step + 1;
    const lr = learningRate(step, this.settings);
    this.optimizer.apply(clipped, lr);
    tf.dispose([...clipped.values()]);
    this.state.step = step;
    this.state.rng = this.rng.state;
    this.state.history.push({step, loss, lr, gradNorm: norm});
    const seconds = (Date.now() - t0) / 1000;
    const tokens = batches.reduce((s, b) => s + realTokens(b), 0);
    return {
      step,
      totalSteps: this.totalSteps,
      loss,
      lr,
      gradNorm: norm,
      targets,
      epoch: this.state.epoch,
      tokensPerSecond: tokens / Math.max(seconds, 1e-6),
      elapsedSeconds: 0,
      remainingSeconds: 0,
    };
  }

  /** Mean loss over every target token of the held-out set, and its perplexity. */
  async evaluate(): Promise<EvalResult | null> {
    if (this.evalBatches.length === 0) return null;
    let nll = 0,
      n = 0;
    for (const b of this.evalBatches) {
      if (b.targets === 0) continue;
      const loss = tf.tidy(() => this.forwardLoss(b)); // the tidy frees the logits
      nll += (await loss.data())[0] * b.targets;
      n += b.targets;
      loss.dispose();
    }
    const mean = nll / Math.max(n, 1);
    return {step: this.state.step, loss: mean, perplexity: Math.exp(mean), targets: n};
  }

  /** Trains to totalSteps (from wherever resume() left it), evaluating and checkpointing on the way. */
  async train(): Promise<TrainResult> {
    const o = this.opts;
    const root = o.outDir != null ? path.join(o.outDir, 'checkpoints') : null;
    if (root != null) removeLeftovers(root);
    this.stopRequested = false;
    const evalBefore = this.state.step === 0 ? await this.evaluate() : null;
    if (evalBefore) o.onEval?.(evalBefore);
    const start = Date.now(),
      firstStep = this.state.step;
    let checkpoint: string | null = null,
      lastSaved = -1;
    while (this.state.step < this.totalSteps && !this.stopRequested) {
      const info = await this.trainStep();
      info.elapsedSeconds = (Date.now() - start) / 1000;
      info.remainingSeconds = (info.elapsedSeconds / (info.step - firstStep)) * (this.totalSteps - info.step);
      o.onStep?.(info);
      if (o.evalEvery && info.step % o.evalEvery === 0 && info.step < this.totalSteps) {
        const e = await this.evaluate();
        if (e) o.onEval?.(e);
      }
      if (root != null && o.checkpointEvery && info.step % o.checkpointEvery === 0) {
        checkpoint = await this.saveCheckpoint();
        lastSaved = info.step;
      }
      // Lets signal handlers (Ctrl-C -> requestStop) and progress output run between steps.
      await new Promise((r) => setImmediate(r));
    }
    if (root != null && lastSaved !== this.state.step) checkpoint = await this.saveCheckpoint();
    const evalAfter = await this.evaluate();
    if (evalAfter) o.onEval?.(evalAfter);
    return {
      steps: this.state.step,
      evalBefore,
      evalAfter,
      history: this.state.history,
      checkpoint,
      stopped: this.state.step < this.totalSteps,
    };
  }

  /**
   * Writes `<outDir>/checkpoints/step-NNNNNN` (or `dir`): the trainable weights (a full HF
   * checkpoint, or the LoRA adapter), AdamW's moments and trainer_state.json, atomically.
   */
  async saveCheckpoint(dir?: string): Promise<string> {
    if (dir == null) {
      if (this.opts.outDir == null) throw new Error('saveCheckpoint: no directory and no outDir');
      dir = path.join(this.opts.outDir, 'checkpoints', stepDirName(this.state.step));
    }
    // Host backends are read synchronously while writing; a GPU backend's values are fetched first.
    const host = ['cpu', 'wasm', 'tensorflow'].includes(tf.getBackend());
    const values = this.isLora || host ? undefined : await readAllTensorData(this.model);
    const moments = await Promise.all(
      [...this.optimizer.stateTensors()].map(async ([name, t]) => ({
        name,
        shape: t.shape as number[],
        data: (await t.data()) as Float32Array,
      })),
    );
    const adapter = this.isLora ? await adapterWriter(this.model) : null;
    const out = await writeDirAtomically(dir, async (tmp) => {
      if (adapter != null) adapter(tmp);
      else writeHFFiles(this.model, tmp, {values});
      writeSafetensors(path.join(tmp, OPTIMIZER_STATE), moments, {format: 'pt'});
      const json = {
        format: 'griffin-tfjs-trainer',
        version: 1,
        ...this.state,
        optimizerStep: this.optimizer.step,
        settings: this.settings,
      };
      fs.writeFileSync(path.join(tmp, TRAINER_STATE), `${JSON.stringify(json, null, 1)}\n`);
    });
    if (this.opts.outDir != null && path.dirname(out) === path.join(this.opts.outDir, 'checkpoints')) {
      pruneCheckpoints(path.dirname(out), this.opts.keepCheckpoints ?? 2);
    }
    this.opts.onCheckpoint?.(out, this.state.step);
    return out;
  }

  /**
   * Continues from a checkpoint directory, or from the newest one under `<outDir>/checkpoints`.
   * Returns the directory used, or null when there is none. A checkpoint written with other
   * settings or data is refused (it could not continue the same run).
   */
  resume(dir?: string): string | null {
    if (dir != null) {
      this.resumeFrom(dir);
      return dir;
    }
    if (this.opts.outDir == null) throw new Error('resume: no directory and no outDir');
    const root = path.join(this.opts.outDir, 'checkpoints');
    removeLeftovers(root);
    // Newest first; a damaged one (unreadable, truncated, corrupt) gives way to the one before it.
    // Other settings or data are the caller's mistake, not damage: those stop the resume.
    const all = listCheckpoints(root).reverse();
    for (const [i, {dir: d}] of all.entries()) {
      try {
        this.resumeFrom(d);
        return d;
      } catch (e) {
        if (e instanceof SettingsMismatch || i === all.length - 1) throw e;
        this.opts.log?.(`${d} is damaged (${(e as Error).message}); resuming from the checkpoint before it`);
      }
    }
    return null;
  }

  private resumeFrom(dir: string): void {
    const stateFile = path.join(dir, TRAINER_STATE);
    let json: State & {format?: string; optimizerStep: number; settings: Settings};
    try {
      json = JSON.parse(fs.readFileSync(stateFile, 'utf8'));
    } catch (e) {
      throw new Error(
        `${stateFile}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found (not a training checkpoint)' : (e as Error).message}`,
      );
    }
    if (json.format !== 'griffin-tfjs-trainer') throw new Error(`${stateFile}: not a griffin-tfjs trainer state`);
    for (const key of Object.keys(this.settings) as (keyof Settings)[]) {
      const was = JSON.stringify(json.settings?.[key]),
        now = JSON.stringify(this.settings[key]);
      if (was !== now) {
        throw new SettingsMismatch(
          `${dir}: written with ${key === 'data' ? 'other training data' : `${key} ${was}`}, this run has ${key === 'data' ? 'different data' : now}; resume with the same settings`,
        );
      }
    }
    if (this.isLora) {
      const {tensors} = readHeader(path.join(dir, ADAPTER_WEIGHTS));
      this.loadInto(dir, (name) => tensors.get(name));
    } else {
      const metas = listCheckpoint(dir);
      const ckpt = checkpointTensors(this.model);
      for (const [name, t] of ckpt) {
        const m = metas.get(name);
        if (m == null) throw new Error(`${dir}: checkpoint lacks ${name}`);
        writeTensorData(t, readTensor(m) as Float32Array);
      }
    }
    const {tensors: moments} = readHeader(path.join(dir, OPTIMIZER_STATE));
    this.optimizer.loadState(json.optimizerStep, (name) => {
      const m = moments.get(name);
      return m == null ? undefined : (readTensor(m) as Float32Array);
    });
    this.state = {
      step: json.step,
      epoch: json.epoch,
      batchInEpoch: json.batchInEpoch,
      rng: json.rng,
      history: json.history ?? [],
    };
    this.rng.state = json.rng;
    this.planCache = null;
  }

  private loadInto(dir: string, meta: (name: string) => TensorMeta | undefined): void {
    for (const [name, v] of this.params) {
      const m = meta(name);
      if (m == null) throw new Error(`${dir}: checkpoint lacks ${name}`);
      if (m.shape.join() !== v.shape.join())
        throw new Error(`${dir}: ${name} has shape [${m.shape}], expected [${v.shape}]`);
      const t = tf.tensor(readTensor(m) as Float32Array, v.shape, 'float32');
      v.assign(t);
      t.dispose();
    }
  }

  /** Frees the optimizer's moments (the model and its adapters stay). */
  dispose(): void {
    this.optimizer.dispose();
  }
}
