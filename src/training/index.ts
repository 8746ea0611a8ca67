/**
 * Fine-tuning: data, Trainer, AdamW, LoRA, checkpoints, and the one-call `finetune` behind
 * `griffin finetune`.
 *   import {finetune} from 'griffin-tfjs/dist/src/training';
 *   await finetune({model: 'ckpt/', data: 'train.jsonl', out: 'tuned/', lora: {rank: 8}, steps: 200});
 *
 * Plain tfjs training works too: `model.compile({optimizer, loss: causalLMLoss})` then
 * `model.fit(ids, labels)` with labels [b, t] (-100 = not a target). tfjs would demand targets
 * shaped like the output [b, t, V]; with causalLMLoss the model checks them as [b, t] instead
 * (RecurrentGemmaForCausalLM.standardizeUserDataXY). The kernels training needs on cpu / wasm
 * (gather's gradient) are registered with the backend (ops/register/).
 */

export {loadLoraAdapter, saveLoraAdapter} from '../../converters/lora_adapter';
export {blockTrainableVariables, checkpointedBlock} from '../../layers/grad_checkpoint';
export type {LoraConfig} from '../../layers/lora';
export {
  ATTENTION_TARGETS,
  addLora,
  LORA_TARGETS,
  LoraAdapter,
  linearModules,
  loraAdapters,
  loraParameters,
  MLP_TARGETS,
  mergeLora,
  RECURRENT_TARGETS,
  removeLora,
  setLoraTraining,
} from '../../layers/lora';
export {causalLMLoss, IGNORE_INDEX} from '../../ops/loss';
/** Kept for scripts written against 0.1: the backends register the kernel themselves now (idempotent). */
export {registerSegmentSum as registerTrainingKernels} from '../../ops/segment_sum';
export {deriveSeed, hashNumbers, Rng} from '../util/rng';
export {latestCheckpoint, listCheckpoints, writeDirAtomically} from './checkpoint';
export type {Batch, BatchOptions, DataOptions, DataRecord, Dataset, Example} from './data';
export {buildBatch, countTargets, DataError, loadJsonl, parseJsonl, planBatches, tokenizeRecords} from './data';
export type {FinetuneOptions, FinetuneResult} from './finetune';
export {finetune} from './finetune';
export type {AdamWOptions, ScheduleOptions} from './optimizer';
export {AdamW, clipByGlobalNorm, learningRate} from './optimizer';
export type {EvalResult, LossAndGradients, StepInfo, TrainerOptions, TrainResult} from './trainer';
export {Trainer} from './trainer';
