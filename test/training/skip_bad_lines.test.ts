/**
 * Invalid UTF-8 in JSONL: an error naming file:line by default; with skipBadLines the bad lines
 * are left out and counted, and the good lines are read exactly as the same file without them.
 */
import * as fs from 'fs';
import * as path from 'path';
import {loadJsonl, parseJsonl} from '../../src/training/data';
import {loadTokenizer, tmpDir} from './helpers';

const good = (s: string) => Buffer.from(`${JSON.stringify({text: s})}\n`, 'utf8');
// {"text": "ab<0xff>c"}: 0xff is never valid UTF-8; 0xc3 0x28 is a lead byte without its continuation.
const bad1 = Buffer.concat([Buffer.from('{"text": "ab'), Buffer.from([0xff]), Buffer.from('c"}\n')]);
const bad2 = Buffer.concat([Buffer.from('{"text": "x'), Buffer.from([0xc3, 0x28]), Buffer.from('"}\n')]);

let dir: string;
let mixed: string;
let clean: string;
beforeAll(() => {
  dir = tmpDir('skipbad');
  mixed = path.join(dir, 'mixed.jsonl');
  clean = path.join(dir, 'clean.jsonl');
  // lines: 1 good, 2 bad, 3 good, 4 bad, 5 good
  fs.writeFileSync(mixed, Buffer.concat([good('one'), bad1, good('three'), bad2, good('five')]));
  fs.writeFileSync(clean, Buffer.concat([good('one'), good('three'), good('five')]));
});
afterAll(() => fs.rmSync(dir, {recursive: true, force: true}));

test('by default the first bad line is an error naming file:2', () => {
  expect(() => parseJsonl(mixed)).toThrow(`${mixed}:2: not valid UTF-8`);
});

test('skipBadLines: lines 2 and 4 are skipped and counted; the rest keep their line numbers', async () => {
  const skipped: number[] = [];
  const records = parseJsonl(mixed, {skipBadLines: true, skipped});
  expect(skipped).toEqual([2, 4]);
  expect(records.map((r) => [r.line, r.kind === 'text' ? r.text : ''])).toEqual([
    [1, 'one'],
    [3, 'three'],
    [5, 'five'],
  ]);
  const tok = await loadTokenizer();
  const a = loadJsonl(mixed, tok, {seqLen: 64, skipBadLines: true});
  const b = loadJsonl(clean, tok, {seqLen: 64});
  expect(a.skipped).toBe(2);
  expect(b.skipped).toBe(0);
  expect(a.records).toBe(3);
  expect(a.examples.map((e) => e.ids)).toEqual(b.examples.map((e) => e.ids));
  // Without the flag loadJsonl still refuses.
  expect(() => loadJsonl(mixed, tok, {seqLen: 64})).toThrow(`${mixed}:2: not valid UTF-8`);
});
