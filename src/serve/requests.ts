/**
 * Reading the JSON bodies of POST /v1/chat/completions and /v1/completions into what the
 * scheduler runs: prompt ids, sampling, limits. Anything wrong is an ApiError 400 naming the field.
 *   const spec = parseChatRequest({messages: [{role: 'user', content: 'Hi'}], max_tokens: 8}, tok, DEFAULT_REQUEST_LIMITS);
 *   const spec2 = parseCompletionRequest({prompt: 'Once upon a time', temperature: 0}, tok, DEFAULT_REQUEST_LIMITS);
 *
 * Defaults follow OpenAI's: temperature 1, top_p 1, n 1; max_tokens 16 for completions and the
 * server's cap for chat. Fields this server does not implement are refused when they would change
 * the result (frequency_penalty 0.5, tools, echo), and ignored otherwise.
 */
import type {ChatMessage, GemmaTokenizer} from '../tokenizer';
import {encodeChat} from '../tokenizer';
import {ApiError} from './api_error';
import type {JobSpec} from './scheduler';

export interface RequestLimits {
  /** Longest prompt, in tokens. */
  maxPromptTokens: number;
  /** Largest max_tokens, and chat's default. */
  maxTokens: number;
  /** Largest n (choices of one request); the scheduler runs them side by side, so at most its slots. */
  maxN: number;
}

export const DEFAULT_REQUEST_LIMITS: RequestLimits = {maxPromptTokens: 4096, maxTokens: 1024, maxN: 8};

/** A parsed request: what the scheduler runs (JobSpec; a random seed when the request has none), and how to answer. */
export interface CompletionSpec extends JobSpec {
  kind: 'chat' | 'completion';
  /** The request's `model` field (echoed back), or null. */
  model: string | null;
  stream: boolean;
  /** stream_options.include_usage: a last chunk with the usage. */
  includeUsage: boolean;
}

const bad = (message: string, param: string, code = 'invalid_value'): never => {
  throw new ApiError(400, message, {param, code});
};

type Body = Record<string, unknown>;

function asObject(body: unknown): Body {
  if (body == null || typeof body !== 'object' || Array.isArray(body))
    throw new ApiError(400, 'the request body must be a JSON object', {code: 'invalid_request'});
  return body as Body;
}

/** An optional number field: undefined when absent or null; else checked. */
function num(b: Body, key: string, ok: (x: number) => boolean, rule: string): number | undefined {
  const v = b[key];
  if (v == null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v))
    bad(`${key} must be ${rule}, got ${JSON.stringify(v)}`, key);
  return v as number;
}

const isInt = (x: number) => Number.isSafeInteger(x);

function bool(b: Body, key: string): boolean | undefined {
  const v = b[key];
  if (v == null) return undefined;
  if (typeof v !== 'boolean') bad(`${key} must be true or false, got ${JSON.stringify(v)}`, key);
  return v as boolean;
}

/** Refuses fields whose non-default value would change the output, which this server does not implement. */
function refuseUnsupported(b: Body): void {
  for (const key of ['frequency_penalty', 'presence_penalty']) {
    if (b[key] != null && b[key] !== 0) bad(`${key} is not supported by this server (only 0)`, key, 'unsupported');
  }
  for (const key of ['logit_bias', 'tools', 'functions', 'response_format', 'suffix']) {
    const v = b[key];
    const empty = v == null || (Array.isArray(v) && v.length === 0) || (key === 'response_format' && isTextFormat(v));
    if (!empty) bad(`${key} is not supported by this server`, key, 'unsupported');
  }
  if (b.echo === true) bad('echo is not supported by this server', 'echo', 'unsupported');
  if (b.best_of != null && b.best_of !== 1)
    bad('best_of is not supported by this server (only 1)', 'best_of', 'unsupported');
}

function isTextFormat(v: unknown): boolean {
  return v != null && typeof v === 'object' && (v as Body).type === 'text';
}

function stopField(b: Body): string[] {
  const v = b.stop;
  if (v == null) return [];
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list) || !list.every((s) => typeof s === 'string'))
    bad('stop must be a string or an array of strings', 'stop');
  if ((list as string[]).length > 4) bad('stop takes at most 4 strings', 'stop');
  if ((list as string[]).some((s) => s.length === 0)) bad('stop strings must not be empty', 'stop');
  return list as string[];
}

/** The fields both endpoints share. */
function common(b: Body, limits: RequestLimits, defaultMax: number) {
  refuseUnsupported(b);
  const model = b.model == null ? null : typeof b.model === 'string' ? b.model : bad('model must be a string', 'model');
  const maxKey = b.max_completion_tokens != null ? 'max_completion_tokens' : 'max_tokens';
  const maxTokens =
    num(b, maxKey, (x) => isInt(x) && x >= 1 && x <= limits.maxTokens, `an integer in [1, ${limits.maxTokens}]`) ??
    Math.min(defaultMax, limits.maxTokens);
  const temperature = num(b, 'temperature', (x) => x >= 0 && x <= 2, 'in [0, 2]') ?? 1;
  const topP = num(b, 'top_p', (x) => x > 0 && x <= 1, 'in (0, 1]');
  const topK = num(b, 'top_k', (x) => isInt(x) && (x >= 1 || x === -1), 'an integer >= 1 (or -1: off)');
  const n = num(b, 'n', (x) => isInt(x) && x >= 1 && x <= limits.maxN, `an integer in [1, ${limits.maxN}]`) ?? 1;
  const seed = num(b, 'seed', (x) => isInt(x), 'an integer') ?? Math.floor(Math.random() * 2 ** 31);
  const stream = bool(b, 'stream') ?? false;
  const so = b.stream_options;
  if (so != null && (typeof so !== 'object' || Array.isArray(so)))
    bad('stream_options must be an object', 'stream_options');
  const includeUsage = stream && (so as Body | undefined)?.include_usage === true;
  return {
    model,
    maxTokens,
    temperature,
    topP: topP === 1 ? undefined : topP,
    topK: topK === -1 ? undefined : topK,
    n,
    seed,
    stop: stopField(b),
    stream,
    includeUsage,
  };
}

function checkPrompt(ids: number[], limits: RequestLimits, param: string): number[] {
  if (ids.length === 0) bad('the prompt is empty', param);
  if (ids.length > limits.maxPromptTokens) {
    bad(
      `the prompt has ${ids.length} tokens, more than this server's limit of ${limits.maxPromptTokens}`,
      param,
      'context_length_exceeded',
    );
  }
  return ids;
}

/** A message's text: a string, or text parts ([{type: 'text', text}]); an assistant may have null. */
function messageText(m: Body, i: number): string {
  const c = m.content;
  if (typeof c === 'string') return c;
  if (c == null && (m.role === 'assistant' || m.role === 'model')) return '';
  if (Array.isArray(c)) {
    return c
      .map((p, j) => {
        const part = p as Body;
        if (part?.type !== 'text' || typeof part.text !== 'string')
          bad(`messages[${i}].content[${j}]: only text parts are supported`, `messages[${i}].content`);
        return part.text as string;
      })
      .join('');
  }
  return bad(`messages[${i}].content must be a string or an array of text parts`, `messages[${i}].content`);
}

const ROLES: Record<string, ChatMessage['role']> = {
  system: 'system',
  developer: 'system',
  user: 'user',
  assistant: 'assistant',
  model: 'model',
};

export function parseChatRequest(body: unknown, tok: GemmaTokenizer, limits: RequestLimits): CompletionSpec {
  const b = asObject(body);
  const msgs = b.messages;
  if (!Array.isArray(msgs) || msgs.length === 0) bad('messages must be a non-empty array', 'messages');
  const messages = (msgs as unknown[]).map((raw, i): ChatMessage => {
    if (raw == null || typeof raw !== 'object' || Array.isArray(raw))
      bad(`messages[${i}] must be an object`, 'messages');
    const m = raw as Body;
    const role = typeof m.role === 'string' ? ROLES[m.role] : undefined;
    if (role == null) bad(`messages[${i}].role: unknown role ${JSON.stringify(m.role)}`, `messages[${i}].role`);
    return {role: role!, content: messageText(m, i)};
  });
  const c = common(b, limits, limits.maxTokens);
  const lp = bool(b, 'logprobs') ?? false;
  const top = num(b, 'top_logprobs', (x) => isInt(x) && x >= 0 && x <= 20, 'an integer in [0, 20]');
  if (top != null && !lp) bad('top_logprobs needs logprobs: true', 'top_logprobs');
  let ids: number[];
  try {
    ids = encodeChat(tok, messages, {addGenerationPrompt: true});
  } catch (e) {
    return bad((e as Error).message.split('\n')[0], 'messages');
  }
  return {kind: 'chat', ...c, promptIds: checkPrompt(ids, limits, 'messages'), logprobs: lp ? (top ?? 0) : null};
}

export function parseCompletionRequest(body: unknown, tok: GemmaTokenizer, limits: RequestLimits): CompletionSpec {
  const b = asObject(body);
  let p = b.prompt;
  // One prompt per request: a string, a list of token ids, or a list holding one of those.
  if (Array.isArray(p) && p.length === 1 && (typeof p[0] === 'string' || Array.isArray(p[0]))) p = p[0];
  let ids: number[];
  if (typeof p === 'string') {
    ids = tok.encode(p);
  } else if (Array.isArray(p) && p.length > 0 && p.every((x) => typeof x === 'number')) {
    const V = tok.vocabSize;
    if (!p.every((x) => Number.isInteger(x) && x >= 0 && x < V))
      bad(`prompt token ids must be integers in [0, ${V})`, 'prompt');
    ids = p as number[];
  } else if (Array.isArray(p) && p.length > 1) {
    return bad('one prompt per request: send several requests (they are batched together)', 'prompt');
  } else {
    return bad('prompt must be a string or an array of token ids', 'prompt');
  }
  const c = common(b, limits, 16);
  const logprobs = num(b, 'logprobs', (x) => isInt(x) && x >= 0 && x <= 5, 'an integer in [0, 5]');
  return {kind: 'completion', ...c, promptIds: checkPrompt(ids, limits, 'prompt'), logprobs: logprobs ?? null};
}
