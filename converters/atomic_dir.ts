/**
 * Directory saves that are all or nothing: every file goes into a hidden sibling directory, is
 * fsynced, and the sibling is then swapped in by renames, so a kill at any moment leaves the
 * complete old directory or the complete new one (after recoverDir, which every save and load runs).
 *   writeDirAtomicSync(out, (tmp) => fs.writeFileSync(path.join(tmp, 'config.json'), '{}'));
 *   await writeDirAtomic(dir, async (tmp) => save(tmp), {keep: (name) => name === 'checkpoints'});
 *   recoverDir(dir);   // finish or undo a swap that a kill interrupted
 *
 * The swap, for a target `d` in `parent`, with `id` = pid and a counter:
 *   1. write into `parent/.d.atomic-<id>.new` (and carry over, as hard links, the old entries
 *      that `keep` names and the writer did not write); fsync every file and folder of it;
 *   2. rename `d` to `parent/.d.atomic-<id>.old` (skipped when `d` does not exist);
 *   3. rename `.new` to `d`; fsync `parent`;
 *   4. delete `.old`.
 * Between 2 and 3 `d` is missing for two system calls; recoverDir then renames `.new` (complete,
 * as step 2 only follows step 1) into place. Leftovers of any other step are deleted, leaving
 * `d` as it was. A symlinked `d` is resolved first, so the link keeps pointing at the new directory.
 */
import * as fs from 'fs';
import * as path from 'path';

export interface AtomicDirOptions {
  /**
   * Entries (names directly in the old directory) to carry into the new one when the writer did
   * not write that name itself; the rest of the old directory is dropped. Default: none.
   */
  keep?: (name: string) => boolean;
}

/** Test hook: `GRIFFIN_ATOMIC_KILL_AT=<stage>` sends this process SIGKILL at that stage of a swap. */
export const KILL_STAGES = ['written', 'synced', 'moved-aside', 'swapped'] as const;
export type KillStage = (typeof KILL_STAGES)[number];

let counter = 0;
const SUFFIX = /^(\d+)-(\d+)\.(new|old)$/;

function stage(s: KillStage): void {
  if (process.env.GRIFFIN_ATOMIC_KILL_AT === s) process.kill(process.pid, 'SIGKILL');
}

/**
 * The absolute path of p with every symlink resolved, also when p (or some of its parents) does
 * not exist yet: the longest existing prefix is resolved, the rest appended.
 */
export function realPath(p: string): string {
  const abs = path.resolve(p);
  const rest: string[] = [];
  let head = abs;
  for (;;) {
    try {
      return path.join(fs.realpathSync(head), ...rest);
    } catch {
      const up = path.dirname(head);
      if (up === head) return abs;
      rest.unshift(path.basename(head));
      head = up;
    }
  }
}

function prefixOf(target: string): string {
  return `.${path.basename(target)}.atomic-`;
}

function alive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function fsyncPath(p: string): void {
  let fd: number;
  try {
    fd = fs.openSync(p, 'r');
  } catch {
    return;
  }
  try {
    fs.fsyncSync(fd);
  } catch (e) {
    // Some platforms and file systems cannot fsync a directory; the files themselves are synced.
    const code = (e as NodeJS.ErrnoException).code;
    if (!['EISDIR', 'EPERM', 'EINVAL', 'EBADF'].includes(code ?? '')) throw e;
  } finally {
    fs.closeSync(fd);
  }
}

/** fsyncs every file and folder under p (p included), folders after their contents. */
function fsyncTree(p: string): void {
  const st = fs.lstatSync(p);
  if (st.isDirectory()) for (const name of fs.readdirSync(p)) fsyncTree(path.join(p, name));
  if (st.isDirectory() || st.isFile()) fsyncPath(p);
}

/** Puts a copy of src at dst that costs no space where it can: hard links, folders rebuilt. */
function linkTree(src: string, dst: string): void {
  const st = fs.lstatSync(src);
  if (st.isDirectory()) {
    fs.mkdirSync(dst);
    for (const name of fs.readdirSync(src)) linkTree(path.join(src, name), path.join(dst, name));
  } else if (st.isSymbolicLink()) {
    fs.symlinkSync(fs.readlinkSync(src), dst);
  } else {
    try {
      fs.linkSync(src, dst);
    } catch {
      fs.copyFileSync(src, dst);
    }
  }
}

/**
 * Finishes or undoes an interrupted swap of `dir`: when `dir` is missing and a moved-aside old
 * one exists, the new one (complete by then) or else the old one is renamed into place; other
 * leftovers of dead processes are deleted. Cheap when there is nothing to do (one readdir).
 */
export function recoverDir(dir: string): void {
  const target = realPath(dir);
  const parent = path.dirname(target);
  const prefix = prefixOf(target);
  let names: string[];
  try {
    names = fs.readdirSync(parent).filter((n) => n.startsWith(prefix));
  } catch {
    return;
  }
  if (names.length === 0) return;
  const byId = new Map<string, {pid: number; new?: string; old?: string}>();
  for (const n of names) {
    const m = SUFFIX.exec(n.slice(prefix.length));
    if (m == null) continue;
    const id = `${m[1]}-${m[2]}`;
    const e = byId.get(id) ?? {pid: Number(m[1])};
    e[m[3] as 'new' | 'old'] = path.join(parent, n);
    byId.set(id, e);
  }
  if (!fs.existsSync(target)) {
    // Killed between steps 2 and 3 (whatever process it was: the path comes first).
    const aside = [...byId.values()].find((e) => e.old != null);
    if (aside != null) {
      fs.renameSync(aside.new ?? aside.old!, target);
      fsyncPath(parent);
    }
  }
  for (const e of byId.values()) {
    if (alive(e.pid)) continue;
    for (const p of [e.new, e.old]) if (p != null && fs.existsSync(p)) fs.rmSync(p, {recursive: true, force: true});
  }
}

/** Runs recoverDir for every directory of `parent` that has swap leftovers beside it. */
export function recoverAll(parent: string): void {
  let names: string[];
  try {
    names = fs.readdirSync(parent);
  } catch {
    return;
  }
  const targets = new Set<string>();
  for (const n of names) {
    const m = /^\.(.+)\.atomic-\d+-\d+\.(new|old)$/.exec(n);
    if (m != null) targets.add(m[1]);
  }
  for (const t of targets) recoverDir(path.join(parent, t));
}

function prepare(dir: string): {target: string; fresh: string; aside: string} {
  const target = realPath(dir);
  recoverDir(target);
  const st = fs.statSync(target, {throwIfNoEntry: false});
  if (st != null && !st.isDirectory()) throw new Error(`${dir}: exists and is not a directory`);
  const parent = path.dirname(target);
  fs.mkdirSync(parent, {recursive: true});
  const id = `${process.pid}-${++counter}`;
  const fresh = path.join(parent, `${prefixOf(target)}${id}.new`);
  fs.mkdirSync(fresh);
  return {target, fresh, aside: path.join(parent, `${prefixOf(target)}${id}.old`)};
}

function finish(target: string, fresh: string, aside: string, opts: AtomicDirOptions): void {
  stage('written');
  const exists = fs.existsSync(target);
  if (exists && opts.keep != null) {
    const written = new Set(fs.readdirSync(fresh));
    for (const name of fs.readdirSync(target)) {
      if (!written.has(name) && opts.keep(name)) linkTree(path.join(target, name), path.join(fresh, name));
    }
  }
  fsyncTree(fresh);
  stage('synced');
  const parent = path.dirname(target);
  if (exists) {
    fs.renameSync(target, aside);
    stage('moved-aside');
  }
  try {
    fs.renameSync(fresh, target);
  } catch (e) {
    // Unless a recoverDir elsewhere finished the swap for us, put the old directory back.
    if (fs.existsSync(fresh) || !fs.existsSync(target)) {
      if (exists && !fs.existsSync(target)) fs.renameSync(aside, target);
      throw e;
    }
  }
  fsyncPath(parent);
  stage('swapped');
  if (exists) fs.rmSync(aside, {recursive: true, force: true});
}

function cleanup(fresh: string): void {
  fs.rmSync(fresh, {recursive: true, force: true});
}

/** Writes `dir` all at once: write(tmp) fills a fresh sibling folder that then replaces `dir`. */
export async function writeDirAtomic(
  dir: string,
  write: (tmp: string) => void | Promise<void>,
  opts: AtomicDirOptions = {},
): Promise<string> {
  const {target, fresh, aside} = prepare(dir);
  try {
    await write(fresh);
    finish(target, fresh, aside, opts);
  } catch (e) {
    cleanup(fresh);
    throw e;
  }
  return target;
}

/** writeDirAtomic for a synchronous writer. */
export function writeDirAtomicSync(dir: string, write: (tmp: string) => void, opts: AtomicDirOptions = {}): string {
  const {target, fresh, aside} = prepare(dir);
  try {
    write(fresh);
    finish(target, fresh, aside, opts);
  } catch (e) {
    cleanup(fresh);
    throw e;
  }
  return target;
}
