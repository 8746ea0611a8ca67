/**
 * What an export needs of a model without holding its weights: the tfjs topology of a config
 * (model.json's modelTopology) and its tensors' names, tfjs names and whether each is a matrix
 * (held compact under a compact dtype). Taken from a miniature model of the same layer pattern,
 * whose layer configs are then replaced by the real config: the topology depends on the config
 * only through the layers' own `config` field and the layer count, so a 9B config costs what a
 * toy does.
 *   const {topology, tensors} = modelSkeleton(config);
 *   for (const [name, t] of tensors) console.log(name, t.tfjsName, t.matrix);
 */
import {RMSNorm} from '../layers/basic';
import {CompactParameter} from '../layers/compact';
import {RecurrentGemmaConfig} from '../src/config';
import {CausalLMCore} from '../src/core/model';
import {checkpointTensors} from './checkpoint_tensors';

export interface SkeletonTensor {
  /** The manifest's (tfjs) name of the tensor. */
  tfjsName: string;
  /** Whether the model holds it as a weight matrix (a linear's, the embedding, the LM head): compact under a compact dtype. */
  matrix: boolean;
}

export interface Skeleton {
  /** model.toJSON(null, false) of a model of the config. */
  topology: Record<string, unknown>;
  /** HF name -> tensor, in the model's parameter order. */
  tensors: Map<string, SkeletonTensor>;
}

/** The config's field values in a layer's serialized config: the config itself, and RMSNorm's width. */
function realLayerConfig(layer: {class_name: string; config: Record<string, unknown>}, config: RecurrentGemmaConfig) {
  if (layer.config?.config != null) layer.config.config = config.toModelFields();
  if (layer.class_name === RMSNorm.className) layer.config.dim = config.hidden_size;
}

function miniature(config: RecurrentGemmaConfig, width: number): Skeleton {
  const mini = new RecurrentGemmaConfig({
    ...config.toModelFields(),
    vocab_size: width,
    hidden_size: width,
    num_attention_heads: 2,
    num_key_value_heads: 1,
    lru_width: width,
    intermediate_size: 2 * width,
    conv1d_width: 2,
    attention_window_size: 4,
    partial_rotary_factor: 0.5,
  });
  // int8: every matrix is then a CompactParameter (and no group size constrains the toy widths).
  const model = new CausalLMCore(mini, {init: 'zeros', compact: {dtype: 'int8'}});
  try {
    const topology = model.toJSON(null, false) as unknown as Record<string, unknown>;
    const layers = (topology.config as {layers: {class_name: string; config: Record<string, unknown>}[]}).layers;
    for (const layer of layers) realLayerConfig(layer, config);
    const tensors = new Map<string, SkeletonTensor>();
    for (const [name, t] of checkpointTensors(model))
      tensors.set(name, {tfjsName: t.tfjsName, matrix: t.parts[0] instanceof CompactParameter});
    return {topology, tensors};
  } finally {
    model.dispose();
  }
}

export function modelSkeleton(config: RecurrentGemmaConfig): Skeleton {
  // Two miniatures of different widths must agree once the real config is put in: were a layer
  // to serialize another width-dependent field, this says so instead of writing a wrong topology.
  const a = miniature(config, 8),
    b = miniature(config, 16);
  if (JSON.stringify(a.topology) !== JSON.stringify(b.topology))
    throw new Error('modelSkeleton: a layer serializes a width this module does not fill in (see realLayerConfig)');
  return a;
}
