/**
 * The ModelProto codec (src/tokenizer/model_proto.ts): every .model file the project ships or tests with
 * decodes with no field left unmodelled and re-encodes to the same bytes; the typed fields keep their wire
 * values (negative int32, large uint64, unknown fields), and malformed models are refused.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {GemmaTokenizer} from '../../src/tokenizer';
import {
  decodeModelProto,
  encodeModelProto,
  ModelProto,
  NORMALIZER_SPEC_DEFAULTS,
  PbWriter,
  PieceType,
  TRAINER_SPEC_DEFAULTS,
} from '../../src/tokenizer/model_proto';

const ROOT = path.join(__dirname, '../..');
const modelsIn = (dir: string): string[] =>
  fs.existsSync(dir)
    ? fs
        .readdirSync(dir)
        .filter((f) => f.endsWith('.model'))
        .map((f) => path.join(dir, f))
    : [];
const MODELS = [
  path.join(ROOT, 'assets/griffin-small/tokenizer.model'),
  ...modelsIn(path.join(ROOT, 'test/fixtures/tokenizer')),
  ...modelsIn(path.join(ROOT, '../shared/fixtures/tokenizer')),
];

const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'model-proto-'));
afterAll(() => fs.rmSync(tmpDir, {recursive: true, force: true}));

const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a).equals(Buffer.from(b));

describe.each(MODELS.map((f) => [path.relative(ROOT, f), f]))('%s', (_name, file) => {
  const bytes = fs.readFileSync(file);
  const model = decodeModelProto(bytes);

  test('decode then encode gives the same bytes', () => {
    expect(same(encodeModelProto(model), bytes)).toBe(true);
  });

  test('every field is modelled: nothing is carried as raw wire data', () => {
    expect(model._unknown).toBeUndefined();
    expect(model.trainer_spec?._unknown).toBeUndefined();
    expect(model.normalizer_spec?._unknown).toBeUndefined();
    expect(model.pieces.every((p) => p._unknown === undefined)).toBe(true);
    expect(model.pieces).toHaveLength(model.trainer_spec?.vocab_size as number);
  });

  test('GemmaTokenizer reads the same pieces and ids', async () => {
    const tok = await GemmaTokenizer.load(file);
    expect(tok.vocabSize).toBe(model.pieces.length);
    expect(model.pieces.map((_, i) => tok.idToPiece(i))).toEqual(model.pieces.map((p) => p.piece));
    expect([tok.unkId, tok.bosId, tok.eosId, tok.padId]).toEqual([
      model.trainer_spec?.unk_id,
      model.trainer_spec?.bos_id,
      model.trainer_spec?.eos_id,
      model.trainer_spec?.pad_id,
    ]);
  });
});

test('the models under test include the shipped tokenizer and the tiny fixture', () => {
  expect(MODELS.map((f) => path.basename(f))).toEqual(expect.arrayContaining(['tokenizer.model', 'tiny.model']));
});

describe('typed fields keep their wire values', () => {
  const piece = (text: string, score: number, type?: number): Uint8Array => {
    const w = new PbWriter().stringField(1, text).floatField(2, score);
    if (type !== undefined) w.varintField(3, type);
    return w.finish();
  };

  test('negative int32, large uint64, floats, repeated strings and bytes round-trip', () => {
    const trainer = new PbWriter()
      .stringField(1, 'a.txt')
      .stringField(1, 'b.txt')
      .varintField(3, 2)
      .varintField(4, 3)
      .floatField(10, 0.9995)
      .varintField(11, 2n ** 60n + 1n)
      .varintField(12, 7)
      .varintField(43, -1)
      .finish();
    const normalizer = new PbWriter()
      .stringField(1, 'nmt_nfkc')
      .bytesField(2, new Uint8Array([1, 2, 3]))
      .varintField(3, 1)
      .finish();
    const bytes = new PbWriter()
      .bytesField(1, piece('<unk>', 0, PieceType.UNKNOWN))
      .bytesField(1, piece('▁a', -1.5))
      .bytesField(1, piece('b', -2))
      .bytesField(2, trainer)
      .bytesField(3, normalizer)
      .finish();
    const m = decodeModelProto(bytes);
    expect(m.pieces).toEqual([
      {piece: '<unk>', score: 0, type: PieceType.UNKNOWN},
      {piece: '▁a', score: -1.5, type: PieceType.NORMAL},
      {piece: 'b', score: -2, type: PieceType.NORMAL},
    ]);
    expect(m.trainer_spec).toMatchObject({input: ['a.txt', 'b.txt'], model_type: 2, vocab_size: 3, pad_id: -1});
    expect(m.trainer_spec?.character_coverage).toBeCloseTo(0.9995, 7);
    expect(m.trainer_spec?.mining_sentence_size).toBe(7);
    // 2^60 + 1 is not a safe JS number: it stays raw rather than being rounded
    expect(m.trainer_spec?.input_sentence_size).toBeUndefined();
    expect(m.trainer_spec?._unknown).toEqual([{field: 11, wire: 0, value: 2n ** 60n + 1n}]);
    expect(m.normalizer_spec).toEqual({
      name: 'nmt_nfkc',
      precompiled_charsmap: new Uint8Array([1, 2, 3]),
      add_dummy_prefix: true,
    });
    expect(same(encodeModelProto(m), bytes)).toBe(true);
  });

  test('an object built in code encodes, and decodes back to itself', () => {
    const m: ModelProto = {
      pieces: [
        {piece: '<pad>', score: 0, type: PieceType.CONTROL},
        {piece: 'x', score: -1, type: PieceType.NORMAL},
      ],
      trainer_spec: {vocab_size: 2, pad_id: 0, unk_id: -1, user_defined_symbols: []},
      normalizer_spec: {name: 'identity', escape_whitespaces: false},
    };
    const back = decodeModelProto(encodeModelProto(m));
    // an empty repeated field has nothing on the wire
    expect(back).toEqual({...m, trainer_spec: {vocab_size: 2, pad_id: 0, unk_id: -1}});
  });

  test('unknown piece fields survive; a spec name outside the schema is refused on encode', () => {
    const p = new PbWriter().stringField(1, 'a').floatField(2, 0).varintField(9, 4).finish();
    const bytes = new PbWriter().bytesField(1, p).finish();
    const m = decodeModelProto(bytes);
    expect(m.pieces[0]._unknown).toEqual([{field: 9, wire: 0, value: 4n}]);
    expect(same(encodeModelProto(m), bytes)).toBe(true);
    const bad = {pieces: [], trainer_spec: {vocab_sise: 3}} as unknown as ModelProto;
    expect(() => encodeModelProto(bad)).toThrow("unknown spec field 'vocab_sise'");
  });

  test('defaults are the ones sentencepiece_model.proto declares, and GemmaTokenizer applies them', async () => {
    expect(TRAINER_SPEC_DEFAULTS).toMatchObject({unk_id: 0, bos_id: 1, eos_id: 2, pad_id: -1});
    expect(NORMALIZER_SPEC_DEFAULTS).toEqual({
      add_dummy_prefix: true,
      remove_extra_whitespaces: true,
      escape_whitespaces: true,
    });
    const bare = new PbWriter()
      .bytesField(1, piece('<unk>', 0, PieceType.UNKNOWN))
      .bytesField(1, piece('<s>', 0, PieceType.CONTROL))
      .bytesField(1, piece('</s>', 0, PieceType.CONTROL))
      .bytesField(1, piece('▁hi', -1))
      .finish();
    const file = path.join(tmpDir, 'bare.model');
    fs.writeFileSync(file, bare);
    const tok = await GemmaTokenizer.load(file);
    expect([tok.unkId, tok.bosId, tok.eosId, tok.padId]).toEqual([0, 1, 2, -1]);
    expect(tok.decode([3])).toBe('hi'); // add_dummy_prefix (default true) drops the leading space
  });
});

describe('malformed models are refused', () => {
  test('by the codec: truncation, pieces without (UTF-8) text', () => {
    const ok = new PbWriter().bytesField(1, new PbWriter().stringField(1, 'a').finish()).finish();
    expect(() => decodeModelProto(ok.subarray(0, ok.length - 1))).toThrow(/truncated/);
    const noText = new PbWriter().bytesField(1, new PbWriter().floatField(2, 0).finish()).finish();
    expect(() => decodeModelProto(noText)).toThrow('piece 0 has no text');
    const badPiece = new PbWriter().bytesField(1, new Uint8Array([0xff])).finish();
    const notUtf8 = new PbWriter().bytesField(1, badPiece).finish();
    expect(() => decodeModelProto(notUtf8)).toThrow('piece 0 is not UTF-8');
  });

  test('by GemmaTokenizer.load: one line that names the file and says why', async () => {
    const empty = path.join(tmpDir, 'empty.model');
    fs.writeFileSync(empty, new PbWriter().bytesField(3, new PbWriter().stringField(1, 'identity').finish()).finish());
    await expect(GemmaTokenizer.load(empty)).rejects.toThrow(
      new Error(`${empty}: tokenizer: not a sentencepiece model (no pieces)`),
    );
    const noText = path.join(tmpDir, 'notext.model');
    fs.writeFileSync(noText, new PbWriter().bytesField(1, new PbWriter().floatField(2, 0).finish()).finish());
    await expect(GemmaTokenizer.load(noText)).rejects.toThrow(
      new Error(`${noText}: tokenizer: not a sentencepiece model (piece 0 has no text)`),
    );
  });
});
