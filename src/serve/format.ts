/**
 * OpenAI's response shapes for one request: the whole answer (chat.completion, text_completion) or
 * its server-sent chunks (chat.completion.chunk), built from the scheduler's token events.
 *   import {DEFAULT_REQUEST_LIMITS, parseCompletionRequest} from './requests';
 *   const reply = new Reply(parseCompletionRequest({prompt: 'Hi'}, tok, DEFAULT_REQUEST_LIMITS), tok, 'griffin-small');
 *   const chunks = reply.chunks({choice: 0, tokenId: 651, text: 'The'});   // objects to send as `data: {...}`
 *   const body = reply.final();    // the non-streaming answer, with usage
 */
import {randomUUID} from 'crypto';
import type {GemmaTokenizer} from '../tokenizer';
import type {CompletionSpec} from './requests';
import type {FinishReason, SequenceEvent, TokenLogprob} from './scheduler';

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

interface ChoiceState {
  text: string;
  tokens: number;
  finish: FinishReason | null;
  /** chat: logprobs.content items; completions: the four parallel lists. */
  chatLogprobs: unknown[];
  tokenStrs: string[];
  tokenLogprobs: number[];
  topLogprobs: Record<string, number>[];
  textOffset: number[];
  offset: number;
}

type Json = Record<string, unknown>;

export class Reply {
  readonly id: string;
  readonly created = Math.floor(Date.now() / 1000);
  private readonly choices: ChoiceState[];

  constructor(
    readonly spec: CompletionSpec,
    private readonly tok: GemmaTokenizer,
    readonly modelId: string,
  ) {
    this.id = `${spec.kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomUUID().replace(/-/g, '')}`;
    this.choices = Array.from({length: spec.n}, () => ({
      text: '',
      tokens: 0,
      finish: null,
      chatLogprobs: [],
      tokenStrs: [],
      tokenLogprobs: [],
      topLogprobs: [],
      textOffset: [],
      offset: 0,
    }));
  }

  get usage(): Usage {
    const completion = this.choices.reduce((n, c) => n + c.tokens, 0);
    const prompt = this.spec.promptIds.length;
    return {prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion};
  }

  /** A token's text as the logprobs show it (special tokens by their piece). */
  private tokenString(id: number): string {
    return this.tok.decode([id]);
  }

  private chatItem(id: number, logprob: number) {
    const token = this.tokenString(id);
    return {token, logprob, bytes: [...Buffer.from(token, 'utf8')]};
  }

  /** Records one event; returns the logprobs object of this token in the endpoint's format (or null). */
  private record(ev: SequenceEvent): unknown {
    const c = this.choices[ev.choice];
    c.text += ev.text;
    c.tokens++;
    if (ev.finishReason) c.finish = ev.finishReason;
    const lp: TokenLogprob | undefined = ev.logprob;
    if (lp == null) return null;
    if (this.spec.kind === 'chat') {
      const item = {
        ...this.chatItem(ev.tokenId, lp.logprob),
        top_logprobs: lp.top.map((t) => this.chatItem(t.id, t.logprob)),
      };
      c.chatLogprobs.push(item);
      return {content: [item]};
    }
    const s = this.tokenString(ev.tokenId);
    const top = Object.fromEntries(lp.top.map((t) => [this.tokenString(t.id), t.logprob]));
    c.tokenStrs.push(s);
    c.tokenLogprobs.push(lp.logprob);
    c.topLogprobs.push(top);
    c.textOffset.push(c.offset);
    c.offset += s.length;
    return {tokens: [s], token_logprobs: [lp.logprob], top_logprobs: [top], text_offset: [c.textOffset.at(-1)]};
  }

  private chunk(choices: Json[], extra: Json = {}): Json {
    const object = this.spec.kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
    return {id: this.id, object, created: this.created, model: this.modelId, choices, ...extra};
  }

  /** The chunks that open a chat stream: each choice's role. Completions have none. */
  opening(): Json[] {
    if (this.spec.kind !== 'chat') return [];
    return this.choices.map((_, i) =>
      this.chunk([{index: i, delta: {role: 'assistant', content: ''}, logprobs: null, finish_reason: null}]),
    );
  }

  /** The chunks one token event makes (none for a token that printed nothing and ends nothing). */
  chunks(ev: SequenceEvent): Json[] {
    const logprobs = this.record(ev);
    const out: Json[] = [];
    const i = ev.choice;
    if (this.spec.kind === 'chat') {
      if (ev.text !== '' || logprobs != null)
        out.push(this.chunk([{index: i, delta: {content: ev.text}, logprobs, finish_reason: null}]));
      if (ev.finishReason)
        out.push(this.chunk([{index: i, delta: {}, logprobs: null, finish_reason: ev.finishReason}]));
    } else if (ev.text !== '' || logprobs != null || ev.finishReason) {
      out.push(this.chunk([{index: i, text: ev.text, logprobs, finish_reason: ev.finishReason ?? null}]));
    }
    return out;
  }

  /** stream_options.include_usage's last chunk. */
  usageChunk(): Json {
    return this.chunk([], {usage: this.usage});
  }

  /** The whole answer (non-streaming). */
  final(): Json {
    const chat = this.spec.kind === 'chat';
    const wantLp = this.spec.logprobs != null;
    const choices = this.choices.map((c, index) =>
      chat
        ? {
            index,
            message: {role: 'assistant', content: c.text, refusal: null},
            logprobs: wantLp ? {content: c.chatLogprobs, refusal: null} : null,
            finish_reason: c.finish ?? 'length',
          }
        : {
            index,
            text: c.text,
            logprobs: wantLp
              ? {
                  tokens: c.tokenStrs,
                  token_logprobs: c.tokenLogprobs,
                  top_logprobs: c.topLogprobs,
                  text_offset: c.textOffset,
                }
              : null,
            finish_reason: c.finish ?? 'length',
          },
    );
    return {
      id: this.id,
      object: chat ? 'chat.completion' : 'text_completion',
      created: this.created,
      model: this.modelId,
      choices,
      usage: this.usage,
    };
  }
}
