/**
 * An exact, fast BPE merge for a tokenizer.json BPE model with byte fallback (Gemma's): the ids
 * that @huggingface/tokenizers' BPE model gives for one pre-split, normalized word, computed over
 * integer symbol ids with a typed-array hash of merge pairs and a binary heap, instead of the
 * library's JSON.stringify'd pair key per lookup. Built once from the model's vocab and merges.
 *   const bpe = BpeMerger.build(JSON.parse(fs.readFileSync('tokenizer.json', 'utf8')).model, []);
 *   const out: number[] = []; bpe?.encodeWord('▁Hello', out);
 *
 * The library's rules, reproduced: a word is split into code points; the adjacent pair with the
 * lowest merge rank merges first, the leftmost (by its left part's first code point) on a tie;
 * a later duplicate merge line overrides an earlier one; a piece not in the vocab becomes its
 * UTF-8 byte pieces (the unknown id when one of them is missing); runs of unknown ids fuse into
 * one when fuse_unk is set. `build` returns null for what it does not reproduce (dropout, word
 * suffixes, an unknown token outside the vocab),
 * and the caller then keeps the library.
 */

export interface BpeModelJson {
  type?: string;
  vocab?: Record<string, number>;
  merges?: (string | string[])[];
  byte_fallback?: boolean;
  unk_token?: string | null;
  fuse_unk?: boolean;
  ignore_merges?: boolean;
  dropout?: number | null;
  end_of_word_suffix?: string | null;
  continuing_subword_suffix?: string | null;
  continuing_subword_prefix?: string | null;
}

const EMPTY = -1;
const DEAD = -2;
const POS_SCALE = 2 ** 32;

export class BpeMerger {
  /** Symbol (vocab piece, merge part or merge result) of a string. */
  private readonly symOf = new Map<string, number>();
  private readonly symStr: string[] = [];
  /** Token id of each symbol, -1 when the string is not a token. */
  private symTok: Int32Array = new Int32Array(0);
  // Open-addressed hash of merge pairs (left symbol, right symbol) -> rank, merged symbol.
  private pairA: Int32Array = new Int32Array(0);
  private pairB: Int32Array = new Int32Array(0);
  private pairRank: Int32Array = new Int32Array(0);
  private pairOut: Int32Array = new Int32Array(0);
  private pairShift = 0;
  private readonly byteTok = new Int32Array(256);
  private readonly encoder = new TextEncoder();
  private readonly tokOf: Map<string, number>;
  private readonly unkId: number;
  private readonly fuseUnk: boolean;
  private readonly ignoreMerges: boolean;
  // Scratch for one word, grown as needed.
  private sym = new Int32Array(64);
  private next = new Int32Array(64);
  private prev = new Int32Array(64);
  private chars: string[] = [];
  private hKey = new Float64Array(128);
  private hRight = new Int32Array(128);
  private hA = new Int32Array(128);
  private hB = new Int32Array(128);
  private hSize = 0;

  private constructor(tokOf: Map<string, number>, unkId: number, fuseUnk: boolean, ignoreMerges: boolean) {
    this.tokOf = tokOf;
    this.unkId = unkId;
    this.fuseUnk = fuseUnk;
    this.ignoreMerges = ignoreMerges;
  }

  /**
   * The merger for `model` (tokenizer.json's model) whose token table is the vocab with
   * `added` tokens' contents set over it (as the library does), or null when the model is one
   * this merger does not reproduce exactly.
   */
  static build(model: BpeModelJson, added: {content: string; id: number}[]): BpeMerger | null {
    if (model.type !== 'BPE' || model.vocab == null || model.byte_fallback !== true) return null;
    if (model.dropout != null || model.end_of_word_suffix || model.continuing_subword_suffix) return null;
    const tokOf = new Map<string, number>();
    for (const p in model.vocab) tokOf.set(p, model.vocab[p]);
    for (const a of added) tokOf.set(a.content, a.id);
    let unk = -1;
    if (model.unk_token != null) {
      // The library's unknown id is the vocab's; an added token of the same text must agree.
      const u = tokOf.get(model.unk_token);
      if (u === undefined || u !== model.vocab[model.unk_token]) return null;
      unk = u;
    }
    const m = new BpeMerger(tokOf, unk, model.fuse_unk === true, model.ignore_merges === true);
    // A byte with no piece (Gemma has none for 0x09) is -1: a piece holding it becomes unknown.
    for (let b = 0; b < 256; b++)
      m.byteTok[b] = tokOf.get(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`) ?? -1;
    const merges = model.merges ?? [];
    const sym = (s: string): number => {
      let k = m.symOf.get(s);
      if (k === undefined) {
        k = m.symStr.length;
        m.symOf.set(s, k);
        m.symStr.push(s);
      }
      return k;
    };
    const toks: number[] = [];
    for (const [p, id] of tokOf) {
      sym(p);
      toks.push(id);
    }
    let bits = 4;
    while (1 << bits < merges.length * 2) bits++;
    const cap = 1 << bits;
    m.pairShift = 32 - bits;
    m.pairA = new Int32Array(cap).fill(EMPTY);
    m.pairB = new Int32Array(cap);
    m.pairRank = new Int32Array(cap);
    m.pairOut = new Int32Array(cap);
    for (let r = 0; r < merges.length; r++) {
      const x = merges[r];
      // The library's parsing: an array is taken as is, a string is split at its first spaces.
      const parts = Array.isArray(x) ? x : x.split(' ', 2);
      if (parts.length !== 2) continue;
      const a = sym(parts[0]);
      const b = sym(parts[1]);
      let h = m.hash(a, b);
      while (m.pairA[h] !== EMPTY && (m.pairA[h] !== a || m.pairB[h] !== b)) h = (h + 1) & (cap - 1);
      m.pairA[h] = a;
      m.pairB[h] = b;
      m.pairRank[h] = r; // a duplicate line overrides, as in the library's Map
      m.pairOut[h] = -1; // the merged symbol, looked up on first use (it saves a third of the load)
    }
    m.symTok = new Int32Array(m.symStr.length);
    m.symTok.fill(-1).set(toks); // the tokens are the first symbols
    return m;
  }

  private hash(a: number, b: number): number {
    return (Math.imul(a, 0x9e3779b1) ^ Math.imul(b + 0x7f4a7c15, 0x85ebca77)) >>> this.pairShift;
  }

  /** Slot of the pair (a, b) in the merge hash, or -1. */
  private find(a: number, b: number): number {
    const mask = this.pairA.length - 1;
    let h = this.hash(a, b);
    for (;;) {
      const x = this.pairA[h];
      if (x === EMPTY) return -1;
      if (x === a && this.pairB[h] === b) return h;
      h = (h + 1) & mask;
    }
  }

  /** The symbol of a+b, which merges: a piece, a merge part, or a new symbol that merges no further. */
  private merged(a: number, b: number): number {
    const slot = this.find(a, b);
    let out = this.pairOut[slot];
    if (out < 0) {
      const s = this.symStr[a] + this.symStr[b];
      out = this.symOf.get(s) ?? -1;
      if (out < 0) {
        out = this.symStr.length;
        this.symOf.set(s, out);
        this.symStr.push(s);
      }
      this.pairOut[slot] = out;
    }
    return out;
  }

  /** Room for a word of n code units: its nodes, and a heap of at most 2n pairs. */
  private grow(n: number): void {
    if (this.sym.length >= n) return;
    let c = this.sym.length;
    while (c < n) c *= 2;
    this.sym = new Int32Array(c);
    this.next = new Int32Array(c);
    this.prev = new Int32Array(c);
    this.hKey = new Float64Array(2 * c);
    this.hRight = new Int32Array(2 * c);
    this.hA = new Int32Array(2 * c);
    this.hB = new Int32Array(2 * c);
  }

  /** Pushes the pair starting at node `i` (with its next node) when it is a merge. */
  private pushPair(i: number): void {
    const j = this.next[i];
    const a = this.sym[i];
    const b = this.sym[j];
    if (a < 0 || b < 0) return;
    const slot = this.find(a, b);
    if (slot < 0) return;
    const key = this.pairRank[slot] * POS_SCALE + i;
    // Sift up.
    let k = this.hSize++;
    const hk = this.hKey;
    while (k > 0) {
      const p = (k - 1) >> 1;
      if (hk[p] <= key) break;
      hk[k] = hk[p];
      this.hRight[k] = this.hRight[p];
      this.hA[k] = this.hA[p];
      this.hB[k] = this.hB[p];
      k = p;
    }
    hk[k] = key;
    this.hRight[k] = j;
    this.hA[k] = a;
    this.hB[k] = b;
  }

  /** Removes the heap's top; the caller read it first. */
  private popTop(): void {
    const n = --this.hSize;
    if (n === 0) return;
    const hk = this.hKey;
    const key = hk[n];
    const r = this.hRight[n];
    const a = this.hA[n];
    const b = this.hB[n];
    let k = 0;
    for (;;) {
      let c = 2 * k + 1;
      if (c >= n) break;
      if (c + 1 < n && hk[c + 1] < hk[c]) c++;
      if (hk[c] >= key) break;
      hk[k] = hk[c];
      this.hRight[k] = this.hRight[c];
      this.hA[k] = this.hA[c];
      this.hB[k] = this.hB[c];
      k = c;
    }
    hk[k] = key;
    this.hRight[k] = r;
    this.hA[k] = a;
    this.hB[k] = b;
  }

  /** A piece not in the vocab: its UTF-8 byte pieces, or the unknown id (none without one). */
  private byteFallback(piece: string, out: number[]): void {
    const bytes = this.encoder.encode(piece);
    for (const b of bytes)
      if (this.byteTok[b] < 0) {
        if (this.unkId >= 0) out.push(this.unkId);
        return;
      }
    for (const b of bytes) out.push(this.byteTok[b]);
  }

  /** Appends the ids of one normalized word (no added token in it) to `out`. */
  encodeWord(word: string, out: number[]): void {
    if (word.length === 0) return;
    if (this.ignoreMerges) {
      const id = this.tokOf.get(word);
      if (id !== undefined) {
        out.push(id);
        return;
      }
    }
    this.grow(word.length);
    const sym = this.sym;
    const next = this.next;
    const prev = this.prev;
    const chars = this.chars;
    let n = 0;
    for (const ch of word) {
      chars[n] = ch;
      sym[n] = this.symOf.get(ch) ?? -1;
      prev[n] = n - 1;
      next[n] = n + 1;
      n++;
    }
    next[n - 1] = -1;
    this.hSize = 0;
    for (let i = 0; i + 1 < n; i++) this.pushPair(i);
    while (this.hSize > 0) {
      const key = this.hKey[0];
      const j = this.hRight[0];
      const a = this.hA[0];
      const b = this.hB[0];
      this.popTop();
      const i = key % POS_SCALE;
      if (sym[i] !== a || next[i] !== j || sym[j] !== b) continue; // stale
      sym[i] = this.merged(a, b);
      const k = next[j];
      next[i] = k;
      sym[j] = DEAD;
      if (k >= 0) prev[k] = i;
      if (prev[i] >= 0) this.pushPair(prev[i]);
      if (k >= 0) this.pushPair(i);
    }
    const start = out.length;
    for (let i = 0; i >= 0; i = next[i]) {
      const s = sym[i];
      const id = s >= 0 && s < this.symTok.length ? this.symTok[s] : -1;
      if (id >= 0) out.push(id);
      else this.byteFallback(s >= 0 ? this.symStr[s] : chars[i], out);
    }
    if (this.fuseUnk && this.unkId >= 0) {
      let w = start;
      for (let r = start; r < out.length; r++)
        if (!(out[r] === this.unkId && w > start && out[w - 1] === this.unkId)) out[w++] = out[r];
      out.length = w;
    }
  }
}
