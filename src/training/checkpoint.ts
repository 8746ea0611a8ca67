/**
 * Training checkpoint directories, written whole or not at all: everything goes into a hidden
 * temporary directory that is renamed into place at the end, so a crash or Ctrl-C leaves
 * either the previous checkpoints or the new one, never half of one.
 *   const dir = await writeDirAtomically(path.join(out, 'checkpoints', stepDirName(6)), async (tmp) => save(tmp));
 *   const latest = latestCheckpoint(path.join(out, 'checkpoints'));   // null when there is none
 */
import * as fs from 'fs';
import * as path from 'path';
import {recoverAll, writeDirAtomic} from '../../converters/atomic_dir';

export const TRAINER_STATE = 'trainer_state.json';
export const OPTIMIZER_STATE = 'optimizer.safetensors';
const STEP_DIR = /^step-(\d+)$/;

export function stepDirName(step: number): string {
  return `step-${String(step).padStart(6, '0')}`;
}

/**
 * Runs write(tmpDir), then swaps tmpDir in as `dir` (replacing an older `dir` whole), fsynced and
 * recoverable after a kill (converters/atomic_dir.ts). The state file is what marks a checkpoint
 * complete, so writers put it last.
 */
export async function writeDirAtomically(dir: string, write: (tmp: string) => void | Promise<void>): Promise<string> {
  await writeDirAtomic(dir, write);
  return dir;
}

/** Complete checkpoints under root, oldest first. */
export function listCheckpoints(root: string): {step: number; dir: string}[] {
  if (!fs.existsSync(root)) return [];
  return fs
    .readdirSync(root)
    .map((name) => ({m: STEP_DIR.exec(name), dir: path.join(root, name)}))
    .filter(({m, dir}) => m != null && fs.existsSync(path.join(dir, TRAINER_STATE)))
    .map(({m, dir}) => ({step: Number(m![1]), dir}))
    .sort((a, b) => a.step - b.step);
}

export function latestCheckpoint(root: string): string | null {
  const all = listCheckpoints(root);
  return all.length > 0 ? all[all.length - 1].dir : null;
}

/** Deletes all but the newest `keep` checkpoints, and what interrupted writes left behind. */
export function pruneCheckpoints(root: string, keep: number): void {
  if (!fs.existsSync(root)) return;
  const all = listCheckpoints(root);
  for (const {dir} of all.slice(0, Math.max(0, all.length - keep))) fs.rmSync(dir, {recursive: true, force: true});
  removeLeftovers(root);
}

/**
 * Cleans up after writes that never finished (a crash, a kill -9): temporary directories go; a
 * checkpoint moved aside for a replacement that never arrived is put back.
 */
export function removeLeftovers(root: string): void {
  if (!fs.existsSync(root)) return;
  recoverAll(root);
  // And the leftovers of the swap this module did itself before converters/atomic_dir.ts.
  for (const name of fs.readdirSync(root)) {
    const old = /^\.old-(step-\d+)-\d+-\d+$/.exec(name);
    if (old != null && !fs.existsSync(path.join(root, old[1])))
      fs.renameSync(path.join(root, name), path.join(root, old[1]));
    else if (name.startsWith('.tmp-step-') || old != null)
      fs.rmSync(path.join(root, name), {recursive: true, force: true});
  }
}
