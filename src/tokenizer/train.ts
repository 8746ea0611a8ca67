/**
 * Trains a BPE SentencePiece model in TypeScript and returns it as a SentencePiece ModelProto (.model bytes,
 * through src/tokenizer/model_proto.ts), so the project's tokenizer needs no Python: sentencepiece-js and
 * GemmaTokenizer load the result like any spm_train output. The command line is `griffin train-tokenizer`
 * (src/cli/tokenizer.ts).
 *
 * The model follows Gemma's layout (test/fixtures/tokenizer/tiny.model): <pad>=0 <eos>=1 <bos>=2 <unk>=3,
 * <start_of_turn>=4 <end_of_turn>=5 (user defined), the 256 byte pieces <0x00>..<0xFF> (byte_fallback), then
 * the merged pieces in merge order with score -rank, then the single characters. Normalization is
 * "identity" with no dummy prefix and no whitespace folding, only ' ' -> '▁', so decode(encode(s)) === s for
 * any well-formed string without a literal '▁' (U+2581); characters without a piece go out as UTF-8 bytes.
 *
 *   const bytes = trainBpeTokenizer(texts, { vocabSize: 4096 });  // .model file contents
 */
import {
  encodeModelProto,
  MODEL_TYPE_BPE,
  ModelProto,
  NormalizerSpec,
  PieceType,
  SentencePiece,
  TrainerSpec,
} from './model_proto';

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

export const GEMMA_SPECIALS = {pad: '<pad>', eos: '<eos>', bos: '<bos>', unk: '<unk>'} as const;
const DEFAULT_USER_DEFINED = ['<start_of_turn>', '<end_of_turn>'];
/** Pieces before the first merge with the default user-defined symbols: 4 special, 2 turn markers, 256 bytes. */
export const DEFAULT_META_PIECES = 4 + DEFAULT_USER_DEFINED.length + 256;
/** Largest vocabSize: symbol ids must stay below 2^21, the pair-key stride of the merge loop. */
export const MAX_VOCAB_SIZE = 1 << 20;
const PRINTABLE_ASCII = Array.from({length: 0x7e - 0x21 + 1}, (_, i) => String.fromCharCode(0x21 + i)).join('');

const SCRIPTS = [
  'Latin',
  'Greek',
  'Cyrillic',
  'Armenian',
  'Hebrew',
  'Arabic',
  'Syriac',
  'Thaana',
  'Devanagari',
  'Bengali',
  'Gurmukhi',
  'Gujarati',
  'Oriya',
  'Tamil',
  'Telugu',
  'Kannada',
  'Malayalam',
  'Sinhala',
  'Thai',
  'Lao',
  'Tibetan',
  'Myanmar',
  'Georgian',
  'Hangul',
  'Ethiopic',
  'Cherokee',
  'Khmer',
  'Mongolian',
  'Han',
  'Hiragana',
  'Katakana',
  'Bopomofo',
  'Yi',
  'Inherited',
  'Common',
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
  for (const [name, re] of scriptRegexes)
    if (re.test(ch)) {
      s = name;
      break;
    }
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
export type PieceRules = Required<
  Pick<BpeTrainOptions, 'maxPieceLength' | 'splitDigits' | 'splitByUnicodeScript' | 'allowWhitespaceOnlyPieces'>
>;

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
  get size(): number {
    return this.keys.length;
  }
  private higher(i: number, j: number): boolean {
    const ci = this.counts[i],
      cj = this.counts[j];
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
  pop(): {count: number; key: number} | undefined {
    const n = this.keys.length;
    if (n === 0) return undefined;
    const top = {count: this.counts[0], key: this.keys[0]};
    this.swap(0, n - 1);
    this.counts.pop();
    this.keys.pop();
    let i = 0;
    const m = n - 1;
    for (;;) {
      const l = 2 * i + 1,
        r = l + 1;
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
    {piece: GEMMA_SPECIALS.pad, score: 0, type: PieceType.CONTROL},
    {piece: GEMMA_SPECIALS.eos, score: 0, type: PieceType.CONTROL},
    {piece: GEMMA_SPECIALS.bos, score: 0, type: PieceType.CONTROL},
    {piece: GEMMA_SPECIALS.unk, score: 0, type: PieceType.UNKNOWN},
    ...o.userDefinedSymbols.map((s) => ({piece: s, score: 0, type: PieceType.USER_DEFINED})),
  ];
  for (let b = 0; b < 256; b++) {
    meta.push({piece: `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`, score: 0, type: PieceType.BYTE});
  }
  if (!Number.isInteger(opts.vocabSize) || opts.vocabSize <= meta.length) {
    throw new RangeError(
      `vocabSize must be an integer above ${meta.length} (special and byte pieces), got ${opts.vocabSize}`,
    );
  }
  if (opts.vocabSize > MAX_VOCAB_SIZE) {
    throw new RangeError(`vocabSize must be at most ${MAX_VOCAB_SIZE}, got ${opts.vocabSize}`);
  }

  // 1. Word-frequency table. User-defined symbols in the text are matched as wholes by the encoder, so they
  //    are cut out here and never counted.
  const wordFreq = new Map<string, number>();
  const udRe =
    o.userDefinedSymbols.length > 0
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
    for (const c of w) {
      charFreq.set(c, (charFreq.get(c) ?? 0) + f);
      totalChars += f;
    }
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

  const KEY = 1 << 21; // pair key = left * KEY + right (symbols < vocabSize <= MAX_VOCAB_SIZE < 2^21)
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
    const la = symStr[Math.floor(ka / KEY)],
      lb = symStr[Math.floor(kb / KEY)];
    if (la !== lb) return la < lb;
    return symStr[ka % KEY] < symStr[kb % KEY];
  };
  const heap = new PairHeap(before);

  for (let wi = 0; wi < words.length; wi++) {
    const w = words[wi],
      f = freqs[wi];
    for (let i = 0; i + 1 < w.length; i++) {
      const a = w[i],
        b = w[i + 1];
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
    const a = Math.floor(top.key / KEY),
      b = top.key % KEY;
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
      for (let i = 0; i + 1 < w.length; i++)
        if (w[i] === a && w[i + 1] === b) {
          hit = true;
          break;
        }
      if (!hit) continue;
      const f = freqs[wi];
      const out: number[] = [];
      for (let i = 0; i < w.length; i++) {
        if (i + 1 < w.length && w[i] === a && w[i + 1] === b) {
          out.push(c);
          i++;
        } else out.push(w[i]);
      }
      for (let i = 0; i + 1 < w.length; i++) {
        const x = w[i],
          y = w[i + 1];
        if (x >= 0 && y >= 0 && valid(x, y)) bump(x * KEY + y, -f);
      }
      for (let i = 0; i + 1 < out.length; i++) {
        const x = out[i],
          y = out[i + 1];
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
      if (n <= 0) {
        pairCount.delete(key);
        pairWords.delete(key);
      } else if (d > 0) heap.push(n, key);
    }
    if (opts.onProgress && merged.length % 256 === 0) opts.onProgress(merged.length, plannedMerges);
  }

  // 5. Pieces: meta, merges by rank, then characters by frequency; scores continue -0, -1, ... as in spm_train.
  const pieces: SentencePiece[] = [...meta];
  let rank = 0;
  for (const s of merged) pieces.push({piece: s, score: -rank++, type: PieceType.NORMAL});
  for (const [ch] of [...required].sort(byFreq)) pieces.push({piece: ch, score: -rank++, type: PieceType.NORMAL});

  const trainer_spec: TrainerSpec = {
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
    unk_id: 3,
    bos_id: 2,
    eos_id: 1,
    pad_id: 0,
    unk_piece: GEMMA_SPECIALS.unk,
    bos_piece: GEMMA_SPECIALS.bos,
    eos_piece: GEMMA_SPECIALS.eos,
    pad_piece: GEMMA_SPECIALS.pad,
  };
  if (trainer_spec.input?.length === 0) delete trainer_spec.input;
  const normalizer_spec: NormalizerSpec = {
    name: 'identity',
    precompiled_charsmap: new Uint8Array(0),
    add_dummy_prefix: false,
    remove_extra_whitespaces: false,
    escape_whitespaces: true,
  };
  return {model: {pieces, trainer_spec, normalizer_spec}, merges: merged.length, wordTypes: words.length};
}

/** Trains a BPE tokenizer and returns the .model file bytes. */
export function trainBpeTokenizer(texts: Iterable<string>, opts: BpeTrainOptions): Uint8Array {
  return encodeModelProto(trainBpe(texts, opts).model);
}
