/**
 * SentencePiece's ModelProto (sentencepiece_model.proto, the .model file) as a typed object and back: the one
 * codec that GemmaTokenizer reads models with and the BPE trainer (src/tokenizer/train.ts) writes them with.
 * Fields this file does not name are kept as read, so decoding and re-encoding a model that a protobuf
 * serializer wrote gives back the same bytes.
 *   const model = decodeModelProto(fs.readFileSync('tokenizer.model'));  // model.pieces[i].piece, .score, .type
 *   fs.writeFileSync('copy.model', encodeModelProto(model));
 */

// ---------------------------------------------------------------------------------------------------------
// Wire format: what sentencepiece_model.proto needs (varints, 32- and 64-bit, length-delimited fields).
// ---------------------------------------------------------------------------------------------------------

/** One field of a message as it appears on the wire. Varints are kept as bigint so nothing is lost. */
export type PbField =
  | {field: number; wire: 0; value: bigint}
  | {field: number; wire: 1; value: Uint8Array} // 8 raw bytes
  | {field: number; wire: 2; value: Uint8Array}
  | {field: number; wire: 5; value: Uint8Array}; // 4 raw bytes

/** Parses one message into its fields, in wire order (length-delimited values are views into `buf`). */
export function readPbFields(buf: Uint8Array): PbField[] {
  const out: PbField[] = [];
  let i = 0;
  const varint = (): bigint => {
    let r = 0n;
    for (let shift = 0n; ; shift += 7n) {
      if (i >= buf.length) throw new Error('protobuf: truncated varint');
      if (shift > 63n) throw new Error('protobuf: varint longer than 10 bytes');
      const b = buf[i++];
      r |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return r;
    }
  };
  const take = (n: bigint | number): Uint8Array => {
    if (BigInt(i) + BigInt(n) > BigInt(buf.length)) throw new Error('protobuf: truncated field');
    const v = buf.subarray(i, i + Number(n));
    i += Number(n);
    return v;
  };
  while (i < buf.length) {
    const key = varint();
    const field = Number(key >> 3n);
    const wire = Number(key & 7n);
    if (field === 0) throw new Error('protobuf: field number 0');
    if (wire === 0) out.push({field, wire, value: varint()});
    else if (wire === 1) out.push({field, wire, value: take(8)});
    else if (wire === 2) out.push({field, wire, value: take(varint())});
    else if (wire === 5) out.push({field, wire, value: take(4)});
    else throw new Error(`protobuf: unsupported wire type ${wire}`);
  }
  return out;
}

const textEncoder = new TextEncoder();
// Fatal: a string field that is not UTF-8 could not be written back as the same bytes.
const textDecoder = new TextDecoder('utf-8', {fatal: true});

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

  tag(field: number, wire: number): this {
    return this.varint(field * 8 + wire);
  }

  bytesField(field: number, bytes: Uint8Array): this {
    return this.tag(field, 2).varint(bytes.length).raw(bytes);
  }

  stringField(field: number, s: string): this {
    return this.bytesField(field, textEncoder.encode(s));
  }

  varintField(field: number, v: bigint | number): this {
    return this.tag(field, 0).varint(v);
  }

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

  finish(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

// ---------------------------------------------------------------------------------------------------------
// The schema, typed. Spec messages use the proto's own (snake_case) field names.
// ---------------------------------------------------------------------------------------------------------

/** ModelProto.SentencePiece.Type */
export enum PieceType {
  NORMAL = 1,
  UNKNOWN = 2,
  CONTROL = 3,
  USER_DEFINED = 4,
  UNUSED = 5,
  BYTE = 6,
}

export interface SentencePiece {
  piece: string;
  score: number;
  type: PieceType;
  /** Fields of the piece message this file does not name, as read. */
  _unknown?: PbField[];
}

/** TrainerSpec.ModelType */
export const MODEL_TYPE_BPE = 2;

type Kind = 'string' | 'bytes' | 'bool' | 'int32' | 'uint64' | 'enum' | 'float';
interface KindValue {
  string: string;
  bytes: Uint8Array;
  bool: boolean;
  int32: number;
  uint64: number;
  enum: number;
  float: number;
}
/** A field's number, its kind, and 'repeated' for lists. */
type FieldDef = readonly [number, Kind] | readonly [number, Kind, 'repeated'];
type FieldDefs = Readonly<Record<string, FieldDef>>;
/** The message a field table describes: every field optional (proto2), anything else kept in `_unknown`. */
type MessageOf<D extends FieldDefs> = {
  -readonly [K in keyof D]?: D[K] extends readonly [number, Kind, 'repeated']
    ? KindValue[D[K][1]][]
    : KindValue[D[K][1]];
} & {_unknown?: PbField[]};

export const TRAINER_SPEC_FIELDS = {
  input: [1, 'string', 'repeated'],
  input_format: [7, 'string'],
  model_prefix: [2, 'string'],
  model_type: [3, 'enum'],
  vocab_size: [4, 'int32'],
  accept_language: [5, 'string', 'repeated'],
  self_test_sample_size: [6, 'int32'],
  enable_differential_privacy: [50, 'bool'],
  differential_privacy_noise_level: [51, 'float'],
  differential_privacy_clipping_threshold: [52, 'uint64'],
  character_coverage: [10, 'float'],
  input_sentence_size: [11, 'uint64'],
  shuffle_input_sentence: [19, 'bool'],
  mining_sentence_size: [12, 'int32'],
  training_sentence_size: [13, 'int32'],
  seed_sentencepiece_size: [14, 'int32'],
  shrinking_factor: [15, 'float'],
  max_sentence_length: [18, 'int32'],
  num_threads: [16, 'int32'],
  num_sub_iterations: [17, 'int32'],
  max_sentencepiece_length: [20, 'int32'],
  split_by_unicode_script: [21, 'bool'],
  split_by_number: [23, 'bool'],
  split_by_whitespace: [22, 'bool'],
  treat_whitespace_as_suffix: [24, 'bool'],
  allow_whitespace_only_pieces: [26, 'bool'],
  split_digits: [25, 'bool'],
  pretokenization_delimiter: [53, 'string'],
  control_symbols: [30, 'string', 'repeated'],
  user_defined_symbols: [31, 'string', 'repeated'],
  required_chars: [36, 'string'],
  byte_fallback: [35, 'bool'],
  vocabulary_output_piece_score: [32, 'bool'],
  hard_vocab_limit: [33, 'bool'],
  use_all_vocab: [34, 'bool'],
  unk_id: [40, 'int32'],
  bos_id: [41, 'int32'],
  eos_id: [42, 'int32'],
  pad_id: [43, 'int32'],
  unk_piece: [45, 'string'],
  bos_piece: [46, 'string'],
  eos_piece: [47, 'string'],
  pad_piece: [48, 'string'],
  unk_surface: [44, 'string'],
  train_extremely_large_corpus: [49, 'bool'],
  seed_sentencepieces_file: [54, 'string'],
} as const satisfies FieldDefs;

export const NORMALIZER_SPEC_FIELDS = {
  name: [1, 'string'],
  precompiled_charsmap: [2, 'bytes'],
  add_dummy_prefix: [3, 'bool'],
  remove_extra_whitespaces: [4, 'bool'],
  escape_whitespaces: [5, 'bool'],
  normalization_rule_tsv: [6, 'string'],
} as const satisfies FieldDefs;

export type TrainerSpec = MessageOf<typeof TRAINER_SPEC_FIELDS>;
export type NormalizerSpec = MessageOf<typeof NORMALIZER_SPEC_FIELDS>;

export interface ModelProto {
  pieces: SentencePiece[];
  trainer_spec?: TrainerSpec;
  normalizer_spec?: NormalizerSpec;
  /** SelfTestData, kept as its encoded bytes. */
  self_test_data?: Uint8Array;
  denormalizer_spec?: NormalizerSpec;
  _unknown?: PbField[];
}

/** What sentencepiece_model.proto declares for the fields readers need when a model leaves them out. */
export const TRAINER_SPEC_DEFAULTS = {unk_id: 0, bos_id: 1, eos_id: 2, pad_id: -1, byte_fallback: false} as const;
export const NORMALIZER_SPEC_DEFAULTS = {
  add_dummy_prefix: true,
  remove_extra_whitespaces: true,
  escape_whitespaces: true,
} as const;

// ---------------------------------------------------------------------------------------------------------
// Decoding and encoding
// ---------------------------------------------------------------------------------------------------------

const readF32 = (b: Uint8Array): number => new DataView(b.buffer, b.byteOffset, 4).getFloat32(0, true);
/** A plain copy: slice() of a Node Buffer would be a view into the file's bytes. */
const copyBytes = (b: Uint8Array): Uint8Array => new Uint8Array(b);

/** A known field's value, or undefined when the wire form does not fit its kind (the field is then kept raw). */
function fieldValue(f: PbField, kind: Kind): KindValue[Kind] | undefined {
  if (f.wire === 0) {
    if (kind === 'bool') return f.value !== 0n;
    // Above 2^53 a number would round: such a value stays a raw field, so it is written back unchanged.
    if (kind === 'uint64') return f.value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(f.value) : undefined;
    // int32/enum: negative values arrive as 64-bit two's complement.
    if (kind === 'int32' || kind === 'enum') return Number(BigInt.asIntN(32, f.value));
  } else if (f.wire === 5 && kind === 'float') return readF32(f.value);
  else if (f.wire === 2 && kind === 'string') return textDecoder.decode(f.value);
  else if (f.wire === 2 && kind === 'bytes') return copyBytes(f.value);
  return undefined;
}

function decodeMessage<D extends FieldDefs>(buf: Uint8Array, defs: D): MessageOf<D> {
  const byNumber = new Map<number, [string, FieldDef]>();
  for (const [name, def] of Object.entries(defs)) byNumber.set(def[0], [name, def]);
  const msg: Record<string, unknown> & {_unknown?: PbField[]} = {};
  for (const f of readPbFields(buf)) {
    const known = byNumber.get(f.field);
    const value = known && fieldValue(f, known[1][1]);
    if (!known || value === undefined) {
      (msg._unknown ??= []).push(f);
      continue;
    }
    const [name, def] = known;
    if (def[2] === 'repeated') ((msg[name] ??= []) as unknown[]).push(value);
    else msg[name] = value;
  }
  return msg as MessageOf<D>;
}

function writeValue(w: PbWriter, num: number, kind: Kind, v: unknown): void {
  if (kind === 'string') w.stringField(num, v as string);
  else if (kind === 'bytes') w.bytesField(num, v as Uint8Array);
  else if (kind === 'float') w.floatField(num, v as number);
  else if (kind === 'bool') w.varintField(num, v ? 1 : 0);
  else w.varintField(num, v as number);
}

/** Fields in number order, as protobuf serializers write them (the sort is stable: repeats keep their order). */
function encodeMessage<D extends FieldDefs>(msg: MessageOf<D>, defs: D): Uint8Array {
  const items: {field: number; write: (w: PbWriter) => void}[] = [];
  for (const [name, value] of Object.entries(msg)) {
    if (name === '_unknown' || value === undefined) continue;
    const def = defs[name];
    if (!def) throw new Error(`protobuf: unknown spec field '${name}'`);
    const [num, kind] = def;
    const values = def[2] === 'repeated' ? (value as unknown[]) : [value];
    items.push({
      field: num,
      write: (w) => {
        for (const v of values) writeValue(w, num, kind, v);
      },
    });
  }
  for (const f of msg._unknown ?? []) items.push({field: f.field, write: (w) => w.pbField(f)});
  items.sort((a, b) => a.field - b.field);
  const w = new PbWriter();
  for (const it of items) it.write(w);
  return w.finish();
}

function decodePiece(buf: Uint8Array, index: number): SentencePiece {
  let piece: string | undefined;
  const p: SentencePiece = {piece: '', score: 0, type: PieceType.NORMAL};
  for (const g of readPbFields(buf)) {
    if (g.field === 1 && g.wire === 2) {
      try {
        piece = textDecoder.decode(g.value);
      } catch {
        throw new Error(`piece ${index} is not UTF-8`);
      }
    } else if (g.field === 2 && g.wire === 5) p.score = readF32(g.value);
    else if (g.field === 3 && g.wire === 0) p.type = Number(g.value) as PieceType;
    else (p._unknown ??= []).push(g);
  }
  if (piece === undefined) throw new Error(`piece ${index} has no text`);
  p.piece = piece;
  return p;
}

/** Throws on bytes that are not a protobuf message, or pieces without (UTF-8) text. */
export function decodeModelProto(buf: Uint8Array): ModelProto {
  const model: ModelProto = {pieces: []};
  for (const f of readPbFields(buf)) {
    if (f.wire !== 2) (model._unknown ??= []).push(f);
    else if (f.field === 1) model.pieces.push(decodePiece(f.value, model.pieces.length));
    else if (f.field === 2) model.trainer_spec = decodeMessage(f.value, TRAINER_SPEC_FIELDS);
    else if (f.field === 3) model.normalizer_spec = decodeMessage(f.value, NORMALIZER_SPEC_FIELDS);
    else if (f.field === 4) model.self_test_data = copyBytes(f.value);
    else if (f.field === 5) model.denormalizer_spec = decodeMessage(f.value, NORMALIZER_SPEC_FIELDS);
    else (model._unknown ??= []).push(f);
  }
  return model;
}

/**
 * Serializes as protobuf's C++ writer does: pieces, then the other messages, each in field-number order.
 * A piece's score is always written and its type only when not NORMAL, which is how spm_train sets them.
 */
export function encodeModelProto(model: ModelProto): Uint8Array {
  const w = new PbWriter();
  for (const p of model.pieces) {
    const pw = new PbWriter().stringField(1, p.piece).floatField(2, p.score);
    if (p.type !== PieceType.NORMAL) pw.varintField(3, p.type);
    for (const f of p._unknown ?? []) pw.pbField(f);
    w.bytesField(1, pw.finish());
  }
  if (model.trainer_spec) w.bytesField(2, encodeMessage(model.trainer_spec, TRAINER_SPEC_FIELDS));
  if (model.normalizer_spec) w.bytesField(3, encodeMessage(model.normalizer_spec, NORMALIZER_SPEC_FIELDS));
  if (model.self_test_data) w.bytesField(4, model.self_test_data);
  if (model.denormalizer_spec) w.bytesField(5, encodeMessage(model.denormalizer_spec, NORMALIZER_SPEC_FIELDS));
  for (const f of model._unknown ?? []) w.pbField(f);
  return w.finish();
}
