/**
 * Fine-tuning data: JSONL files read, validated and tokenized in full before any training, and
 * turned into batches by padding or by packing several examples into a row.
 *   const data = loadJsonl('train.jsonl', tokenizer, {seqLen: 512});
 *   const plan = planBatches(data.examples.map((ex) => ex.ids.length), order, {batchSize: 4, seqLen: 512, pack: true});
 *   const batch = buildBatch(data.examples, plan[0], tokenizer.padId, true);   // inputIds, labels, positionIds
 *
 * One example per line, in one of three shapes:
 *  {"text": "..."}                                  every token is trained
 *  {"prompt": "...", "completion": "..."}           only the completion (and EOS) is trained
 *  {"messages": [{"role": "user", "content": "..."}, {"role": "model", ...}]}   only model turns trained
 * (messages go through the Gemma chat template).
 * Labels are the ids themselves (the loss shifts them) with -100 where nothing is trained.
 */
import * as fs from 'fs';
import {IGNORE_INDEX} from '../../ops/loss';
import {ChatMessage, encodeChatForTraining, GemmaTokenizer} from '../tokenizer';

/** A problem with a data file; the message starts with `file:line:` when a line is at fault. */
export class DataError extends Error {
  constructor(
    message: string,
    readonly file?: string,
    readonly line?: number,
  ) {
    super(message.replace(/\s*[\r\n]+\s*/g, ' '));
    this.name = 'DataError';
  }
}

export type DataRecord =
  | {kind: 'text'; text: string; line: number}
  | {kind: 'completion'; prompt: string; completion: string; line: number}
  | {kind: 'chat'; messages: ChatMessage[]; line: number};

export interface Example {
  ids: number[];
  /** Same length as ids; IGNORE_INDEX where the token is not a target. */
  labels: number[];
  /** `file:line` it came from. */
  where: string;
}

export interface Dataset {
  file: string;
  examples: Example[];
  /** Non-blank lines read. */
  records: number;
  /** Prompt/completion or chat examples cut to seqLen. */
  truncated: number;
  /** Examples left with no target after truncation. */
  dropped: number;
  /** Target tokens over all examples. */
  targets: number;
  /** Lines of invalid UTF-8 left out (DataOptions.skipBadLines); 0 otherwise. */
  skipped: number;
}

export interface DataOptions {
  /** Longest row; a longer text is split into rows, a longer prompt/completion or chat cut. */
  seqLen: number;
  /** Append EOS to text and completions, so that the model learns where they end. Default true. */
  addEos?: boolean;
  /** The model's vocabulary: a token id at or above it is an error naming the line. */
  vocabSize?: number;
  /** Leave out lines of invalid UTF-8 (counted in Dataset.skipped) instead of failing on the first. */
  skipBadLines?: boolean;
}

const ROLES = new Set(['user', 'model', 'system']);

/**
 * Parses and validates every line; the first bad line throws `file:line: why`. With skipBadLines,
 * lines of invalid UTF-8 are left out instead, their line numbers pushed to `skipped`.
 */
export function parseJsonl(file: string, opts: {skipBadLines?: boolean; skipped?: number[]} = {}): DataRecord[] {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new DataError(
      code === 'ENOENT' ? `${file}: no such file` : `${file}: cannot read (${code ?? String(e)})`,
      file,
    );
  }
  let text = decodeUtf8(bytes, file, opts.skipBadLines ? (opts.skipped ?? []) : null);
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const out: DataRecord[] = [];
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, i) => {
    if (raw.trim() === '') return;
    out.push(parseLine(raw, file, i + 1));
  });
  if (out.length === 0) throw new DataError(`${file}: no examples (the file is empty)`, file);
  return out;
}

/**
 * The text of a UTF-8 file; invalid UTF-8 (which a lenient read would turn into U+FFFD) fails
 * naming its line, or with `skipped` given, such lines become empty (numbers kept) and are listed there.
 */
function decodeUtf8(bytes: Buffer, file: string, skipped: number[] | null): string {
  try {
    return new TextDecoder('utf-8', {fatal: true, ignoreBOM: true}).decode(bytes);
  } catch {
    const strict = new TextDecoder('utf-8', {fatal: true, ignoreBOM: true});
    const lines: string[] = [];
    for (let start = 0, line = 1; start <= bytes.length; line++) {
      const nl = bytes.indexOf(0x0a, start);
      const end = nl < 0 ? bytes.length : nl;
      try {
        lines.push(strict.decode(bytes.subarray(start, end)));
      } catch {
        if (skipped == null)
          throw new DataError(
            `${file}:${line}: not valid UTF-8 (the file must be UTF-8 text; --skip-bad-lines leaves such lines out)`,
            file,
            line,
          );
        skipped.push(line);
        lines.push('');
      }
      start = end + 1;
    }
    if (skipped == null) throw new DataError(`${file}: not valid UTF-8 (the file must be UTF-8 text)`, file);
    return lines.join('\n');
  }
}

function parseLine(raw: string, file: string, line: number): DataRecord {
  const fail = (why: string): never => {
    throw new DataError(`${file}:${line}: ${why}`, file, line);
  };
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch (e) {
    return fail(`not valid JSON (${(e as Error).message})`);
  }
  if (v == null || typeof v !== 'object' || Array.isArray(v)) return fail('expected a JSON object');
  const o = v as Record<string, unknown>;
  const shapes = [
    'text' in o && 'text',
    ('prompt' in o || 'completion' in o) && 'prompt/completion',
    'messages' in o && 'messages',
  ].filter(Boolean);
  if (shapes.length === 0)
    return fail('expected {"text": ...}, {"prompt": ..., "completion": ...} or {"messages": [...]}');
  if (shapes.length > 1) return fail(`mixes ${shapes.join(' and ')}; use one shape per line`);
  const str = (key: string, allowEmpty = false): string => {
    const s = o[key];
    if (typeof s !== 'string')
      return fail(`"${key}" must be a string, got ${s === undefined ? 'nothing' : JSON.stringify(s)?.slice(0, 40)}`);
    if (!allowEmpty && s.length === 0) return fail(`"${key}" is empty`);
    return s;
  };
  if (shapes[0] === 'text') return {kind: 'text', text: str('text'), line};
  if (shapes[0] === 'prompt/completion')
    return {kind: 'completion', prompt: str('prompt', true), completion: str('completion'), line};
  const msgs = o.messages;
  if (!Array.isArray(msgs) || msgs.length === 0) return fail('"messages" must be a non-empty array');
  const messages = msgs.map((m, k): ChatMessage => {
    if (m == null || typeof m !== 'object' || Array.isArray(m)) return fail(`messages[${k}] must be an object`);
    const {role, content} = m as Record<string, unknown>;
    if (typeof role !== 'string' || !ROLES.has(role))
      return fail(`messages[${k}].role must be "user" or "model" (or a leading "system"), got ${JSON.stringify(role)}`);
    if (typeof content !== 'string') return fail(`messages[${k}].content must be a string`);
    return {role: role as ChatMessage['role'], content};
  });
  if (!messages.some((m) => m.role === 'model')) return fail('no "model" message: nothing to train on');
  return {kind: 'chat', messages, line};
}

/** Turns records into examples (ids + labels), checking each against the tokenizer and model. */
export function tokenizeRecords(records: DataRecord[], tok: GemmaTokenizer, file: string, opts: DataOptions): Dataset {
  const {seqLen} = opts;
  if (!Number.isInteger(seqLen) || seqLen < 2) throw new DataError(`seqLen must be an integer >= 2, got ${seqLen}`);
  const addEos = opts.addEos ?? true;
  const enc = (s: string) => tok.encode(s, {addBos: false});
  const examples: Example[] = [];
  let truncated = 0,
    dropped = 0;
  for (const r of records) {
    const where = `${file}:${r.line}`;
    let ids: number[], labels: number[];
    try {
      if (r.kind === 'text') {
        ids = [tok.bosId, ...enc(r.text), ...(addEos ? [tok.eosId] : [])];
        labels = ids.slice();
      } else if (r.kind === 'completion') {
        const p = [tok.bosId, ...enc(r.prompt)];
        const c = [...enc(r.completion), ...(addEos ? [tok.eosId] : [])];
        ids = [...p, ...c];
        labels = [...p.map(() => IGNORE_INDEX), ...c];
      } else {
        const chat = encodeChatForTraining(tok, r.messages);
        ids = chat.ids;
        labels = chat.ids.map((id, i) => (chat.trainMask[i] ? id : IGNORE_INDEX));
      }
    } catch (e) {
      throw new DataError(`${where}: ${(e as Error).message}`, file, r.line);
    }
    if (opts.vocabSize != null) {
      const bad = ids.find((id) => id >= opts.vocabSize!);
      if (bad != null)
        throw new DataError(
          `${where}: token id ${bad} is outside the model's vocabulary of ${opts.vocabSize} (tokenizer and model do not match?)`,
          file,
          r.line,
        );
    }
    if (ids.length <= seqLen) {
      if (countTargets([labels]) > 0) examples.push({ids, labels, where});
      else dropped++;
    } else if (r.kind === 'text') {
      // Long text is cut into consecutive rows, like the usual "group texts" preprocessing.
      for (let s = 0; s + 1 < ids.length; s += seqLen) {
        examples.push({ids: ids.slice(s, s + seqLen), labels: labels.slice(s, s + seqLen), where});
      }
    } else {
      truncated++;
      const ex = {ids: ids.slice(0, seqLen), labels: labels.slice(0, seqLen), where};
      if (countTargets([ex.labels]) > 0) examples.push(ex);
      else dropped++;
    }
  }
  if (examples.length === 0)
    throw new DataError(`${file}: no example has a token to train on (seqLen ${seqLen} too short?)`, file);
  return {
    file,
    examples,
    records: records.length,
    truncated,
    dropped,
    targets: examples.reduce((s, e) => s + countTargets([e.labels]), 0),
    skipped: 0,
  };
}

/** parseJsonl + tokenizeRecords: the whole file is checked before anything is returned. */
export function loadJsonl(file: string, tok: GemmaTokenizer, opts: DataOptions): Dataset {
  const skipped: number[] = [];
  const data = tokenizeRecords(parseJsonl(file, {skipBadLines: opts.skipBadLines, skipped}), tok, file, opts);
  return {...data, skipped: skipped.length};
}

export interface Batch {
  /** [b, t] token ids, padded with the tokenizer's pad id. */
  inputIds: number[][];
  /** [b, t]; IGNORE_INDEX on padding and untrained tokens. */
  labels: number[][];
  /** [b, t] 1 = token, 0 = padding; absent when no row is padded. */
  attentionMask?: number[][];
  /** [b, t] restarting at 0 for each packed example; absent without packing. */
  positionIds?: number[][];
  /** Targets the loss counts (labels[:, 1:] that are not ignored). */
  targets: number;
}

/** Targets causalLMLoss counts: every label but each row's first (nothing predicts it). */
export function countTargets(labels: number[][]): number {
  let n = 0;
  for (const row of labels) for (let i = 1; i < row.length; i++) if (row[i] !== IGNORE_INDEX) n++;
  return n;
}

export interface BatchOptions {
  batchSize: number;
  seqLen: number;
  /** Pack several examples into one row of up to seqLen tokens. */
  pack: boolean;
}

/**
 * Groups examples (taken in `order`) into batches of rows of example indices: one example a row,
 * or, packing, as many consecutive examples as fit in seqLen.
 */
export function planBatches(lengths: number[], order: number[], opts: BatchOptions): number[][][] {
  const rows: number[][] = [];
  if (opts.pack) {
    let row: number[] = [],
      used = 0;
    for (const i of order) {
      if (row.length > 0 && used + lengths[i] > opts.seqLen) {
        rows.push(row);
        row = [];
        used = 0;
      }
      row.push(i);
      used += lengths[i];
    }
    if (row.length > 0) rows.push(row);
  } else {
    for (const i of order) rows.push([i]);
  }
  const batches: number[][][] = [];
  for (let s = 0; s < rows.length; s += opts.batchSize) batches.push(rows.slice(s, s + opts.batchSize));
  return batches;
}

/** Materialises one planned batch, padded on the right to its longest row. */
export function buildBatch(examples: Example[], rows: number[][], padId: number, pack: boolean): Batch {
  const pad = Math.max(padId, 0);
  const ids: number[][] = [],
    labels: number[][] = [],
    pos: number[][] = [];
  for (const row of rows) {
    const r = {ids: [] as number[], labels: [] as number[], pos: [] as number[]};
    for (const i of row) {
      const e = examples[i];
      r.ids.push(...e.ids);
      // In a packed row the first token of an example is predicted by the previous example's
      // last one: not a target, or examples would see each other through the loss.
      r.labels.push(pack ? IGNORE_INDEX : e.labels[0], ...e.labels.slice(1));
      for (let p = 0; p < e.ids.length; p++) r.pos.push(p);
    }
    ids.push(r.ids);
    labels.push(r.labels);
    pos.push(r.pos);
  }
  const width = Math.max(...ids.map((r) => r.length));
  const padded = ids.some((r) => r.length < width);
  const mask = ids.map((r) => r.map(() => 1));
  const fill = (a: number[][], v: number) =>
    a.forEach((r) => {
      while (r.length < width) r.push(v);
    });
  fill(ids, pad);
  fill(labels, IGNORE_INDEX);
  fill(pos, 0);
  fill(mask, 0);
  const batch: Batch = {inputIds: ids, labels, targets: countTargets(labels)};
  if (padded) batch.attentionMask = mask;
  if (pack) batch.positionIds = pos;
  return batch;
}
