/**
 * griffin-tfjs: RecurrentGemma (Griffin) for TensorFlow.js.
 *   import {tf, RecurrentGemmaForCausalLM} from 'griffin-tfjs';
 *   const model = await RecurrentGemmaForCausalLM.fromPretrained('path/to/checkpoint');
 */

export {HubError, type HubOptions} from '../converters/hub';
export {CheckpointError} from '../converters/safetensors';
export {LocalAttentionBlock} from '../layers/attention';
export {Linear, MLPBlock, RMSNorm} from '../layers/basic';
export {Embedding, LMHead, ResidualBlock} from '../layers/model_layers';
export {Conv1D, RecurrentBlock, RGLRU} from '../layers/recurrent';
export {causalLMLoss, IGNORE_INDEX} from '../ops/loss';
export {rgLruScan} from '../ops/rg_lru_scan';
export type {BackendName} from './backend';
export {BACKENDS, useBackend} from './backend';
export type {BlockType, RecurrentGemmaConfigArgs} from './config';
export {ConfigError, RecurrentGemmaConfig} from './config';
export type {FinishReason, GenerateOptions, TokenEvent} from './generation/generate';
export type {SamplingOptions} from './generation/sampling';
export {Sampler, StopStringMatcher} from './generation/sampling';
export type {PrefillOptions} from './generation/state';
export {GenerationState} from './generation/state';
export type {ForwardInputs, ForwardOutputs, ModelOptions} from './model';
export {type PretrainedOptions, RecurrentGemmaForCausalLM} from './model';
export {tf} from './tf';
export type {ChatMessage} from './tokenizer';
export {encodeChat, encodeChatForTraining, GemmaTokenizer, renderChat} from './tokenizer';
export {ChatTemplateError} from './tokenizer/chat_template';
export {initNodeWebGPU} from './webgpu_node';
