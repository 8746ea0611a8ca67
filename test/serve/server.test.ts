/**
 * `griffin serve`'s server (src/serve/) on tiny-a with the tiny tokenizer, called through the
 * official `openai` client, unchanged. The expected tokens come from the library's own
 * model.generate run on one prompt at a time (choice i of a request = generate with seed + i),
 * not from the server: concurrent requests, streaming and n > 1 must all give exactly those.
 */
import OpenAI from 'openai';
import * as path from 'path';
import {RecurrentGemmaForCausalLM} from '../../src/model';
import {type RunningServer, startServer} from '../../src/serve/server';
import {tf} from '../../src/tf';
import {encodeChat, GemmaTokenizer} from '../../src/tokenizer';
import {TINY_A_DIR} from '../helpers';

const TOKENIZER = path.join(__dirname, '../fixtures/tokenizer/tiny.model');

let model: RecurrentGemmaForCausalLM;
let tok: GemmaTokenizer;
let srv: RunningServer;
let client: OpenAI;

beforeAll(async () => {
  await tf.setBackend('cpu');
  model = await RecurrentGemmaForCausalLM.fromPretrained(TINY_A_DIR);
  tok = await GemmaTokenizer.load(TOKENIZER);
  srv = await startServer({model, tok, modelId: 'tiny', port: 0, maxBatch: 4, maxQueue: 16, limits: {maxTokens: 4000}});
  client = new OpenAI({baseURL: `${srv.url}/v1`, apiKey: 'unused', maxRetries: 0});
});
afterAll(async () => {
  await srv?.close();
  model?.dispose();
});

interface Sampling {
  temperature: number;
  top_p?: number;
  seed?: number;
  max_tokens: number;
}

/** What one request must answer: the library's generate, alone, decoded as the server decodes. */
async function alone(ids: number[], s: Sampling, choice = 0): Promise<{text: string; tokens: number[]}> {
  const [out] = await model.generate([ids], {
    maxNewTokens: s.max_tokens,
    temperature: s.temperature,
    topP: s.top_p,
    seed: s.seed != null ? s.seed + choice : undefined,
    tokenizer: tok,
  });
  const tokens = out.slice(ids.length);
  return {text: tok.decode(tokens, {skipSpecial: true}), tokens};
}

const chatIds = (content: string) => encodeChat(tok, [{role: 'user', content}], {addGenerationPrompt: true});

test('GET /v1/models and /health', async () => {
  const models = await client.models.list();
  expect(models.data.map((m) => m.id)).toEqual(['tiny']);
  const h = await (await fetch(`${srv.url}/health`)).json();
  expect(h).toMatchObject({status: 'ok', slots: 4});
});

test('completions: greedy text, finish_reason length, usage', async () => {
  const s = {temperature: 0, max_tokens: 12};
  const r = await client.completions.create({model: 'tiny', prompt: 'The history of', ...s});
  const want = await alone(tok.encode('The history of'), s);
  expect(want.tokens.length).toBe(12);
  expect(r.choices[0].text).toBe(want.text);
  expect(r.choices[0].finish_reason).toBe('length');
  expect(r.usage).toEqual({
    prompt_tokens: tok.encode('The history of').length,
    completion_tokens: 12,
    total_tokens: tok.encode('The history of').length + 12,
  });
});

test('chat: seeded sampling with n = 2 gives generate with seed and seed + 1', async () => {
  const s = {temperature: 1.5, top_p: 0.95, seed: 11, max_tokens: 16};
  const r = await client.chat.completions.create({
    model: 'tiny',
    messages: [{role: 'user', content: 'Tell me a story'}],
    n: 2,
    logprobs: true,
    ...s,
  });
  const ids = chatIds('Tell me a story');
  const [w0, w1] = [await alone(ids, s, 0), await alone(ids, s, 1)];
  expect(w0.tokens).not.toEqual(w1.tokens); // the two choices draw differently
  expect(r.choices.map((c) => c.message.content)).toEqual([w0.text, w1.text]);
  // Token by token (logprobs name each token by its text).
  expect(r.choices.map((c) => c.logprobs!.content!.map((x) => x.token))).toEqual(
    [w0, w1].map((w) => w.tokens.map((id) => tok.decode([id]))),
  );
  expect(r.usage!.completion_tokens).toBe(w0.tokens.length + w1.tokens.length);
  expect(r.usage!.prompt_tokens).toBe(ids.length);
});

test('streaming equals non-streaming (chat and completions)', async () => {
  const s = {temperature: 0.8, seed: 5, max_tokens: 20};
  const messages = [{role: 'user' as const, content: 'Where is the river?'}];
  const whole = await client.chat.completions.create({model: 'tiny', messages, ...s});
  const stream = await client.chat.completions.create({
    model: 'tiny',
    messages,
    ...s,
    stream: true,
    stream_options: {include_usage: true},
  });
  let text = '',
    finish: string | null = null,
    usage: unknown = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      text += c.delta.content ?? '';
      finish = c.finish_reason ?? finish;
    }
  }
  expect(text).toBe(whole.choices[0].message.content);
  expect(finish).toBe(whole.choices[0].finish_reason);
  expect(usage).toEqual(whole.usage);
  expect(text).toBe((await alone(chatIds('Where is the river?'), s)).text);

  const prompt = 'Once upon a time';
  const c1 = await client.completions.create({model: 'tiny', prompt, ...s});
  let t2 = '';
  for await (const chunk of await client.completions.create({model: 'tiny', prompt, ...s, stream: true}))
    t2 += chunk.choices[0]?.text ?? '';
  expect(t2).toBe(c1.choices[0].text);
});

test('6 concurrent requests on 4 slots each answer what they answer alone', async () => {
  const prompts = ['The river', 'A king', 'In the morning', 'Numbers are', 'She said', 'The history of'];
  const settings: Sampling[] = prompts.map((_, i) =>
    i % 2 === 0
      ? {temperature: 0, max_tokens: 10 + 3 * i}
      : {temperature: 0.9, top_p: 0.95, seed: 100 + i, max_tokens: 8 + 5 * i},
  );
  const steps0 = srv.scheduler.stats.steps;
  let busiest = 0;
  const watch = setInterval(() => {
    busiest = Math.max(busiest, srv.scheduler.stats.busy);
  }, 1);
  const answers = await Promise.all(
    prompts.map((prompt, i) => client.completions.create({model: 'tiny', prompt, ...settings[i]})),
  );
  clearInterval(watch);
  const steps = srv.scheduler.stats.steps - steps0;
  for (let i = 0; i < prompts.length; i++) {
    const want = await alone(tok.encode(prompts[i]), settings[i]);
    expect(answers[i].choices[0].text).toBe(want.text);
    expect(answers[i].usage!.completion_tokens).toBe(want.tokens.length);
  }
  const total = answers.reduce((n, a) => n + a.usage!.completion_tokens, 0);
  // Batched: far fewer steps than tokens, and never more rows than slots.
  expect(steps).toBeLessThan(total * 0.6);
  expect(busiest).toBeLessThanOrEqual(4);
});

test('stop strings end a choice with finish_reason stop; logprobs are the model log-softmax', async () => {
  const s = {temperature: 1, seed: 3, max_tokens: 12};
  const want = await alone(tok.encode('The history of'), s);
  // A stop string from the middle of the text: the answer is what comes before its first occurrence.
  const stop = want.text.slice(5, 7);
  expect(want.text.indexOf(stop)).toBeGreaterThan(0);
  const r = await client.completions.create({model: 'tiny', prompt: 'The history of', ...s, stop: [stop], logprobs: 2});
  expect(r.choices[0].finish_reason).toBe('stop');
  expect(r.choices[0].text).toBe(want.text.slice(0, want.text.indexOf(stop)));
  // The first token's log-probability, from the logits of a plain forward pass.
  const ids = tok.encode('The history of');
  const logits = model.forward({inputIds: [ids]}).logits;
  const last = tf.tidy(() => tf.logSoftmax(logits.slice([0, ids.length - 1, 0], [1, 1, -1]).reshape([-1])));
  const lsm = (await last.data()) as Float32Array;
  tf.dispose([logits, last]);
  const lp = r.choices[0].logprobs!;
  expect(lp.token_logprobs![0]).toBeCloseTo(lsm[want.tokens[0]], 4);
  const top = Object.values(lp.top_logprobs![0]);
  const sorted = [...lsm].sort((a, b) => b - a);
  expect(top.length).toBe(2);
  expect(top[0]).toBeCloseTo(sorted[0], 4);
  expect(top[1]).toBeCloseTo(sorted[1], 4);
});

test('a client that goes away frees its slot', async () => {
  const ac = new AbortController();
  const stream = await client.completions.create(
    {model: 'tiny', prompt: 'The river', max_tokens: 4000, temperature: 0, stream: true},
    {signal: ac.signal},
  );
  let got = 0;
  try {
    for await (const _ of stream) {
      if (++got === 3) ac.abort();
    }
  } catch {
    /* the aborted read */
  }
  const t0 = Date.now();
  while (srv.scheduler.stats.busy > 0 && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 5));
  expect(srv.scheduler.stats.busy).toBe(0);
  // Far from its 4000 tokens; and the server goes on serving.
  expect(srv.scheduler.stats.tokens).toBeLessThan(4000);
  const r = await client.completions.create({model: 'tiny', prompt: 'A king', max_tokens: 3, temperature: 0});
  expect(r.choices[0].text).toBe((await alone(tok.encode('A king'), {temperature: 0, max_tokens: 3})).text);
});

test('bad requests get 400 with an OpenAI error body; the server goes on', async () => {
  const cases: [Record<string, unknown>, string][] = [
    [{model: 'tiny'}, 'messages'],
    [{model: 'tiny', messages: []}, 'messages'],
    [{model: 'tiny', messages: [{role: 'wizard', content: 'hi'}]}, 'messages[0].role'],
    [{model: 'tiny', messages: [{role: 'user', content: 'hi'}], max_tokens: -1}, 'max_tokens'],
    [{model: 'tiny', messages: [{role: 'user', content: 'hi'}], top_p: 0}, 'top_p'],
    [{model: 'tiny', messages: [{role: 'user', content: 'hi'}], top_p: 1.5}, 'top_p'],
    [{model: 'tiny', messages: [{role: 'user', content: 'hi'}], temperature: 'hot'}, 'temperature'],
    [{model: 'tiny', messages: [{role: 'user', content: 'hi'}], stop: ['']}, 'stop'],
    [{model: 'tiny', messages: [{role: 'user', content: 'hi'}], n: 5}, 'n'],
    [{model: 'tiny', messages: [{role: 'user', content: 'x '.repeat(5000)}]}, 'messages'],
  ];
  for (const [body, param] of cases) {
    const err = await client.chat.completions.create(body as never).catch((e) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect(err.status).toBe(400);
    expect(err.error).toMatchObject({type: 'invalid_request_error', param});
  }
  const raw = await fetch(`${srv.url}/v1/completions`, {method: 'POST', body: '{"prompt": "a",'});
  expect(raw.status).toBe(400);
  expect((await raw.json()).error.code).toBe('invalid_json');
  const big = await fetch(`${srv.url}/v1/completions`, {
    method: 'POST',
    body: JSON.stringify({prompt: 'a'.repeat(2 << 20)}),
  });
  expect(big.status).toBe(413);
  const r = await client.completions.create({model: 'tiny', prompt: 'A king', max_tokens: 2, temperature: 0});
  expect(r.choices[0].finish_reason).toBe('length');
});

test('tensors are all freed after the requests', async () => {
  const before = tf.memory().numTensors;
  await Promise.all(
    [0, 1, 2, 3, 4].map((i) =>
      client.completions.create({
        model: 'tiny',
        prompt: `Test ${i}`,
        max_tokens: 5 + i,
        temperature: i % 2,
        seed: i,
        n: 1 + (i % 2),
      }),
    ),
  );
  expect(tf.memory().numTensors).toBe(before);
});

describe('a server with an API key and a short queue', () => {
  let s2: RunningServer;
  beforeAll(async () => {
    s2 = await startServer({
      model,
      tok,
      modelId: 'tiny',
      port: 0,
      maxBatch: 1,
      maxQueue: 1,
      apiKey: 'sekrit',
      limits: {maxTokens: 4000},
    });
  });
  afterAll(() => s2.close());

  test('401 without the key, 200 with it; /health needs none', async () => {
    const wrong = new OpenAI({baseURL: `${s2.url}/v1`, apiKey: 'nope', maxRetries: 0});
    const err = await wrong.models.list().catch((e) => e);
    expect(err).toBeInstanceOf(OpenAI.AuthenticationError);
    expect(err.status).toBe(401);
    const none = await fetch(`${s2.url}/v1/models`);
    expect(none.status).toBe(401);
    const right = new OpenAI({baseURL: `${s2.url}/v1`, apiKey: 'sekrit', maxRetries: 0});
    expect((await right.models.list()).data[0].id).toBe('tiny');
    expect((await fetch(`${s2.url}/health`)).status).toBe(200);
  });

  test('past the queue bound: 429 with Retry-After; the others finish', async () => {
    const right = new OpenAI({baseURL: `${s2.url}/v1`, apiKey: 'sekrit', maxRetries: 0});
    const long = {model: 'tiny', prompt: 'The river', max_tokens: 60, temperature: 0};
    const first = right.completions.create(long); // runs
    while (s2.scheduler.stats.busy === 0) await new Promise((r) => setTimeout(r, 1));
    const second = right.completions.create(long); // waits
    while (s2.scheduler.stats.queued === 0) await new Promise((r) => setTimeout(r, 1));
    const third = await fetch(`${s2.url}/v1/completions`, {
      method: 'POST',
      headers: {Authorization: 'Bearer sekrit', 'Content-Type': 'application/json'},
      body: JSON.stringify(long),
    });
    expect(third.status).toBe(429);
    expect(third.headers.get('retry-after')).toBe('1');
    expect((await third.json()).error.type).toBe('rate_limit_error');
    const [a, b] = await Promise.all([first, second]);
    expect(a.choices[0].text).toBe(b.choices[0].text);
    expect(a.usage!.completion_tokens).toBe(60);
  });
});
