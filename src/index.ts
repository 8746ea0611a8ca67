/**
 * griffin-tfjs: RecurrentGemma (Griffin) for TensorFlow.js.
 *   import {tf, RecurrentGemmaForCausalLM} from 'griffin-tfjs';
 *   const model = await RecurrentGemmaForCausalLM.fromPretrained('path/to/checkpoint');
 */
export {tf} from './tf';
export {RecurrentGemmaConfig, ConfigError} from './config';
export type {RecurrentGemmaConfigArgs, BlockType} from './config';
export {RecurrentGemmaForCausalLM} from './model';
export type {ForwardInputs, ForwardOutputs, ModelOptions} from './model';
export {useBackend, BACKENDS} from './backend';
export type {BackendName} from './backend';
export {causalLMLoss, IGNORE_INDEX} from '../ops/loss';
export {rgLruScan} from '../ops/rg_lru_scan';
export {CheckpointError} from '../converters/safetensors';
export {GemmaTokenizer, renderChat, encodeChat, encodeChatForTraining} from './tokenizer';
export type {ChatMessage} from './tokenizer';
export {Sampler, StopStringMatcher} from './generation/sampling';
export {GenerationState} from './generation/state';
export type {PrefillOptions} from './generation/state';
export type {GenerateOptions, TokenEvent, FinishReason} from './generation/generate';
export type {SamplingOptions} from './generation/sampling';
export {RMSNorm, MLPBlock, Linear} from '../layers/basic';
export {RecurrentBlock, RGLRU, Conv1D} from '../layers/recurrent';
export {LocalAttentionBlock} from '../layers/attention';
export {Embedding, LMHead, ResidualBlock} from '../layers/model_layers';
export {initNodeWebGPU} from './webgpu_node';
