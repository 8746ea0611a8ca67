/**
 * The `--dtype` and `--group-size` options of the commands that load a model (generate, chat,
 * bench, finetune): how its weight matrices are held (ops/compact/format.ts).
 *   const opts = loadOptions({dtype: 'int4', groupSize: 32});   // fromPretrained's options from the parsed flags
 */
import {type Command, InvalidArgumentError} from 'commander';
import {INT4_GROUP_SIZES, WEIGHT_DTYPES, type WeightDtype, weightSpec} from '../../ops/compact/format';
import type {PretrainedOptions} from '../model';
import {UsageError} from './usage';

export interface DtypeFlags {
  dtype?: 'auto' | WeightDtype;
  groupSize?: number;
}

export function addDtypeOptions(cmd: Command): Command {
  return cmd
    .option(
      '--dtype <dtype>',
      `weights held as auto (the checkpoint's own), ${WEIGHT_DTYPES.join(', ')}`,
      (s: string) => {
        if (s !== 'auto' && !(WEIGHT_DTYPES as readonly string[]).includes(s)) {
          throw new InvalidArgumentError(`--dtype must be one of auto, ${WEIGHT_DTYPES.join(', ')}.`);
        }
        return s;
      },
    )
    .option('--group-size <n>', `int4: values per scale (${INT4_GROUP_SIZES.join(', ')}; default 64)`, (s: string) => {
      const n = Number(s);
      if (!(INT4_GROUP_SIZES as readonly number[]).includes(n)) {
        throw new InvalidArgumentError(`--group-size must be one of ${INT4_GROUP_SIZES.join(', ')}.`);
      }
      return n;
    });
}

/** fromPretrained's options for the flags (default float32); --group-size without int4 is a usage error. */
export function loadOptions(flags: DtypeFlags): PretrainedOptions {
  const dtype = flags.dtype ?? 'float32';
  if (flags.groupSize != null && dtype !== 'int4') throw new UsageError('--group-size is for --dtype int4');
  if (dtype !== 'auto') weightSpec(dtype, {groupSize: flags.groupSize});
  return {dtype, groupSize: flags.groupSize};
}
