/**
 * The one progress report of long work (loading, converting, downloading): how much of how much,
 * and in which unit, so one bar serves every loader.
 *   const onProgress: OnProgress = (p) => bar(p.loaded / p.total);   // p.unit: 'tensors' or 'bytes'; p.name
 *   const m = await RecurrentGemmaForCausalLM.fromPretrained(dir, {onProgress});
 */

export interface Progress {
  /** Done so far, in `unit`s. */
  loaded: number;
  /** All there is to do, in `unit`s. */
  total: number;
  /** 'tensors' when reading local checkpoints tensor by tensor, 'bytes' when fetching over the network. */
  unit: 'tensors' | 'bytes';
  /** What is being worked on: a tensor name, a file or a URL. */
  name: string;
}

export type OnProgress = (p: Progress) => void;
