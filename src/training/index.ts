/**
 * Fine-tuning: data, Trainer, AdamW, LoRA, checkpoints, and the one-call `finetune` behind
 * `griffin finetune`.
 *   import {finetune} from 'griffin-tfjs/dist/src/training';
 *   await finetune({model: 'ckpt/', data: 'train.jsonl', out: 'tuned/', lora: {rank: 8}, steps: 200});
 *
 * Plain tfjs training works too: `model.compile({optimizer, loss: causalLMLoss})` then
 * `model.fit(ids, labels)` with labels [b, t] (-100 = not a target). tfjs would demand targets
 * shaped like the output [b, t, V]; with causalLMLoss the model checks them as [b, t] instead
 * (RecurrentGemmaForCausalLM.standardizeUserDataXY). Call registerTrainingKernels(backend) on
 * cpu / wasm first: their gradient of a gather is otherwise unusably slow / missing.
 */
export {Trainer} from './trainer';
export type {TrainerOptions, StepInfo, EvalResult, TrainResult, LossAndGradients} from './trainer';
export {DataError, parseJsonl, tokenizeRecords, loadJsonl, planBatches, buildBatch, countTargets} from './data';
export type {DataRecord, Example, Dataset, DataOptions, Batch, BatchOptions} from './data';
export {AdamW, clipByGlobalNorm, learningRate} from './optimizer';
export type {AdamWOptions, ScheduleOptions} from './optimizer';
export {Rng, deriveSeed, hashNumbers} from './rng';
export {checkpointedBlock, blockTrainableVariables} from './grad_checkpoint';
export {latestCheckpoint, listCheckpoints, writeDirAtomically} from './checkpoint';
export {registerTrainingKernels} from './kernels';
export {finetune} from './finetune';
export type {FinetuneOptions, FinetuneResult} from './finetune';
export {
  addLora, mergeLora, removeLora, loraAdapters, loraParameters, saveLoraAdapter, loadLoraAdapter,
  setLoraTraining, linearModules, LoraAdapter, LORA_TARGETS, ATTENTION_TARGETS, RECURRENT_TARGETS, MLP_TARGETS,
} from '../../layers/lora';
export type {LoraConfig} from '../../layers/lora';
export {causalLMLoss, IGNORE_INDEX} from '../../ops/loss';
