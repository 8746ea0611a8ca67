/**
 * What a fine-tuning job needs before it is started: the LoRA rank the targeted layers allow and
 * a floor on the memory it will hold, checked against the backend's limit up front.
 *   checkTrainingFits(config, {batchSize: 4, seqLen: 512, lora: {rank: 8}}, 'cpu');   // throws with the numbers
 *   checkTrainingFits(config, {batchSize: 4, seqLen: 512}, 'webgpu', {maxBufferSize: 2 ** 28, maxStorageBufferBindingSize: 2 ** 27});
 *
 * The estimate counts only what cannot be avoided: the weights, the gradient and AdamW's two
 * moments of every trainable value, and the logits of a micro-batch with their gradient. The
 * layers' activations come on top, so a job refused here could never run; one let through may
 * still be too big. On webgpu the largest single tensors of a step (the logits, the MLP's
 * activations, a block of attention scores) must each also fit the adapter's largest buffer.
 */
import * as os from 'os';
import {configTensors} from '../../converters/config_tensors';
import {LORA_TARGETS, type LoraConfig} from '../../layers/lora';
import {queryBlock} from '../../ops/attention';
import {parameterCount, type RecurrentGemmaConfig} from '../config';
import {checkGpuBuffers, type GpuBufferLimits, WASM_HEAP_BYTES} from '../util/limits';

/** The targeted Linear layers: name -> [out, in]. */
function targetedLinears(config: RecurrentGemmaConfig, targets: readonly string[]): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const [name, shape] of configTensors(config)) {
    const m = /^(.*\.(\w+))\.weight$/.exec(name);
    if (m != null && shape.length === 2 && targets.includes(m[2]) && name.startsWith('model.layers.'))
      out.set(m[1], shape);
  }
  return out;
}

/** Refuses a LoRA rank above the smaller dimension of a targeted layer (as addLora does), from the config alone. */
export function checkLoraRank(config: RecurrentGemmaConfig, lora: LoraConfig): void {
  for (const [name, [outF, inF]] of targetedLinears(config, lora.targets ?? LORA_TARGETS)) {
    const most = Math.min(outF, inF);
    if (lora.rank > most) {
      throw new Error(
        `LoRA rank ${lora.rank} is above ${most}, the smaller dimension of ${name} [${outF} x ${inF}]: use a rank <= ${most}, or leave it out of the targets`,
      );
    }
  }
}

export interface TrainingBytes {
  weights: number;
  /** Gradients and AdamW's two moments of the trainable values. */
  optimizer: number;
  /** Logits of one micro-batch and their gradient. */
  logits: number;
  total: number;
}

/** The floor on the bytes a training step holds (see the file's comment), float32 throughout. */
export function trainingBytes(
  config: RecurrentGemmaConfig,
  o: {batchSize: number; seqLen: number; lora?: LoraConfig | null; weightBytes?: number},
): TrainingBytes {
  const params = parameterCount(config);
  let trainable = params;
  if (o.lora != null) {
    trainable = 0;
    for (const [outF, inF] of targetedLinears(config, o.lora.targets ?? LORA_TARGETS).values())
      trainable += o.lora.rank * (outF + inF);
  }
  const weights = (o.weightBytes ?? 4 * params) + (o.lora != null ? 4 * trainable : 0);
  const optimizer = 3 * 4 * trainable;
  const logits = 2 * 4 * o.batchSize * o.seqLen * config.vocab_size;
  return {weights, optimizer, logits, total: weights + optimizer + logits};
}

/** os.totalmem(), or no limit where there is no os (the browser bundle). */
function machineMemory(): number {
  try {
    return os.totalmem();
  } catch {
    return Infinity;
  }
}

const gib = (n: number) => `${(n / 2 ** 30).toFixed(1)} GiB`;

/** The largest single float32 tensors of a training step over [b, t] tokens: [what, bytes]. */
export function largestStepTensors(config: RecurrentGemmaConfig, b: number, t: number): Array<[string, number]> {
  const W = config.attention_window_size,
    B = Math.min(queryBlock(W), t);
  return [
    [`the logits of --batch-size ${b} x --seq-len ${t}`, 4 * b * t * config.vocab_size],
    [`the MLP activations of --batch-size ${b} x --seq-len ${t}`, 4 * b * t * config.intermediate_size],
    ['a block of attention scores', 4 * b * config.num_attention_heads * B * Math.min(B + W, t)],
  ];
}

/**
 * Refuses a job whose floor exceeds the backend's memory (wasm's 4 GiB heap, else the machine's),
 * or on webgpu (given the adapter's limits) one whose largest tensor exceeds a GPU buffer, naming the numbers.
 */
export function checkTrainingFits(
  config: RecurrentGemmaConfig,
  o: {batchSize: number; seqLen: number; lora?: LoraConfig | null; weightBytes?: number},
  backend: string,
  gpu: GpuBufferLimits | null = null,
): TrainingBytes {
  if (o.lora != null) checkLoraRank(config, o.lora);
  const b = trainingBytes(config, o);
  const [limit, what] =
    backend === 'wasm' ? [WASM_HEAP_BYTES, "the wasm backend's heap"] : [machineMemory(), "the machine's memory"];
  if (b.total > limit) {
    throw new Error(
      `this fine-tuning needs at least ${gib(b.total)} (weights ${gib(b.weights)}, gradients and optimizer ${gib(b.optimizer)}, ` +
        `logits of --batch-size ${o.batchSize} x --seq-len ${o.seqLen} ${gib(b.logits)}), more than ${what} (${gib(limit)}): ` +
        'lower --batch-size or --seq-len (--grad-accum keeps the batch), or use --lora-rank',
    );
  }
  if (backend === 'webgpu' && gpu != null) {
    checkGpuBuffers(
      largestStepTensors(config, o.batchSize, o.seqLen),
      gpu,
      'lower --batch-size or --seq-len (--grad-accum keeps the batch)',
    );
  }
  return b;
}
