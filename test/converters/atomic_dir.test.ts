/**
 * Atomic directory saves (converters/atomic_dir.ts): the swap and its recovery step by step, and
 * saves of a model (hf, tfjs) and of a LoRA adapter killed with SIGKILL at every stage of the swap
 * and at random moments: afterwards the directory loads, as the old model or the new one.
 */
import {spawn, spawnSync} from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {KILL_STAGES, recoverAll, recoverDir, writeDirAtomic, writeDirAtomicSync} from '../../converters/atomic_dir';
import {loadLoraAdapter} from '../../converters/lora_adapter';
import {RecurrentGemmaForCausalLM} from '../../src/model';
import {tf} from '../../src/tf';
import {TINY_A, variant} from './save_child';

jest.setTimeout(600_000);

const ROOT = path.join(__dirname, '../..');
const CHILD = path.join(__dirname, 'save_child.ts');
const IDS = [[2, 342, 48, 451, 411, 374, 280, 400]];
let tmp: string;

const read = (d: string) =>
  Object.fromEntries(
    fs
      .readdirSync(d)
      .sort()
      .map((f) => [f, fs.readFileSync(path.join(d, f), 'utf8')]),
  );
const write = (d: string, files: Record<string, string>) => {
  fs.mkdirSync(d, {recursive: true});
  for (const [f, s] of Object.entries(files)) fs.writeFileSync(path.join(d, f), s);
};
/** A pid that is not running (a child that has exited). */
const deadPid = () => spawnSync(process.execPath, ['-e', '0']).pid!;

beforeAll(async () => {
  await tf.setBackend('cpu');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'griffin-atomic-'));
});
afterAll(() => fs.rmSync(tmp, {recursive: true, force: true}));

describe('the swap', () => {
  test('replaces the directory whole; keep carries old entries (as hard links) the writer did not write', () => {
    const d = path.join(tmp, 'swap');
    write(d, {a: 'old a', b: 'old b', c: 'old c'});
    fs.mkdirSync(path.join(d, 'sub'));
    fs.writeFileSync(path.join(d, 'sub', 'x'), 'x');
    writeDirAtomicSync(d, (t) => write(t, {a: 'new a'}), {keep: (n) => n !== 'b'});
    expect(read(path.join(d, 'sub'))).toEqual({x: 'x'});
    fs.rmSync(path.join(d, 'sub'), {recursive: true});
    expect(read(d)).toEqual({a: 'new a', c: 'old c'});
    writeDirAtomicSync(d, (t) => write(t, {z: 'z'}));
    expect(read(d)).toEqual({z: 'z'});
    expect(fs.readdirSync(tmp).filter((n) => n.startsWith('.swap.'))).toEqual([]);
  });

  test('a writer that throws leaves the old directory and no leftovers', async () => {
    const d = path.join(tmp, 'throws');
    write(d, {a: 'old'});
    await expect(
      writeDirAtomic(d, (t) => {
        write(t, {a: 'half'});
        throw new Error('disk full');
      }),
    ).rejects.toThrow('disk full');
    expect(read(d)).toEqual({a: 'old'});
    expect(fs.readdirSync(tmp).filter((n) => n.startsWith('.throws.'))).toEqual([]);
  });

  test('a symlinked directory: the link stays and points at the new contents', () => {
    const real = path.join(tmp, 'real');
    const link = path.join(tmp, 'link');
    write(real, {a: 'old'});
    fs.symlinkSync(real, link);
    writeDirAtomicSync(link, (t) => write(t, {a: 'new'}));
    expect(fs.lstatSync(link).isSymbolicLink()).toBe(true);
    expect(read(real)).toEqual({a: 'new'});
  });

  test('recovery: killed after moving the old one aside, the new one (complete by then) is put in place', () => {
    const d = path.join(tmp, 'fwd');
    const pid = deadPid();
    write(path.join(tmp, `.fwd.atomic-${pid}-1.old`), {a: 'old'});
    write(path.join(tmp, `.fwd.atomic-${pid}-1.new`), {a: 'new'});
    recoverDir(d);
    expect(read(d)).toEqual({a: 'new'});
    expect(fs.readdirSync(tmp).filter((n) => n.startsWith('.fwd.'))).toEqual([]);
  });

  test('recovery: an old one aside and no new one: the old one goes back', () => {
    const d = path.join(tmp, 'back');
    write(path.join(tmp, `.back.atomic-${deadPid()}-3.old`), {a: 'old'});
    recoverDir(d);
    expect(read(d)).toEqual({a: 'old'});
  });

  test("recovery: the directory in place: a dead writer's leftovers go, a live writer's stay", () => {
    const d = path.join(tmp, 'left');
    write(d, {a: 'cur'});
    const dead = path.join(tmp, `.left.atomic-${deadPid()}-1.new`);
    const live = path.join(tmp, `.left.atomic-${process.pid}-999.new`);
    write(dead, {a: 'half'});
    write(live, {a: 'writing'});
    recoverAll(tmp);
    expect(read(d)).toEqual({a: 'cur'});
    expect(fs.existsSync(dead)).toBe(false);
    expect(fs.existsSync(live)).toBe(true);
    fs.rmSync(live, {recursive: true});
  });
});

describe('saves killed with SIGKILL', () => {
  const logits: Record<string, Float32Array> = {};
  const logitsOf = (m: RecurrentGemmaForCausalLM) => {
    const {logits: l} = m.forward({inputIds: IDS});
    const v = l.dataSync() as Float32Array;
    l.dispose();
    return v;
  };
  /** 'old', 'new' or a description of what went wrong, for the model (or adapter) in dir. */
  async function whichLoads(dir: string, kind: string): Promise<string> {
    let model: RecurrentGemmaForCausalLM;
    try {
      if (kind === 'lora') {
        model = await RecurrentGemmaForCausalLM.fromPretrained(TINY_A);
        loadLoraAdapter(model, dir);
      } else {
        model = await RecurrentGemmaForCausalLM.fromPretrained(dir);
      }
    } catch (e) {
      return `does not load: ${(e as Error).message}`;
    }
    const v = logitsOf(model);
    model.dispose();
    for (const w of ['old', 'new']) if (v.every((x, i) => x === logits[`${kind}/${w}`][i])) return w;
    return 'loads, but is neither model';
  }
  const child = (dir: string, kind: string, which: string, env: Record<string, string> = {}, times = 1) =>
    // One process (not the tsx wrapper), so that a SIGKILL reaches the process that saves.
    spawn(process.execPath, ['--import', 'tsx', CHILD, dir, kind, which, String(times)], {
      cwd: ROOT,
      env: {...process.env, ...env},
      stdio: ['ignore', 'pipe', 'ignore'],
    });
  const exit = (c: ReturnType<typeof spawn>) =>
    new Promise<string | null>((res) => c.on('exit', (code, sig) => res(sig ?? String(code))));

  beforeAll(async () => {
    for (const kind of ['hf', 'lora'])
      for (const w of ['old', 'new']) {
        const m = await variant(kind, w);
        logits[`${kind}/${w}`] = logitsOf(m);
        m.dispose();
      }
    logits['tfjs/old'] = logits['hf/old'];
    logits['tfjs/new'] = logits['hf/new'];
    expect(logits['hf/old']).not.toEqual(logits['hf/new']);
    expect(logits['lora/old']).not.toEqual(logits['lora/new']);
  });

  for (const kind of ['hf', 'tfjs', 'lora']) {
    test(`${kind}: killed at each stage of the swap, the directory holds the old or the new model`, async () => {
      const seen: string[] = [];
      for (const stage of KILL_STAGES) {
        const dir = path.join(tmp, `${kind}-${stage}`);
        expect(await exit(child(dir, kind, 'old'))).toBe('0');
        expect(await whichLoads(dir, kind)).toBe('old');
        expect(await exit(child(dir, kind, 'new', {GRIFFIN_ATOMIC_KILL_AT: stage}))).toBe('SIGKILL');
        const got = await whichLoads(dir, kind);
        seen.push(`${stage}: ${got}`);
        // And a later save over it works.
        expect(await exit(child(dir, kind, 'new'))).toBe('0');
        expect(await whichLoads(dir, kind)).toBe('new');
        expect(fs.readdirSync(tmp).filter((n) => n.startsWith(`.${kind}-${stage}.`))).toEqual([]);
      }
      // Before the old one is moved aside: old; after: new (recovered by the load).
      expect(seen).toEqual(['written: old', 'synced: old', 'moved-aside: new', 'swapped: new']);
    });
  }

  test('hf and tfjs: killed at random moments of repeated saves, the directory always loads as old or new', async () => {
    const results: string[] = [];
    for (let i = 0; i < 6; i++) {
      const kind = i % 2 === 0 ? 'hf' : 'tfjs';
      const dir = path.join(tmp, `random-${i}`);
      expect(await exit(child(dir, kind, 'old'))).toBe('0');
      const c = child(dir, kind, 'new', {}, 1000);
      // Once it says it is saving, its saves follow each other every few ms: kill it somewhere among them.
      await new Promise((r) => c.stdout!.once('data', r));
      await new Promise((r) => setTimeout(r, 37 * i + 11));
      c.kill('SIGKILL');
      expect(await exit(c)).toBe('SIGKILL');
      results.push(await whichLoads(dir, kind));
    }
    expect(results.filter((r) => r !== 'old' && r !== 'new')).toEqual([]);
  });
});
