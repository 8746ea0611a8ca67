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
export {Trainer} from './trainer';
export type {TrainerOptions, StepInfo, EvalResult, TrainResult, LossAndGradients} from './trainer';
export {DataError, parseJsonl, tokenizeRecords, loadJsonl, planBatches, buildBatch, countTargets} from './data';
export type {DataRecord, Example, Dataset, DataOptions, Batch, BatchOptions} from './data';
export {AdamW, clipByGlobalNorm, learningRate} from './optimizer';
export type {AdamWOptions, ScheduleOptions} from './optimizer';
export {Rng, deriveSeed, hashNumbers} from '../util/rng';
export {checkpointedBlock, blockTrainableVariables} from '../../layers/grad_checkpoint';
export {latestCheckpoint, listCheckpoints, writeDirAtomically} from './checkpoint';
/** Kept for scripts written against 0.1: the backends register the kernel themselves now (idempotent). */
export {registerSegmentSum as registerTrainingKernels} from '../../ops/segment_sum';
export {finetune} from './finetune';
export type {FinetuneOptions, FinetuneResult} from './finetune';
export {
  addLora, mergeLora, removeLora, loraAdapters, loraParameters, setLoraTraining, linearModules, LoraAdapter,
  LORA_TARGETS, ATTENTION_TARGETS, RECURRENT_TARGETS, MLP_TARGETS,
} from '../../layers/lora';
export {saveLoraAdapter, loadLoraAdapter} from '../../converters/lora_adapter';
export type {LoraConfig} from '../../layers/lora';
export {causalLMLoss, IGNORE_INDEX} from '../../ops/loss';
