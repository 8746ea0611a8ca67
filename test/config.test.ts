/**
 * RecurrentGemmaConfig: the seed doc's defaults, reading HF config.json (both spellings of the
 * rope settings), writing it back, and the validation errors (each names the offending field).
 */
import * as fs from 'fs';
import * as path from 'path';
import {ConfigError, RecurrentGemmaConfig} from '../src/config';

const TINY = path.join(__dirname, 'fixtures/tiny-a/config.json');

function expectConfigError(fn: () => unknown, field: string): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ConfigError);
  expect((err as Error).message).toContain(field);
}

describe('defaults (transformers RecurrentGemmaConfig, seeds/recurrent_gemma.md)', () => {
  const c = new RecurrentGemmaConfig();

  test('sizes', () => {
    expect(c.num_hidden_layers).toBe(26);
    expect(c.vocab_size).toBe(256000);
    expect(c.hidden_size).toBe(2560);
    expect(c.intermediate_size).toBe(7680);
    expect(c.num_attention_heads).toBe(10);
    expect(c.lru_width).toBe(2560);
    expect(c.attention_window_size).toBe(2048);
    expect(c.conv1d_width).toBe(4);
    expect(c.head_dim).toBe(256);
  });

  test('numerics, tokens, activation, rope', () => {
    expect(c.logits_soft_cap).toBe(30);
    expect(c.rms_norm_eps).toBe(1e-6);
    expect(c.pad_token_id).toBe(0);
    expect(c.eos_token_id).toBe(1);
    expect(c.bos_token_id).toBe(2);
    expect(c.eos_token_ids).toEqual([1]);
    expect(c.hidden_activation).toBe('gelu_pytorch_tanh');
    expect(c.partial_rotary_factor).toBe(0.5);
    expect(c.rope_theta).toBe(10000);
    expect(c.rotary_dim).toBe(128);
  });

  test('attention and init settings', () => {
    // The seed doc's prose says 16, but its signature (and transformers' code) has None,
    // which means num_attention_heads; 16 would not even divide the 10 default heads.
    expect(c.num_key_value_heads).toBe(10);
    expect(c.attention_bias).toBe(false);
    expect(c.attention_dropout).toBe(0);
    expect(c.w_init_variance_scale).toBe(0.01);
    expect(c.final_w_init_variance_scale).toBeCloseTo(2 / 26, 15);
    expect(c.tie_word_embeddings).toBe(true);
    expect(c.use_cache).toBe(true);
  });

  test('block_types cycle over the 26 layers', () => {
    expect(c.block_types).toEqual(['recurrent', 'recurrent', 'attention']);
    const types = c.layers_block_type;
    expect(types.length).toBe(26);
    const attention = types.map((t, i) => (t === 'attention' ? i : -1)).filter((i) => i >= 0);
    expect(attention).toEqual([2, 5, 8, 11, 14, 17, 20, 23]);
    expect(types[24]).toBe('recurrent');
    expect(types[25]).toBe('recurrent');
  });

  test('derived defaults follow the given sizes', () => {
    const s = new RecurrentGemmaConfig({hidden_size: 64, num_attention_heads: 4, num_hidden_layers: 4});
    expect(s.lru_width).toBe(64);
    expect(s.num_key_value_heads).toBe(4);
    expect(s.head_dim).toBe(16);
    expect(s.final_w_init_variance_scale).toBe(0.5);
    const n = new RecurrentGemmaConfig({
      hidden_size: 64,
      num_attention_heads: 4,
      lru_width: null,
      num_key_value_heads: null,
    });
    expect(n.lru_width).toBe(64);
    expect(n.num_key_value_heads).toBe(4);
  });
});

describe('reading config.json', () => {
  test('test/fixtures/tiny-a/config.json', () => {
    const c = RecurrentGemmaConfig.fromJSON(JSON.parse(fs.readFileSync(TINY, 'utf8')));
    expect(c.num_hidden_layers).toBe(4);
    expect(c.vocab_size).toBe(512);
    expect(c.hidden_size).toBe(64);
    expect(c.intermediate_size).toBe(192);
    expect(c.num_attention_heads).toBe(4);
    expect(c.num_key_value_heads).toBe(1);
    expect(c.lru_width).toBe(64);
    expect(c.head_dim).toBe(16);
    expect(c.rotary_dim).toBe(8);
    expect(c.attention_window_size).toBe(64);
    expect(c.conv1d_width).toBe(4);
    expect(c.final_w_init_variance_scale).toBe(0.5);
    expect(c.rope_theta).toBe(10000);
    expect(c.partial_rotary_factor).toBe(0.5);
    expect(c.tie_word_embeddings).toBe(true);
    expect(c.layers_block_type).toEqual(['recurrent', 'recurrent', 'attention', 'recurrent']);
    // Keys the class does not model survive.
    expect(c.extra.transformers_version).toBe('5.17.0');
  });

  const base = {
    model_type: 'recurrent_gemma',
    hidden_size: 64,
    num_attention_heads: 4,
    num_hidden_layers: 2,
    vocab_size: 32,
  };

  test('older top-level rope_theta / partial_rotary_factor', () => {
    const c = RecurrentGemmaConfig.fromJSON({...base, rope_theta: 500, partial_rotary_factor: 0.25});
    expect(c.rope_theta).toBe(500);
    expect(c.partial_rotary_factor).toBe(0.25);
    expect(c.rotary_dim).toBe(4);
  });

  test('newer rope_parameters object', () => {
    const c = RecurrentGemmaConfig.fromJSON({
      ...base,
      rope_parameters: {rope_type: 'default', rope_theta: 700, partial_rotary_factor: 0.75},
    });
    expect(c.rope_theta).toBe(700);
    expect(c.partial_rotary_factor).toBe(0.75);
    expect(c.rotary_dim).toBe(12);
    expect(c.extra.rope_parameters).toBeUndefined();
  });

  test('an unsupported rope_type is refused', () => {
    expectConfigError(
      () => RecurrentGemmaConfig.fromJSON({...base, rope_parameters: {rope_type: 'yarn', rope_theta: 1}}),
      'rope_type',
    );
  });

  test('toJSON writes both spellings and round-trips through fromJSON', () => {
    const c = RecurrentGemmaConfig.fromJSON({
      ...base,
      rope_theta: 1234,
      partial_rotary_factor: 0.25,
      num_key_value_heads: 2,
      block_types: ['attention', 'recurrent'],
      eos_token_id: [1, 107],
      tie_word_embeddings: false,
      attention_window_size: 16,
      custom_key: 'kept',
    });
    const j = c.toJSON();
    expect(j.model_type).toBe('recurrent_gemma');
    expect(j.architectures).toEqual(['RecurrentGemmaForCausalLM']);
    expect(j.rope_theta).toBe(1234);
    expect(j.partial_rotary_factor).toBe(0.25);
    expect(j.rope_parameters).toEqual({rope_theta: 1234, partial_rotary_factor: 0.25, rope_type: 'default'});
    expect(j.head_dim).toBe(16);
    expect(j.custom_key).toBe('kept');
    expect(j.extra).toBeUndefined();
    // Through a JSON string, as a file would carry it.
    const back = RecurrentGemmaConfig.fromJSON(JSON.parse(JSON.stringify(j)));
    expect(back.toJSON()).toEqual(j);
    for (const k of [
      'rope_theta',
      'partial_rotary_factor',
      'num_key_value_heads',
      'block_types',
      'eos_token_id',
      'tie_word_embeddings',
      'attention_window_size',
      'hidden_size',
      'num_attention_heads',
      'vocab_size',
      'final_w_init_variance_scale',
    ] as const) {
      expect({k, v: back[k]}).toEqual({k, v: c[k]});
    }
    expect(back.eos_token_ids).toEqual([1, 107]);
    // Each spelling alone reads the value back.
    const onlyNew = {...j};
    delete onlyNew.rope_theta;
    delete onlyNew.partial_rotary_factor;
    expect(RecurrentGemmaConfig.fromJSON(onlyNew).rope_theta).toBe(1234);
    const onlyOld = {...j};
    delete onlyOld.rope_parameters;
    expect(RecurrentGemmaConfig.fromJSON(onlyOld).partial_rotary_factor).toBe(0.25);
  });

  test('the tiny-a config round-trips', () => {
    const json = JSON.parse(fs.readFileSync(TINY, 'utf8'));
    const j = RecurrentGemmaConfig.fromJSON(json).toJSON();
    for (const [k, v] of Object.entries(json)) expect({k, v: j[k]}).toEqual({k, v});
  });
});

describe('invalid configs throw ConfigError naming the field', () => {
  const ok = {hidden_size: 64, num_attention_heads: 4, num_hidden_layers: 2, vocab_size: 32, intermediate_size: 96};

  test('num_attention_heads not dividing hidden_size', () => {
    expectConfigError(() => new RecurrentGemmaConfig({...ok, num_attention_heads: 5, lru_width: 60}), 'hidden_size');
    expectConfigError(
      () => new RecurrentGemmaConfig({...ok, num_attention_heads: 5, lru_width: 60}),
      'num_attention_heads',
    );
  });

  test('num_attention_heads not dividing lru_width', () => {
    expectConfigError(() => new RecurrentGemmaConfig({...ok, lru_width: 66}), 'lru_width');
  });

  test('unknown block type', () => {
    expectConfigError(() => RecurrentGemmaConfig.fromJSON({...ok, block_types: ['recurrent', 'mamba']}), 'block_types');
    expectConfigError(() => RecurrentGemmaConfig.fromJSON({...ok, block_types: ['recurrent', 'mamba']}), 'mamba');
    expectConfigError(() => RecurrentGemmaConfig.fromJSON({...ok, block_types: []}), 'block_types');
  });

  test('num_key_value_heads greater than num_attention_heads, or not dividing it', () => {
    expectConfigError(() => new RecurrentGemmaConfig({...ok, num_key_value_heads: 8}), 'num_key_value_heads');
    expectConfigError(() => new RecurrentGemmaConfig({...ok, num_key_value_heads: 3}), 'num_key_value_heads');
  });

  test('non-integer or non-positive sizes', () => {
    for (const field of [
      'num_hidden_layers',
      'vocab_size',
      'hidden_size',
      'intermediate_size',
      'num_attention_heads',
      'lru_width',
      'attention_window_size',
      'conv1d_width',
      'num_key_value_heads',
    ]) {
      expectConfigError(() => RecurrentGemmaConfig.fromJSON({...ok, [field]: 6.5}), field);
      expectConfigError(() => RecurrentGemmaConfig.fromJSON({...ok, [field]: 0}), field);
      expectConfigError(() => RecurrentGemmaConfig.fromJSON({...ok, [field]: '64'}), field);
    }
  });

  test('odd intermediate_size (the MLP uses half of it)', () => {
    expectConfigError(() => new RecurrentGemmaConfig({...ok, intermediate_size: 97}), 'intermediate_size');
  });

  test('wrong model_type', () => {
    expectConfigError(() => RecurrentGemmaConfig.fromJSON({...ok, model_type: 'gemma'}), 'model_type');
  });

  test('head_dim disagreeing with hidden_size / num_attention_heads', () => {
    expectConfigError(() => RecurrentGemmaConfig.fromJSON({...ok, head_dim: 32}), 'head_dim');
  });

  test('unsupported activation, bad rotary factor, bad soft cap', () => {
    expectConfigError(() => RecurrentGemmaConfig.fromJSON({...ok, hidden_activation: 'relu'}), 'hidden_activation');
    expectConfigError(
      () => RecurrentGemmaConfig.fromJSON({...ok, partial_rotary_factor: 0.1875}),
      'partial_rotary_factor',
    ); // 3 channels of 16
    expectConfigError(
      () => RecurrentGemmaConfig.fromJSON({...ok, partial_rotary_factor: 1.5}),
      'partial_rotary_factor',
    );
    expectConfigError(() => RecurrentGemmaConfig.fromJSON({...ok, rope_theta: 'big'}), 'rope_theta');
    expectConfigError(() => RecurrentGemmaConfig.fromJSON({...ok, logits_soft_cap: 0}), 'logits_soft_cap');
  });

  test('not an object', () => {
    expect(() => RecurrentGemmaConfig.fromJSON([] as unknown as Record<string, unknown>)).toThrow(ConfigError);
  });
});
