/**
 * Hugging Face checkpoints (config.json + safetensors) in and out of the model.
 *   const ckpt = openHF('ckpt/');   const model = new CausalLMCore(ckpt.config, {init: 'zeros'});
 *   await ckpt.loadInto(model);     // any save_pretrained dir
 *   saveHF(model, 'out/');          // float32 safetensors + config.json
 *
 * The model's parameters carry the HF names already (layers are named after the checkpoint),
 * so the mapping is the identity; this module checks names, shapes and dtypes before any weight
 * is written, so a bad checkpoint fails whole instead of leaving a half-loaded model. A tensor
 * the model holds in pieces (the embedding past the device's binding limit) is still one tensor
 * in the file (converters/checkpoint_tensors.ts).
 */
import * as fs from 'fs';
import * as path from 'path';
import {RecurrentGemmaConfig} from '../src/config';
import {writeDirAtomicSync} from './atomic_dir';
import {
  CheckpointReader,
  checkpointTensors,
  ModelParameters,
  readTensorData,
  writeTensorData,
} from './checkpoint_tensors';
import {checkTensorList} from './config_tensors';
import {keepBeside} from './model_dir';
import {CheckpointError, iterateCheckpoint, listCheckpoint, WriteTensor, writeCheckpoint} from './safetensors';

export {CheckpointError};

export const LM_HEAD = 'lm_head.weight';
export const EMBED = 'model.embed_tokens.weight';

/** Reads and validates `dir/config.json`. */
export function readHFConfig(dir: string): RecurrentGemmaConfig {
  const file = path.join(dir, 'config.json');
  if (!fs.existsSync(dir)) throw new CheckpointError(`${dir}: no such directory`);
  if (!fs.existsSync(file))
    throw new CheckpointError(`${file}: not found (a Hugging Face checkpoint directory has a config.json)`);
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new CheckpointError(`${file}: not valid JSON (${(e as Error).message})`);
  }
  try {
    return RecurrentGemmaConfig.fromJSON(json as Record<string, unknown>);
  } catch (e) {
    throw new CheckpointError(`${file}: ${(e as Error).message}`);
  }
}

/** Opens an HF checkpoint directory: its config and its tensor list (names, shapes, dtypes), with no weight read. */
export function openHF(dir: string): CheckpointReader {
  const config = readHFConfig(dir);
  const metas = listCheckpoint(dir);
  // The tensor list against the config, before the caller builds a model of the config's size.
  checkTensorList(config, path.join(dir, 'config.json'), metas);
  const float32Bytes = [...metas.values()]
    .filter((m) => !(m.name === LM_HEAD && config.tie_word_embeddings))
    .reduce((n, m) => n + 4 * m.shape.reduce((a, b) => a * b, 1), 0);
  // The dtype of the matrices (vectors are often kept in float32 beside bfloat16 matrices).
  const matrixDtypes = new Set([...metas.values()].filter((m) => m.shape.length === 2).map((m) => m.dtype));
  const only = matrixDtypes.size === 1 ? [...matrixDtypes][0] : null;
  const storedDtype = only === 'BF16' ? 'bfloat16' : only === 'F16' ? 'float16' : 'float32';
  return {
    where: dir,
    config,
    storedDtype,
    float32Bytes,
    async loadInto(model, onProgress) {
      const params = checkpointTensors(model);
      // Check everything before reading any data.
      const missing = [...params.keys()].filter((n) => !metas.has(n));
      if (missing.length > 0) {
        throw new CheckpointError(
          `${dir}: checkpoint lacks ${missing.length} tensor(s) the config needs, first ${JSON.stringify(missing[0])}`,
        );
      }
      for (const [name, meta] of metas) {
        const v = params.get(name);
        if (v == null) {
          if (name === LM_HEAD && config.tie_word_embeddings) {
            // An (equal) copy of the tied embedding: not loaded, but it must at least fit.
            const want = [config.vocab_size, config.hidden_size];
            if (meta.shape.length !== 2 || meta.shape[0] !== want[0] || meta.shape[1] !== want[1]) {
              throw new CheckpointError(
                `${meta.file}: tensor ${JSON.stringify(name)} has shape [${meta.shape}], the config needs [${want}]`,
              );
            }
            continue;
          }
          throw new CheckpointError(
            `${meta.file}: unexpected tensor ${JSON.stringify(name)} (not part of a RecurrentGemma with this config)`,
          );
        }
        if (meta.shape.length !== v.shape.length || meta.shape.some((d, i) => d !== v.shape[i])) {
          throw new CheckpointError(
            `${meta.file}: tensor ${JSON.stringify(name)} has shape [${meta.shape}], the config needs [${v.shape}]`,
          );
        }
        if (!['F32', 'F16', 'BF16', 'F64'].includes(meta.dtype)) {
          throw new CheckpointError(
            `${meta.file}: tensor ${JSON.stringify(name)} has dtype ${meta.dtype}, expected a float type`,
          );
        }
      }
      const total = params.size;
      let loaded = 0;
      for await (const {name, data} of iterateCheckpoint(dir, new Set(params.keys()))) {
        writeTensorData(params.get(name)!, data as Float32Array);
        onProgress?.({loaded: ++loaded, total, unit: 'tensors', name});
      }
    },
  };
}

/**
 * Writes config.json and float32 safetensors (sharded past maxShardBytes) that transformers
 * loads, all or nothing (converters/atomic_dir.ts), replacing the model that was there in any
 * format (converters/model_dir.ts).
 */
export function saveHF(
  model: ModelParameters,
  dir: string,
  opts: {maxShardBytes?: number; values?: Map<string, Float32Array>} = {},
): void {
  writeDirAtomicSync(dir, (tmp) => writeHFFiles(model, tmp, opts), {keep: keepBeside({tokenizer: false})});
}

/** saveHF's files, written straight into dir (a fresh directory: an atomic save's temporary one). */
export function writeHFFiles(
  model: ModelParameters,
  dir: string,
  opts: {maxShardBytes?: number; values?: Map<string, Float32Array>} = {},
): void {
  fs.mkdirSync(dir, {recursive: true});
  const params = [...checkpointTensors(model)];
  const source = function* (): Iterable<WriteTensor> {
    for (const [name, t] of params) yield {name, shape: t.shape, data: opts.values?.get(name) ?? readTensorData(t)};
  };
  writeCheckpoint(dir, source, {maxShardBytes: opts.maxShardBytes, metadata: {format: 'pt'}});
  fs.writeFileSync(path.join(dir, 'config.json'), `${JSON.stringify(model.config.toJSON(), null, 2)}\n`);
}
