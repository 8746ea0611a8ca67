/**
 * Gemma tokenizer: a checkpoint's tokenizer.json (through @huggingface/tokenizers,
 * src/tokenizer/hf_json.ts) or its tokenizer.model (through sentencepiece-js), plus the Gemma chat template.
 *   const tok = await GemmaTokenizer.load('ckpt/');   // tokenizer.json if there, else tokenizer.model
 *   const hubTok = await GemmaTokenizer.load('owner/name', {revision: 'main'});   // from the Hugging Face Hub (cached)
 *   const ids = encodeChat(tok, [{ role: 'user', content: 'Hi' }], { addGenerationPrompt: true });
 *   const text = tok.applyChatTemplate([{role: 'user', content: 'Hi'}], {addGenerationPrompt: true});  // the checkpoint's template
 *
 * A directory prefers tokenizer.json, as transformers does, and reads tokenizer_config.json beside
 * either file (its chat_template, add_bos_token). Decoding is this module's own for both formats
 * (one code path for decode and streaming).
 */
import * as fs from 'fs';
import * as path from 'path';
import {type HubOptions, isHubId, resolveSource} from '../converters/hub';
import {parseChatTemplate, renderChatTemplate} from './tokenizer/chat_template';
import {Codec, hfTokenizer, PieceInfo, TokenizerConfigJson} from './tokenizer/hf_json';
import {
  decodeModelProto,
  ModelProto,
  NORMALIZER_SPEC_DEFAULTS,
  NormalizerSpec,
  PieceType,
  TRAINER_SPEC_DEFAULTS,
  TrainerSpec,
} from './tokenizer/model_proto';

/** The slice of sentencepiece-js we use (the package ships no type declarations). */
interface SpProcessor extends Codec {
  load(path: string): Promise<void>;
}
const spjs = require('sentencepiece-js') as {SentencePieceProcessor: new () => SpProcessor};

type ModelInfo = PieceInfo;

export const TOKENIZER_JSON = 'tokenizer.json';
export const TOKENIZER_MODEL = 'tokenizer.model';
export const TOKENIZER_CONFIG = 'tokenizer_config.json';

/**
 * The pieces and the few spec fields we need, read from the .model bytes ourselves because sentencepiece-js
 * exposes neither IdToPiece, the piece types nor the vocabulary size.
 */
function modelInfo(bytes: Uint8Array): ModelInfo {
  let model: ModelProto;
  try {
    model = decodeModelProto(bytes);
    if (model.pieces.length === 0) throw new Error('no pieces');
  } catch (e) {
    throw new Error(`tokenizer: not a sentencepiece model (${(e as Error).message})`);
  }
  const ts: TrainerSpec = model.trainer_spec ?? {};
  const ns: NormalizerSpec = model.normalizer_spec ?? {};
  return {
    pieces: model.pieces.map((p) => p.piece),
    types: model.pieces.map((p) => p.type),
    unkId: ts.unk_id ?? TRAINER_SPEC_DEFAULTS.unk_id,
    bosId: ts.bos_id ?? TRAINER_SPEC_DEFAULTS.bos_id,
    eosId: ts.eos_id ?? TRAINER_SPEC_DEFAULTS.eos_id,
    padId: ts.pad_id ?? TRAINER_SPEC_DEFAULTS.pad_id,
    addDummyPrefix: ns.add_dummy_prefix ?? NORMALIZER_SPEC_DEFAULTS.add_dummy_prefix,
    escapeWhitespaces: ns.escape_whitespaces ?? NORMALIZER_SPEC_DEFAULTS.escape_whitespaces,
    byteRuns: 'sentencepiece',
  };
}

const REPLACEMENT = '\uFFFD';
const isTrail = (b: number): boolean => (b & 0xc0) === 0x80;

/** Bytes a UTF-8 sequence starting with `lead` needs, or 0 if `lead` can never start a multi-byte one. */
function utf8Len(lead: number): number {
  if ((lead & 0xe0) === 0xc0) return 2;
  if ((lead & 0xf0) === 0xe0) return 3;
  if ((lead & 0xf8) === 0xf0) return 4;
  return 0;
}

/**
 * Turns the leading bytes of `bytes` into text the way sentencepiece does (each byte that does not start
 * a valid character becomes one U+FFFD), returning how many bytes were consumed. With final=false it stops
 * at a trailing sequence that later bytes could still complete, so streamed output matches a full decode.
 */
function drainBytes(bytes: number[], final: boolean, mode: PieceInfo['byteRuns']): {text: string; used: number} {
  if (mode === 'hf') {
    // The whole run at once, when it has ended: valid UTF-8 or one U+FFFD per byte.
    if (!final) return {text: '', used: 0};
    const whole = drainBytes(bytes, true, 'sentencepiece').text;
    return {text: whole.includes(REPLACEMENT) ? REPLACEMENT.repeat(bytes.length) : whole, used: bytes.length};
  }
  let text = '',
    i = 0;
  while (i < bytes.length) {
    const b0 = bytes[i];
    if (b0 < 0x80) {
      text += String.fromCharCode(b0);
      i++;
      continue;
    }
    const n = utf8Len(b0);
    if (n === 0) {
      text += REPLACEMENT;
      i++;
      continue;
    }
    const avail = Math.min(n, bytes.length - i);
    let trailsOk = true;
    for (let k = 1; k < avail; k++)
      if (!isTrail(bytes[i + k])) {
        trailsOk = false;
        break;
      }
    if (avail < n && trailsOk && !final) break; // may still complete: wait for more bytes
    if (avail === n && trailsOk) {
      let cp = b0 & (0x7f >> n);
      for (let k = 1; k < n; k++) cp = (cp << 6) | (bytes[i + k] & 0x3f);
      const minCp = n === 2 ? 0x80 : n === 3 ? 0x800 : 0x10000;
      // Same validity rule as sentencepiece's DecodeUTF8: no overlongs, no surrogates, <= U+10FFFF.
      if (cp >= minCp && (cp < 0xd800 || (cp >= 0xe000 && cp <= 0x10ffff))) {
        text += String.fromCodePoint(cp);
        i += n;
        continue;
      }
    }
    text += REPLACEMENT;
    i++;
  }
  return {text, used: i};
}

export interface StreamDecoder {
  /** Feeds one id; returns the text that became printable (may be '' while a multi-byte character is incomplete). */
  push(id: number): string;
  /** Ends the stream; returns whatever was held back (an incomplete byte sequence renders as U+FFFD). */
  flush(): string;
}

export class GemmaTokenizer {
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;
  readonly unkId: number;
  /** -1 when the model has no such piece (chat functions then refuse to run). */
  readonly startOfTurnId: number;
  readonly endOfTurnId: number;
  readonly vocabSize: number;

  private readonly pieceIds = new Map<string, number>();
  /** Byte value of each <0xXX> piece, -1 for other pieces. */
  private readonly byteValue: Int16Array;
  private readonly special: Uint8Array;

  /** tokenizer_config.json's chat_template (the default one when it has several), or null. */
  readonly chatTemplate: string | null;
  /** tokenizer_config.json as read ({} when there is none). */
  readonly config: TokenizerConfigJson;
  /** Whether encode() puts BOS first by default (tokenizer_config.json's add_bos_token, else true). */
  readonly addBosDefault: boolean;

  private constructor(
    private readonly sp: Codec,
    private readonly info: ModelInfo,
    config: TokenizerConfigJson = {},
  ) {
    this.config = config;
    this.addBosDefault = config.add_bos_token ?? true;
    const ct = config.chat_template;
    this.chatTemplate =
      typeof ct === 'string' ? ct : Array.isArray(ct) ? (ct.find((t) => t.name === 'default')?.template ?? null) : null;
    const n = info.pieces.length;
    this.vocabSize = n;
    this.bosId = info.bosId;
    this.eosId = info.eosId;
    this.padId = info.padId;
    this.unkId = info.unkId;
    info.pieces.forEach((p, i) => {
      if (!this.pieceIds.has(p)) this.pieceIds.set(p, i);
    });
    this.startOfTurnId = this.pieceIds.get('<start_of_turn>') ?? -1;
    this.endOfTurnId = this.pieceIds.get('<end_of_turn>') ?? -1;
    this.byteValue = new Int16Array(n).fill(-1);
    this.special = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      const t = info.types[i];
      if (t === PieceType.BYTE) {
        const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(info.pieces[i]);
        if (m) this.byteValue[i] = parseInt(m[1], 16);
      }
      // Only control/unknown pieces and the turn markers count as special: Gemma's other user-defined
      // pieces (whitespace runs, HTML tags) are ordinary text and must survive skipSpecial.
      if (t === PieceType.CONTROL || t === PieceType.UNKNOWN) this.special[i] = 1;
    }
    if (this.startOfTurnId >= 0) this.special[this.startOfTurnId] = 1;
    if (this.endOfTurnId >= 0) this.special[this.endOfTurnId] = 1;
  }

  /**
   * Loads a tokenizer.json, a tokenizer.model, or a checkpoint directory holding either (tokenizer.json
   * preferred), with the tokenizer_config.json beside it if there is one. A Hub id ('owner/name')
   * that is no local path downloads those files into the huggingface_hub cache (converters/hub.ts).
   */
  static async load(source: string, hub: HubOptions = {}): Promise<GemmaTokenizer> {
    if (isHubId(source)) source = await resolveSource(source, {tokenizer: true}, hub);
    let file = source;
    if (!source.endsWith('.json') && fs.existsSync(source) && fs.statSync(source).isDirectory()) {
      file = [TOKENIZER_JSON, TOKENIZER_MODEL].map((f) => path.join(source, f)).find((f) => fs.existsSync(f)) ?? '';
      if (file === '') throw new Error(`tokenizer: no ${TOKENIZER_JSON} or ${TOKENIZER_MODEL} in ${source}`);
    }
    const config = readTokenizerConfig(path.dirname(file));
    if (file.endsWith('.json')) {
      const {codec, info} = hfTokenizer(readJson(file, 'tokenizer'), config, file);
      return new GemmaTokenizer(codec, info, config);
    }
    return GemmaTokenizer.loadModel(file, config);
  }

  private static async loadModel(modelPath: string, config: TokenizerConfigJson): Promise<GemmaTokenizer> {
    let bytes: Buffer;
    try {
      bytes = fs.readFileSync(modelPath);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw new Error(`tokenizer not found: ${modelPath}`);
      throw new Error(`tokenizer: cannot read ${modelPath} (${code ?? String(e)})`);
    }
    // Parse first: sentencepiece-js ignores Load()'s status, so a bad file would otherwise fail later and obscurely.
    let info: ReturnType<typeof modelInfo>;
    try {
      info = modelInfo(bytes);
    } catch (e) {
      const msg = (e as Error).message;
      throw new Error(msg.includes(modelPath) ? msg : `${modelPath}: ${msg}`);
    }
    const sp = new spjs.SentencePieceProcessor();
    // The emscripten runtime installs process-wide uncaughtException/unhandledRejection handlers on every
    // load; drop them so loading several tokenizers neither leaks listeners nor hijacks the app's error handling.
    // (A browser has no process: there sentencepiece-js reads the bytes src/browser/tokenizer.ts provided.)
    if (typeof process === 'undefined') {
      await sp.load(modelPath);
      return new GemmaTokenizer(sp, info, config);
    }
    const uncaught = process.listeners('uncaughtException');
    const rejection = process.listeners('unhandledRejection');
    try {
      await sp.load(modelPath);
    } finally {
      for (const l of process.listeners('uncaughtException')) {
        if (!uncaught.includes(l)) process.removeListener('uncaughtException', l);
      }
      for (const l of process.listeners('unhandledRejection')) {
        if (!rejection.includes(l)) process.removeListener('unhandledRejection', l);
      }
    }
    return new GemmaTokenizer(sp, info, config);
  }

  encode(text: string, opts: {addBos?: boolean} = {}): number[] {
    const ids = text.length > 0 ? this.sp.encodeIds(text) : [];
    return (opts.addBos ?? this.addBosDefault) ? [this.bosId, ...ids] : ids;
  }

  /**
   * skipSpecial=false (default) renders control/unknown pieces and turn markers as their piece text
   * (e.g. "<start_of_turn>"), like Hugging Face; skipSpecial=true drops them.
   */
  decode(ids: number[], opts: {skipSpecial?: boolean} = {}): string {
    // One code path for both, so streaming can never drift from a full decode.
    const d = this.createStreamDecoder(opts);
    let out = '';
    for (const id of ids) out += d.push(id);
    return out + d.flush();
  }

  /**
   * Renders the conversation with the checkpoint's chat_template (tokenizer_config.json), as
   * transformers' apply_chat_template does: the text, or with tokenize its ids (the text encoded
   * without another BOS: the template writes it). Without a template, the built-in Gemma one.
   * 'model' is passed to templates as 'assistant', the role name they expect.
   */
  applyChatTemplate(messages: ChatMessage[], opts: {addGenerationPrompt?: boolean; tokenize: true}): number[];
  applyChatTemplate(messages: ChatMessage[], opts?: {addGenerationPrompt?: boolean; tokenize?: false}): string;
  applyChatTemplate(
    messages: ChatMessage[],
    opts: {addGenerationPrompt?: boolean; tokenize?: boolean} = {},
  ): string | number[] {
    if (this.chatTemplate == null) {
      return opts.tokenize
        ? encodeChat(this, messages, opts)
        : this.info.pieces[this.bosId] + renderChat(messages, opts);
    }
    const tokens: Record<string, string | undefined> = {};
    for (const k of ['bos_token', 'eos_token', 'pad_token', 'unk_token'] as const) {
      const v = this.config[k];
      tokens[k] = typeof v === 'string' ? v : v?.content;
    }
    const text = renderChatTemplate(
      this.chatTemplate,
      messages.map((m) => ({...m, role: m.role === 'model' ? 'assistant' : m.role})),
      {addGenerationPrompt: opts.addGenerationPrompt, specialTokens: tokens},
    );
    return opts.tokenize ? this.encode(text, {addBos: false}) : text;
  }

  idToPiece(id: number): string {
    this.checkId(id);
    return this.info.pieces[id];
  }

  /** Unknown pieces map to unkId, as in sentencepiece. */
  pieceToId(piece: string): number {
    return this.pieceIds.get(piece) ?? this.unkId;
  }

  /** Whether decode(..., {skipSpecial: true}) drops this id. */
  isSpecial(id: number): boolean {
    this.checkId(id);
    return this.special[id] === 1;
  }

  /**
   * Incremental detokenization: byte-fallback pieces are held until they form whole characters, and each
   * piece's '▁' becomes a space in place, so the concatenated pushes equal decode() of the whole sequence.
   */
  createStreamDecoder(opts: {skipSpecial?: boolean} = {}): StreamDecoder {
    const skip = opts.skipSpecial ?? false;
    let pending: number[] = [];
    let started = false; // whether any text was produced yet (for the add_dummy_prefix space)
    const resolvePending = (final: boolean): string => {
      if (pending.length === 0) return '';
      const {text, used} = drainBytes(pending, final, this.info.byteRuns);
      pending = used === pending.length ? [] : pending.slice(used);
      if (text) started = true;
      return text;
    };
    return {
      push: (id: number): string => {
        this.checkId(id);
        const bv = this.byteValue[id];
        if (bv >= 0) {
          pending.push(bv);
          return resolvePending(false);
        }
        // Any non-byte piece ends a byte run, as in sentencepiece, even a special one that is skipped;
        // HF drops skipped special tokens before its ByteFallback decoder sees the run.
        if (this.special[id] && skip && this.info.byteRuns === 'hf') return '';
        const out = resolvePending(true);
        if (this.special[id]) return skip ? out : out + this.info.pieces[id];
        let piece = this.info.pieces[id];
        if (this.info.escapeWhitespaces) {
          // Models with add_dummy_prefix (not Gemma) encode a space that was never in the text: drop it once.
          if (!started && this.info.addDummyPrefix && piece.startsWith('▁')) piece = piece.slice(1);
          piece = piece.replace(/▁/g, ' ');
        }
        if (piece) started = true;
        return out + piece;
      },
      flush: (): string => resolvePending(true),
    };
  }

  private checkId(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new RangeError(`token id ${id} out of range [0, ${this.vocabSize})`);
    }
  }
}

/** Reads and parses a JSON file, naming it in errors. */
function readJson(file: string, what: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(code === 'ENOENT' ? `${what} not found: ${file}` : `${what}: cannot read ${file} (${code})`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
  }
}

/** dir/tokenizer_config.json, or {} when there is none (a browser has no directory to look in). */
function readTokenizerConfig(dir: string): TokenizerConfigJson {
  const file = path.join(dir, TOKENIZER_CONFIG);
  if (!fs.existsSync(file)) return {};
  const j = readJson(file, 'tokenizer config');
  if (j == null || typeof j !== 'object' || Array.isArray(j)) throw new Error(`${file}: not a JSON object`);
  const c = j as Record<string, unknown>;
  const bad = (key: string, want: string) =>
    new Error(`${file}: ${key} is ${JSON.stringify(c[key])?.slice(0, 40)}, not ${want}`);
  if (c.add_bos_token != null && typeof c.add_bos_token !== 'boolean') throw bad('add_bos_token', 'true or false');
  for (const k of ['bos_token', 'eos_token', 'pad_token', 'unk_token', 'mask_token']) {
    const v = c[k] as {content?: unknown} | null | undefined;
    if (v != null && typeof v !== 'string' && typeof v?.content !== 'string') throw bad(k, 'a string or {content}');
  }
  const ct = c.chat_template;
  const templates =
    typeof ct === 'string'
      ? [ct]
      : Array.isArray(ct) && ct.every((t) => typeof t?.template === 'string')
        ? ct.map((t) => t.template as string)
        : null;
  if (ct != null && templates == null) throw bad('chat_template', 'a string or a list of {name, template}');
  // A template that does not parse is found now, naming the file, not at the first chat.
  for (const t of templates ?? []) {
    try {
      parseChatTemplate(t);
    } catch (e) {
      throw new Error(`${file}: ${(e as Error).message}`);
    }
  }
  return j as TokenizerConfigJson;
}

export interface ChatMessage {
  /** 'assistant' (transformers' name) is the same as 'model'. */
  role: 'user' | 'model' | 'assistant' | 'system';
  content: string;
}

interface Turn {
  role: 'user' | 'model';
  content: string;
}

/** Validates the conversation and folds a leading system message into the first user turn (Gemma has no system role). */
function toTurns(messages: ChatMessage[]): Turn[] {
  const turns: Turn[] = [];
  let system: string | undefined;
  messages.forEach((m, i) => {
    if (m.role === 'system') {
      if (i !== 0) throw new Error(`chat: a system message is only allowed first (message ${i})`);
      system = m.content;
      return;
    }
    const role = m.role === 'assistant' ? 'model' : m.role;
    if (role !== 'user' && role !== 'model') throw new Error(`chat: unknown role '${String(m.role)}' (message ${i})`);
    const expected = turns.length % 2 === 0 ? 'user' : 'model';
    if (role !== expected) {
      throw new Error(`chat: roles must alternate user/model starting with user; message ${i} is '${m.role}'`);
    }
    turns.push({role, content: m.content});
  });
  if (system !== undefined) {
    if (turns.length === 0) throw new Error('chat: a system message must be followed by a user message');
    turns[0] = {role: 'user', content: `${system}\n\n${turns[0].content}`};
  }
  return turns;
}

export function renderChat(messages: ChatMessage[], opts: {addGenerationPrompt?: boolean} = {}): string {
  let out = '';
  for (const t of toTurns(messages)) out += `<start_of_turn>${t.role}\n${t.content}<end_of_turn>\n`;
  if (opts.addGenerationPrompt) out += '<start_of_turn>model\n';
  return out;
}

/**
 * Builds BOS + turns from segments: the turn markers go in as their ids, so user text can never forge
 * them by tokenization accident, and the role header is encoded apart from the content so that the
 * training mask falls exactly on the reply's tokens.
 */
function buildChat(tok: GemmaTokenizer, messages: ChatMessage[], addGenerationPrompt: boolean) {
  if (tok.startOfTurnId < 0 || tok.endOfTurnId < 0) {
    throw new Error('chat: tokenizer has no <start_of_turn>/<end_of_turn> pieces');
  }
  const ids: number[] = [tok.bosId];
  const trainMask: boolean[] = [false];
  const add = (seg: number[], train: boolean): void => {
    for (const id of seg) {
      ids.push(id);
      trainMask.push(train);
    }
  };
  const text = (s: string): number[] => tok.encode(s, {addBos: false});
  for (const t of toTurns(messages)) {
    const isModel = t.role === 'model';
    add([tok.startOfTurnId], false);
    add(text(`${t.role}\n`), false);
    add(text(t.content), isModel);
    add([tok.endOfTurnId], isModel); // the model must learn to close its turn
    add(text('\n'), false);
  }
  if (addGenerationPrompt) {
    add([tok.startOfTurnId], false);
    add(text('model\n'), false);
  }
  return {ids, trainMask};
}

/** The conversation's ids: through the checkpoint's chat template if it has one, else the built-in Gemma one. */
export function encodeChat(
  tok: GemmaTokenizer,
  messages: ChatMessage[],
  opts: {addGenerationPrompt?: boolean} = {},
): number[] {
  if (tok.chatTemplate != null) return tok.applyChatTemplate(messages, {...opts, tokenize: true});
  return buildChat(tok, messages, opts.addGenerationPrompt ?? false).ids;
}

/** ids equal encodeChat(tok, messages) without a generation prompt. */
export function encodeChatForTraining(
  tok: GemmaTokenizer,
  messages: ChatMessage[],
): {ids: number[]; trainMask: boolean[]} {
  return buildChat(tok, messages, false);
}
