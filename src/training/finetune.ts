/**
 * The whole fine-tuning job behind `griffin finetune`: tokenizer, data (validated in full
 * first), model, Trainer, then the result written where fromPretrained loads it.
 *   const r = await finetune({model: 'ckpt/', data: 'train.jsonl', eval: 'eval.jsonl', out: 'tuned/', steps: 100});
 *   const r2 = await finetune({model: 'ckpt/', data: 'chat.jsonl', out: 'lora/', lora: {rank: 8}, merge: true});
 *
 * `out` receives: full fine-tuning, the model (HF layout, or tfjs with format 'tfjs');
 * LoRA, adapter_model.safetensors + adapter_config.json, and with `merge` also the merged
 * model; always tokenizer.model, training_summary.json and checkpoints/ (for `resume`).
 */
import * as fs from 'fs';
import * as path from 'path';
import {writeDirAtomic} from '../../converters/atomic_dir';
import {checkpointConfig, pretrainedWriter} from '../../converters/index';
import {adapterWriter} from '../../converters/lora_adapter';
import {keepBeside, sameDir} from '../../converters/model_dir';
import {LoraConfig, mergeLora} from '../../layers/lora';
import {gpuBufferLimits} from '../../ops/gpu_limits';
import {parameterCount} from '../config';
import {type PretrainedOptions, RecurrentGemmaForCausalLM} from '../model';
import {tf} from '../tf';
import {GemmaTokenizer, TOKENIZER_CONFIG, TOKENIZER_JSON, TOKENIZER_MODEL} from '../tokenizer';
import {latestCheckpoint} from './checkpoint';
import {Dataset, loadJsonl} from './data';
import {checkTrainingFits} from './memory';
import {EvalResult, StepInfo, Trainer, TrainResult} from './trainer';

export interface FinetuneOptions {
  /** Checkpoint directory (HF or tfjs layout) to start from. */
  model: string;
  /** Training JSONL. */
  data: string;
  /** Held-out JSONL for loss / perplexity. */
  eval?: string | null;
  out: string;
  /** What a LoRA adapter's adapter_config.json names as its base (default: the model folder's absolute path). */
  baseModel?: string;
  /** Default `<model>/tokenizer.model`. */
  tokenizer?: string;
  /** Train LoRA adapters instead of every weight. */
  lora?: LoraConfig | null;
  /**
   * How the base weights are held (fromPretrained's dtype and groupSize): a compact base is
   * frozen, so it needs `lora` (QLoRA style: adapters float32, base untouched). Default float32.
   */
  load?: PretrainedOptions;
  /** With LoRA: also write the merged model (W += (alpha / r) B A) to `out`. */
  merge?: boolean;
  /** Layout of the written model. Default 'hf'. */
  format?: 'hf' | 'tfjs';
  epochs?: number;
  steps?: number;
  lr?: number;
  batchSize?: number;
  /** Default 512. */
  seqLen?: number;
  gradAccum?: number;
  pack?: boolean;
  /** Leave out lines of invalid UTF-8 in the data (counted, with a warning) instead of failing. */
  skipBadLines?: boolean;
  warmupSteps?: number;
  weightDecay?: number;
  maxGradNorm?: number;
  seed?: number;
  evalEvery?: number;
  checkpointEvery?: number;
  /** Continue from the newest checkpoint in `<out>/checkpoints` (from scratch if there is none). */
  resume?: boolean;
  gradientCheckpointing?: boolean;
  /** Aborting stops after the current step, with a checkpoint; nothing else is written. */
  signal?: AbortSignal;
  onStep?: (s: StepInfo) => void;
  onEval?: (e: EvalResult) => void;
  onCheckpoint?: (dir: string, step: number) => void;
  /** One-line notes (data summary, resume point). */
  log?: (line: string) => void;
}

export interface FinetuneResult {
  out: string;
  train: TrainResult;
  trainData: Dataset;
  evalData: Dataset | null;
  resumedFrom: string | null;
  /** The trained model (merged when merge was asked); the caller disposes it. */
  model: RecurrentGemmaForCausalLM;
  tokenizer: GemmaTokenizer;
}

function describe(d: Dataset): string {
  const extra = [
    d.truncated && `${d.truncated} truncated`,
    d.dropped && `${d.dropped} dropped (nothing to train after truncation)`,
    d.skipped && `warning: ${d.skipped} line${d.skipped > 1 ? 's' : ''} of invalid UTF-8 skipped`,
  ].filter(Boolean);
  return `${d.file}: ${d.records} records, ${d.examples.length} rows, ${d.targets} target tokens${extra.length ? ` (${extra.join(', ')})` : ''}`;
}

export async function finetune(o: FinetuneOptions): Promise<FinetuneResult> {
  const log = o.log ?? (() => {});
  if (sameDir(o.out, o.model))
    throw new Error(
      `the output directory ${o.out} is the model directory ${o.model} (symlinks resolved): choose another`,
    );
  if (!fs.existsSync(o.model) || !fs.statSync(o.model).isDirectory())
    throw new Error(`model directory not found: ${o.model}`);
  if (o.merge && o.lora == null) throw new Error('merge applies to LoRA training only');
  const ckptRoot = path.join(o.out, 'checkpoints');
  if (!o.resume && latestCheckpoint(ckptRoot) != null) {
    throw new Error(
      `${o.out} already holds checkpoints of a run: pass --resume to continue it, or choose another output directory`,
    );
  }
  const tokFile = o.tokenizer ?? path.join(o.model, TOKENIZER_MODEL);
  if (!fs.existsSync(tokFile))
    throw new Error(`tokenizer not found: ${tokFile}${o.tokenizer ? '' : ' (pass --tokenizer)'}`);
  const tokenizer = await GemmaTokenizer.load(tokFile);

  // All data is read and checked before the (slow) model load, so a bad line fails fast.
  const seqLen = o.seqLen ?? 512;
  const trainData = loadJsonl(o.data, tokenizer, {seqLen, skipBadLines: o.skipBadLines});
  log(describe(trainData));
  const evalData = o.eval ? loadJsonl(o.eval, tokenizer, {seqLen, skipBadLines: o.skipBadLines}) : null;
  if (evalData) log(describe(evalData));

  // The LoRA rank and a floor on the memory, from the config alone, before the model is built.
  const dtype = o.load?.dtype ?? 'float32';
  const bits = {auto: 4, float32: 32, bfloat16: 16, float16: 16, int8: 8, int4: 4}[dtype];
  const config = checkpointConfig(o.model);
  checkTrainingFits(
    config,
    {batchSize: o.batchSize ?? 4, seqLen, lora: o.lora, weightBytes: (bits / 8) * parameterCount(config)},
    tf.getBackend(),
    gpuBufferLimits(),
  );
  const model = await RecurrentGemmaForCausalLM.fromPretrained(o.model, o.load);
  try {
    if (model.weightDtype !== 'float32' && o.lora == null) {
      throw new Error(
        `the base is held as ${model.weightDtype} and frozen: fine-tune it with LoRA (lora / --lora-rank)`,
      );
    }
    if (tokenizer.vocabSize > model.config.vocab_size) {
      throw new Error(
        `${tokFile} has ${tokenizer.vocabSize} pieces but the model's vocabulary is ${model.config.vocab_size}: not a matching pair`,
      );
    }
    const trainer = new Trainer(model, {
      train: trainData,
      eval: evalData,
      seqLen,
      batchSize: o.batchSize,
      pack: o.pack,
      gradAccum: o.gradAccum,
      epochs: o.epochs,
      steps: o.steps,
      lr: o.lr,
      warmupSteps: o.warmupSteps,
      weightDecay: o.weightDecay,
      maxGradNorm: o.maxGradNorm,
      seed: o.seed,
      lora: o.lora,
      gradientCheckpointing: o.gradientCheckpointing,
      evalEvery: o.evalEvery,
      outDir: o.out,
      checkpointEvery: o.checkpointEvery,
      padId: Math.max(tokenizer.padId, 0),
      onStep: o.onStep,
      onEval: o.onEval,
      onCheckpoint: o.onCheckpoint,
      log,
    });
    let resumedFrom: string | null = null;
    if (o.resume) {
      resumedFrom = trainer.resume();
      log(
        resumedFrom
          ? `resuming from ${resumedFrom} (step ${trainer.step} of ${trainer.totalSteps})`
          : `no checkpoint in ${ckptRoot}: starting from step 0`,
      );
    }
    const onAbort = () => trainer.requestStop();
    o.signal?.addEventListener('abort', onAbort);
    let train: TrainResult;
    try {
      train = await trainer.train();
    } finally {
      o.signal?.removeEventListener('abort', onAbort);
      trainer.dispose();
    }
    if (!train.stopped) {
      const summary = {
        base_model: path.resolve(o.model),
        data: path.resolve(o.data),
        eval: o.eval ? path.resolve(o.eval) : null,
        steps: train.steps,
        lora: o.lora ?? null,
        merged: !!o.merge,
        settings: trainer.settings,
        eval_before: train.evalBefore,
        eval_after: train.evalAfter,
        history: train.history,
      };
      // Everything is read first, then written in one atomic save (converters/atomic_dir.ts).
      const adapter =
        o.lora != null ? await adapterWriter(model, {baseModel: o.baseModel ?? path.resolve(o.model)}) : null;
      if (o.lora != null && o.merge) mergeLora(model);
      const weights = o.lora == null || o.merge ? await pretrainedWriter(model, {format: o.format ?? 'hf'}) : null;
      await writeDirAtomic(
        o.out,
        (tmp) => {
          adapter?.(tmp);
          weights?.(tmp);
          // The tokenizer trained with, and only it: a stale tokenizer.json would be preferred to it.
          fs.copyFileSync(tokFile, path.join(tmp, tokFile.endsWith('.json') ? TOKENIZER_JSON : TOKENIZER_MODEL));
          const tokConfig = path.join(path.dirname(tokFile), TOKENIZER_CONFIG);
          if (fs.existsSync(tokConfig)) fs.copyFileSync(tokConfig, path.join(tmp, TOKENIZER_CONFIG));
          fs.writeFileSync(path.join(tmp, 'training_summary.json'), `${JSON.stringify(summary, null, 1)}\n`);
        },
        {keep: keepBeside({tokenizer: true})},
      );
    }
    return {out: o.out, train, trainData, evalData, resumedFrom, model, tokenizer};
  } catch (e) {
    model.dispose();
    throw e;
  }
}
