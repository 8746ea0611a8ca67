/**
 * A checkpoint's own chat template (tokenizer_config.json's `chat_template`, Jinja) rendered with
 * @huggingface/jinja, the engine transformers.js uses, with the variables transformers'
 * apply_chat_template gives it.
 *   const text = renderChatTemplate(tok.chatTemplate!, [{role: 'user', content: 'Hi'}], {addGenerationPrompt: true, specialTokens: {bos_token: '<bos>'}});
 *
 * A template that calls raise_exception(...) or does not parse fails with a ChatTemplateError whose
 * message is one line: "chat template: <its message>".
 */
import {Template} from '@huggingface/jinja';

export class ChatTemplateError extends Error {}

/** One message as templates see it (`role` as the template expects: user, assistant, system, ...). */
export interface TemplateMessage {
  role: string;
  content: string;
  [k: string]: unknown;
}

export interface RenderOptions {
  addGenerationPrompt?: boolean;
  /** bos_token, eos_token, pad_token, unk_token, ... as tokenizer_config.json names them. */
  specialTokens?: Record<string, string | undefined>;
  /** Further variables (tools, documents, ...), passed as they are. */
  extra?: Record<string, unknown>;
}

const oneLine = (s: string) => s.split('\n')[0];
const parsed = new Map<string, Template>();

/** Parses a template once (cached), throwing ChatTemplateError when it does not parse. */
export function parseChatTemplate(template: string): Template {
  let t = parsed.get(template);
  if (t == null) {
    try {
      t = new Template(template);
    } catch (e) {
      throw new ChatTemplateError(`chat template: does not parse (${oneLine((e as Error).message)})`);
    }
    parsed.set(template, t);
  }
  return t;
}

export function renderChatTemplate(template: string, messages: TemplateMessage[], opts: RenderOptions = {}): string {
  const t = parseChatTemplate(template);
  try {
    return t.render({
      ...opts.extra,
      ...opts.specialTokens,
      messages,
      add_generation_prompt: opts.addGenerationPrompt ?? false,
    });
  } catch (e) {
    if (e instanceof ChatTemplateError) throw e;
    throw new ChatTemplateError(`chat template: ${oneLine((e as Error).message)}`);
  }
}
