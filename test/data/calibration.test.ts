/**
 * Calibration rows (src/data/calibration.ts): 256-token rows of the tokenized documents, BOS
 * opening and EOS closing each, positions restarting at each row and BOS, the token bound honoured, and
 * one-line refusals for a missing file, too little text and a bound out of range.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {calibrationRows} from '../../src/data/calibration';
import {GemmaTokenizer} from '../../src/tokenizer';

const ASSET = path.join(__dirname, '../../assets/griffin-small/tokenizer.model');

describe('calibrationRows', () => {
  let tok: GemmaTokenizer;
  let dir: string;
  beforeAll(async () => {
    tok = await GemmaTokenizer.load(ASSET);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'calib-'));
  });
  afterAll(() => fs.rmSync(dir, {recursive: true, force: true}));

  test('a text file: documents split at blank lines, BOS/EOS around each, positions restart at BOS', () => {
    const docs = ['The cat sat on the mat. '.repeat(40), 'A second document, rather shorter. '.repeat(30)];
    const file = path.join(dir, 'two.txt');
    fs.writeFileSync(file, `${docs[0]}\n\n  \n${docs[1]}\n`);
    const stream = docs.flatMap((d) => [...tok.encode(d.trim(), {addBos: true}), tok.eosId]);
    const rows = calibrationRows(file, tok, {maxTokens: 4096});
    expect(rows.length).toBe(Math.floor(stream.length / 256));
    expect(rows.flatMap((r) => r.ids)).toEqual(stream.slice(0, rows.length * 256));
    // Hand-derived positions: from 0 at each row's start (as in training, src/pretrain/small.ts) and at each BOS.
    const ids = rows.flatMap((r) => r.ids);
    const bos = ids.indexOf(tok.bosId, 1);
    const row = Math.floor(bos / 256),
      at = bos % 256;
    expect(at).toBeGreaterThan(5);
    expect(rows[row].pos[at - 1]).toBe(at - 1); // no BOS before it in its row
    expect(rows[row].pos[at]).toBe(0);
    expect(rows[row].pos[at + 5]).toBe(5);
    expect(rows[0].pos.slice(0, 3)).toEqual([0, 1, 2]);
    expect(rows.map((r) => r.pos[0])).toEqual(rows.map(() => 0));
  });

  test("'default' is the Brown training split, cut at the token bound", () => {
    const rows = calibrationRows('default', tok, {maxTokens: 1000});
    expect(rows.length).toBe(3); // whole rows of 256 under 1000 tokens
    expect(rows[0].ids[0]).toBe(tok.bosId);
  });

  test('refusals in one line', () => {
    expect(() => calibrationRows(path.join(dir, 'none.txt'), tok)).toThrow(/^calibration: .*none\.txt is not a file/);
    const short = path.join(dir, 'short.txt');
    fs.writeFileSync(short, 'Too short.');
    expect(() => calibrationRows(short, tok)).toThrow(/fewer than one row of 256/);
    expect(() => calibrationRows('default', tok, {maxTokens: 100})).toThrow(
      'calibration tokens must be an integer in [256, 4194304], got 100',
    );
  });
});
