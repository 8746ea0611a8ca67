/**
 * Hugging Face `tokenizer.json` (+ `tokenizer_config.json`) for GemmaTokenizer: encoding through
 * @huggingface/tokenizers (the tokenizers.js of transformers.js), and the piece table, piece
 * kinds and special ids that GemmaTokenizer's own decoder and chat functions need.
 *   const {codec, info, config} = hfTokenizer(JSON.parse(fs.readFileSync('tokenizer.json', 'utf8')), {});
 *   const ids = codec.encodeIds('Hello');   // no BOS: GemmaTokenizer adds it
 *
 * Only Gemma's kind of tokenizer.json is taken: a BPE model with byte fallback over text whose
 * spaces became '▁' (SentencePiece converted). Another model type (WordPiece, Unigram, GPT-2's
 * byte-level BPE) fails in one line instead of giving ids that mean nothing to the model.
 */
import {Tokenizer} from '@huggingface/tokenizers';
import {BpeMerger, BpeModelJson} from './bpe_merge';
import {PieceType} from './model_proto';

/** What GemmaTokenizer needs of an encoder: text to ids, no BOS. */
export interface Codec {
  encodeIds(text: string): number[];
}

export interface PieceInfo {
  pieces: string[];
  types: PieceType[];
  unkId: number;
  bosId: number;
  eosId: number;
  padId: number;
  addDummyPrefix: boolean;
  escapeWhitespaces: boolean;
  /**
   * How a run of byte pieces that is not valid UTF-8 decodes: 'sentencepiece' gives one U+FFFD per
   * bad byte and keeps the good characters; 'hf' (the tokenizers ByteFallback decoder) gives one
   * U+FFFD per byte of the whole run.
   */
  byteRuns: 'sentencepiece' | 'hf';
}

/** tokenizer_config.json, the fields we read. */
export interface TokenizerConfigJson {
  chat_template?: string | {name: string; template: string}[];
  add_bos_token?: boolean;
  add_eos_token?: boolean;
  bos_token?: string | {content: string};
  eos_token?: string | {content: string};
  pad_token?: string | {content: string};
  unk_token?: string | {content: string};
  mask_token?: string | {content: string};
  tokenizer_class?: string;
  [k: string]: unknown;
}

interface AddedTokenJson {
  id: number;
  content: string;
  special: boolean;
  normalized?: boolean;
}

interface TokenizerJson {
  model?: BpeModelJson;
  normalizer?: {type?: string; normalizers?: unknown[]; pattern?: {String?: string}; content?: string} | null;
  pre_tokenizer?: {type?: string} | null;
  added_tokens?: AddedTokenJson[];
}

const tokenText = (t: unknown): string | undefined =>
  typeof t === 'string'
    ? t
    : t != null && typeof (t as {content?: unknown}).content === 'string'
      ? (t as {content: string}).content
      : undefined;

/** The normalizers in order (a Sequence flattened). */
function normalizers(n: TokenizerJson['normalizer']): {type?: string; pattern?: {String?: string}; content?: string}[] {
  if (n == null) return [];
  if (n.type === 'Sequence') return (n.normalizers ?? []).flatMap((m) => normalizers(m as TokenizerJson['normalizer']));
  return [n];
}

/**
 * Checks that `json` is a SentencePiece-style BPE tokenizer and builds its codec and piece table.
 * `where` names the file in errors.
 */
export function hfTokenizer(
  json: unknown,
  config: TokenizerConfigJson,
  where = 'tokenizer.json',
): {codec: Codec; info: PieceInfo; config: TokenizerConfigJson} {
  try {
    return readHfTokenizer(json, config, where);
  } catch (e) {
    // A malformed field fails somewhere inside (a vocabulary that is no object, ids that are no
    // integers): the message names the file either way.
    const msg = (e as Error).message.split('\n')[0];
    throw new Error(msg.startsWith(`${where}:`) ? msg : `${where}: ${msg}`);
  }
}

function readHfTokenizer(
  json: unknown,
  config: TokenizerConfigJson,
  where: string,
): {codec: Codec; info: PieceInfo; config: TokenizerConfigJson} {
  const j = json as TokenizerJson;
  const model = j?.model;
  if (model == null || typeof model !== 'object' || model.vocab == null)
    throw new Error(`${where}: not a Hugging Face tokenizer.json (no model.vocab)`);
  if (model.type !== 'BPE' || model.byte_fallback !== true || Array.isArray(model.vocab))
    throw new Error(
      `${where}: a ${model.type ?? 'untyped'} tokenizer${model.type === 'BPE' ? ' without byte fallback' : ''}, not Gemma's (SentencePiece BPE with byte fallback)`,
    );
  const norms = normalizers(j.normalizer);
  const spaceToMeta = norms.some((n) => n.type === 'Replace' && n.pattern?.String === ' ' && n.content === '▁');
  if (!spaceToMeta || (j.pre_tokenizer != null && j.pre_tokenizer.type !== 'Metaspace'))
    throw new Error(
      `${where}: its text is not SentencePiece-escaped (spaces to '▁'${j.pre_tokenizer?.type ? `; pre-tokenizer ${j.pre_tokenizer.type}` : ''}): not Gemma's kind of tokenizer`,
    );
  const added = j.added_tokens ?? [];
  let size = 0;
  const isId = (id: unknown) => Number.isInteger(id) && (id as number) >= 0 && (id as number) < 2 ** 24;
  if (!Array.isArray(added)) throw new Error(`${where}: added_tokens is not a list`);
  for (const [p, id] of Object.entries(model.vocab)) {
    if (!isId(id)) throw new Error(`${where}: model.vocab['${p}'] is ${JSON.stringify(id)}, not a token id`);
    size = Math.max(size, id + 1);
  }
  for (const a of added) {
    if (a == null || !isId(a.id) || typeof a.content !== 'string')
      throw new Error(`${where}: an added_tokens entry without an integer id and a content string`);
    size = Math.max(size, a.id + 1);
  }
  const pieces: string[] = new Array(size).fill('');
  const types: PieceType[] = new Array(size).fill(PieceType.UNUSED);
  for (const [p, id] of Object.entries(model.vocab)) {
    pieces[id] = p;
    types[id] = /^<0x[0-9A-F]{2}>$/.test(p) ? PieceType.BYTE : PieceType.NORMAL;
  }
  for (const a of added) {
    pieces[a.id] = a.content;
    types[a.id] = a.special ? PieceType.CONTROL : PieceType.USER_DEFINED;
  }
  const idOf = (name: string | undefined, fallback: string): number => pieces.indexOf(name ?? fallback);
  const unkId = idOf(model.unk_token ?? tokenText(config.unk_token), '<unk>');
  if (unkId >= 0) types[unkId] = PieceType.UNKNOWN;
  // transformers' Gemma tokenizer class has mask_token '<mask>' by default, so its decode(...,
  // skip_special_tokens) drops it although tokenizer.json does not mark it special.
  const mask =
    tokenText(config.mask_token) ?? (/^Gemma/.test(String(config.tokenizer_class ?? '')) ? '<mask>' : undefined);
  const maskId = mask == null ? -1 : pieces.indexOf(mask);
  if (maskId >= 0) types[maskId] = PieceType.CONTROL;
  const info: PieceInfo = {
    pieces,
    types,
    unkId,
    bosId: idOf(tokenText(config.bos_token), '<bos>'),
    eosId: idOf(tokenText(config.eos_token), '<eos>'),
    padId: idOf(tokenText(config.pad_token), '<pad>'),
    addDummyPrefix: norms.some((n) => n.type === 'Prepend' && n.content === '▁'),
    escapeWhitespaces: true,
    byteRuns: 'hf',
  };
  let tok: Tokenizer | undefined;
  const library = (): Tokenizer => {
    if (tok == null)
      try {
        tok = new Tokenizer(json as object, config as object);
      } catch (e) {
        throw new Error(`${where}: ${(e as Error).message.split('\n')[0]}`);
      }
    return tok;
  };
  const whole = (text: string) => library().encode(text, {add_special_tokens: false}).ids;
  const byWord = wordSplitIsExact(model.vocab, added, norms, j.pre_tokenizer);
  // Gemma's kind: our own exact merge (bpe_merge.ts) per word, the library built only if needed.
  const fast = byWord ? fastWordEncoder(model, added, norms) : null;
  if (fast == null) library();
  return {codec: {encodeIds: byWord ? wordCachedEncoder(fast ?? whole) : whole}, info, config};
}

/**
 * Whether encoding word by word (a word: a run of spaces, then what follows up to the next space)
 * gives the ids of encoding the whole text. True when no merge can cross the start of a word: no
 * piece has '▁' after another character, no added token strips a space or mixes spaces ('▁' or ' ')
 * with other characters (Gemma's '▁▁'... tokens lie inside a run of spaces, which a word keeps
 * whole), and nothing adds a '▁' per call (Prepend) or re-splits (a pre-tokenizer). Gemma's
 * tokenizer.json is so.
 */
function wordSplitIsExact(
  vocab: Record<string, number>,
  added: (AddedTokenJson & {lstrip?: boolean; rstrip?: boolean; single_word?: boolean})[],
  norms: {type?: string}[],
  pre: TokenizerJson['pre_tokenizer'],
): boolean {
  if (pre != null || norms.some((n) => n.type !== 'Replace')) return false;
  const mixed = (c: string) => /[ ▁]/.test(c) && !/^[ ▁]+$/.test(c);
  if (added.some((a) => mixed(a.content) || a.lstrip || a.rstrip || a.single_word)) return false;
  for (const p of Object.keys(vocab)) if (/[^▁]▁/.test(p)) return false;
  return true;
}

/**
 * Encodes word by word with a cache of each word's ids: the library's BPE works on the whole text
 * as one word (Gemma has no pre-tokenizer), 3-5x slower on a megabyte of English.
 */
function wordCachedEncoder(encode: (text: string) => number[]): (text: string) => number[] {
  const cache = new Map<string, number[]>();
  return (text) => {
    const out: number[] = [];
    for (const m of text.matchAll(/[ ▁]*[^ ▁]+|[ ▁]+/g)) {
      const w = m[0];
      let ids = cache.get(w);
      if (ids == null) {
        ids = encode(w);
        if (cache.size >= 200_000) cache.clear();
        if (w.length <= 64) cache.set(w, ids);
      }
      for (const id of ids) out.push(id);
    }
    return out;
  };
}

/**
 * What the library does to one word with no pre-tokenizer, reproduced: split out added tokens
 * (the longest match at each position, on the raw text, then normalized contents on the
 * normalized text), apply the normalizers (string Replace only), and BPE-merge the rest with
 * BpeMerger. Null when the file needs something this does not reproduce.
 */
function fastWordEncoder(
  model: BpeModelJson,
  added: AddedTokenJson[],
  norms: {type?: string; pattern?: {String?: string; Regex?: string}; content?: string}[],
): ((word: string) => number[]) | null {
  const replaces: [string, string][] = [];
  for (const n of norms) {
    const from = n.pattern?.String;
    // (the library matches a string pattern as a /gu regex: by code point, so no lone surrogates here)
    if (n.type !== 'Replace' || typeof from !== 'string' || from === '' || /[\uD800-\uDFFF]/.test(from)) return null;
    // (its replacement string's $ patterns are not reproduced: such a file keeps the library)
    if ((n.content ?? '').includes('$')) return null;
    replaces.push([from, n.content ?? '']);
  }
  const normalize = (t: string): string => {
    for (const [from, to] of replaces) t = t.split(from).join(to);
    return t;
  };
  const bpe = BpeMerger.build(model, added);
  if (bpe == null) return null;
  const addedId = new Map<string, number>();
  const raw: string[] = [];
  const normed: string[] = [];
  for (const a of added) {
    addedId.set(a.content, a.id);
    // AddedToken's default: normalized unless special.
    if (a.normalized ?? !a.special) {
      const c = normalize(a.content);
      addedId.set(c, a.id);
      normed.push(c);
    } else raw.push(a.content);
  }
  const splitRaw = dictionarySplitter(raw);
  const splitNormed = dictionarySplitter(normed);
  return (word) => {
    const out: number[] = [];
    for (const section of splitRaw(word)) {
      const id = addedId.get(section);
      if (id !== undefined) {
        out.push(id);
        continue;
      }
      for (const sub of splitNormed(normalize(section))) {
        const sid = addedId.get(sub);
        if (sid !== undefined) out.push(sid);
        else bpe.encodeWord(sub, out);
      }
    }
    return out;
  };
}

/**
 * Splits text around dictionary words: at each position the longest word that starts there (by
 * UTF-16 units), else the position moves on by one unit; the library's DictionarySplitter rule.
 * Empty pieces are left out.
 */
function dictionarySplitter(words: string[]): (text: string) => string[] {
  type Node = Map<string, Node> & {end?: string};
  const root: Node = new Map();
  for (const w of words) {
    let node = root;
    for (let i = 0; i < w.length; i++) {
      // by UTF-16 unit, as the library walks its trie
      let child = node.get(w[i]);
      if (child == null) {
        child = new Map();
        node.set(w[i], child);
      }
      node = child;
    }
    node.end = w;
  }
  if (root.size === 0) return (text) => (text.length === 0 ? [] : [text]);
  return (text) => {
    const result: string[] = [];
    const n = text.length;
    let start = 0;
    let i = 0;
    while (i < n) {
      let node: Node | undefined = root;
      let match: string | undefined;
      for (let j = i; j < n; j++) {
        node = node.get(text[j]);
        if (node == null) break;
        if (node.end) match = node.end;
      }
      if (match) {
        if (i > start) result.push(text.slice(start, i));
        result.push(match);
        i += match.length;
        start = i;
      } else i++;
    }
    if (start < n) result.push(text.slice(start));
    return result;
  };
}
