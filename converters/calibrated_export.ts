/**
 * `griffin convert --dtype int4 --calibration`: an int4 tfjs export whose matrices GPTQ fits to
 * what they see on calibration text (src/core/calibrate.ts, ops/compact/gptq.ts), the very packed
 * words fromPretrained(dir, {dtype: 'int4', calibration}) holds. This one is NOT tensor by tensor:
 * GPTQ needs each matrix's input activations, which only a float32 forward pass of the whole
 * model gives, so the float32 model and every matrix's second moments [C, C] are held at once
 * (calibrationMemory tells how much from the headers, before anything is read). Once the moments
 * are summed the model is dropped and the export goes tensor by tensor (converters/tfjs_export.ts).
 *   import {openTensorSource} from './tfjs_export';
 *   const need = calibrationMemory(openTensorSource(dir));   // need.total bytes: need.model + need.moments + ...
 *   await exportCalibrated(openTensorSource(dir), out, {dtype: 'int4', groupSize: 64, calibration: 'default'});
 *
 * Shape letters: C a matrix's input width (its columns).
 */
import * as os from 'os';
import {parameterCount} from '../src/config';
import {CALIBRATION_BATCH, fitCalibrated, secondMoments, tiedLookup} from '../src/core/calibrate';
import {CausalLMCore} from '../src/core/model';
import {CALIBRATION_SEQ_LEN, calibrationRows} from '../src/data/calibration';
import {GemmaTokenizer} from '../src/tokenizer';
import type {OnProgress} from '../src/util/progress';
import {CheckpointError} from './hf';
import {openCheckpoint} from './index';
import {modelSkeleton} from './model_skeleton';
import {type ExportOptions, type ExportResult, exportTfjs, type TensorSource} from './tfjs_export';

export interface CalibratedExportOptions extends ExportOptions {
  /** 'default' (the Brown corpus's training split) or a UTF-8 text file: src/data/calibration.ts. */
  calibration: string;
  /** Calibration tokens at most (whole rows of 256; default 32768). */
  calibrationTokens?: number;
  /** Refused past this peak (calibrationMemory's total), before anything is read; default the machine's memory. */
  maxBytes?: number;
  /** Called once the input, output and calibration text are checked, before the float32 model is read. */
  onStart?: () => void;
  /** Loading the float32 model: tensors read of all. */
  onLoad?: OnProgress;
  /** The forward passes: calibration rows done of all. */
  onCalibrate?: (done: number, total: number) => void;
}

/** Bytes a calibrated convert holds at its peak, by part (estimates from the tensor list and config alone). */
export interface CalibrationMemory {
  /** The float32 model. */
  model: number;
  /** Every calibrated matrix's second moments, C * C float64 values each. */
  moments: number;
  /** One forward pass of CALIBRATION_BATCH rows: logits, the hidden states kept, the widest temporaries. */
  activations: number;
  /** GPTQ's work on the widest matrix (H, its factor and inverse). */
  fit: number;
  total: number;
}

/** Bytes for people: MB below a GB. */
export const sizeText = (n: number): string => (n >= 1e9 ? `${(n / 1e9).toFixed(1)} GB` : `${(n / 1e6).toFixed(1)} MB`);

/** The peak memory of exportCalibrated on `src` (see CalibrationMemory). */
export function calibrationMemory(src: TensorSource): CalibrationMemory {
  const c = src.config;
  const skeleton = modelSkeleton(c);
  const matrices = new Set([...skeleton.tensors.values()].filter((t) => t.matrix).map((t) => t.tfjsName));
  // An untied embedding is only looked up: no activations, no moments (its own head has them).
  const embed = skeleton.tensors.get('model.embed_tokens.weight')?.tfjsName;
  let moments = 0,
    widest = 0;
  for (const t of src.list) {
    if (!matrices.has(t.name) || (t.name === embed && !c.tie_word_embeddings)) continue;
    const C = t.shape[1];
    moments += C * C * 8;
    widest = Math.max(widest, C);
  }
  const tokens = CALIBRATION_BATCH * CALIBRATION_SEQ_LEN;
  // Logits and their soft-capped copy, the hidden state after every block, and a few MLP-wide temporaries.
  const activations =
    tokens * 4 * (2 * c.vocab_size + (c.num_hidden_layers + 1) * c.hidden_size + 4 * c.intermediate_size);
  const model = parameterCount(c) * 4;
  const fit = 3 * widest * widest * 8;
  return {model, moments, activations, fit, total: model + moments + activations + fit};
}

/** Converts `src` into an int4 tfjs export at `out`, its matrices fitted by GPTQ (see the module comment). */
export async function exportCalibrated(
  src: TensorSource,
  out: string,
  opts: CalibratedExportOptions,
): Promise<ExportResult> {
  if (opts.dtype !== 'int4') throw new Error('calibration fits int4 weights: use it with dtype int4');
  const need = calibrationMemory(src);
  const max = opts.maxBytes ?? os.totalmem();
  if (need.total > max)
    throw new Error(
      `calibration needs about ${sizeText(need.total)} (the float32 model, every matrix's second moments and a ` +
        `forward pass at once), more than ${sizeText(max)}; convert without calibration on this machine`,
    );
  const ckpt = await openCheckpoint(src.dir);
  if (ckpt.storedDtype === 'int4')
    throw new CheckpointError(`${ckpt.where}: is already int4; calibration needs a float checkpoint`);
  const names = new Map([...modelSkeleton(src.config).tensors].map(([hf, t]) => [t.tfjsName, hf]));
  return exportTfjs(src, out, {
    ...opts,
    packer: async () => {
      const rows = calibrationRows(opts.calibration, await GemmaTokenizer.load(src.dir), {
        maxTokens: opts.calibrationTokens,
      });
      opts.onStart?.();
      const model = new CausalLMCore(ckpt.config, {init: 'zeros'});
      let hs: Map<string, Float64Array>;
      let tied: string | null;
      try {
        await ckpt.loadInto(model, opts.onLoad);
        hs = secondMoments(model, rows, CALIBRATION_BATCH, opts.onCalibrate);
        tied = tiedLookup(model);
      } finally {
        model.dispose();
      }
      return (name, values, R, C, spec) => {
        const hf = names.get(name);
        return fitCalibrated(values, R, C, spec, hf == null ? undefined : hs.get(hf), hf != null && hf === tied);
      };
    },
  });
}
