/**
 * RecurrentGemmaConfig: the model's hyper-parameters, read from and written to HF `config.json`.
 *   const cfg = RecurrentGemmaConfig.fromJSON(JSON.parse(fs.readFileSync('config.json', 'utf8')));
 *   fs.writeFileSync('config.json', JSON.stringify(cfg.toJSON(), null, 2));
 *
 * Field names are Hugging Face's, so a config.json maps onto this class one to one.
 */
import {CONFIG_LIMITS, MAX_TENSOR_ELEMENTS} from './util/limits';

export type BlockType = 'recurrent' | 'attention';

export interface RecurrentGemmaConfigArgs {
  num_hidden_layers?: number;
  vocab_size?: number;
  hidden_size?: number;
  intermediate_size?: number;
  num_attention_heads?: number;
  /** Width of the RG-LRU; null means hidden_size. */
  lru_width?: number | null;
  attention_window_size?: number;
  conv1d_width?: number;
  logits_soft_cap?: number;
  rms_norm_eps?: number;
  use_cache?: boolean;
  pad_token_id?: number;
  eos_token_id?: number | number[];
  bos_token_id?: number;
  hidden_activation?: string;
  partial_rotary_factor?: number;
  rope_theta?: number;
  block_types?: BlockType[];
  attention_dropout?: number;
  /** null means num_attention_heads. */
  num_key_value_heads?: number | null;
  attention_bias?: boolean;
  w_init_variance_scale?: number;
  final_w_init_variance_scale?: number;
  tie_word_embeddings?: boolean;
  head_dim?: number;
}

export class ConfigError extends Error {}

const SUPPORTED_ACTIVATIONS = ['gelu_pytorch_tanh', 'gelu_new', 'gelu_fast'];

export class RecurrentGemmaConfig {
  num_hidden_layers = 26;
  vocab_size = 256000;
  hidden_size = 2560;
  intermediate_size = 7680;
  num_attention_heads = 10;
  lru_width = 2560;
  attention_window_size = 2048;
  conv1d_width = 4;
  logits_soft_cap = 30.0;
  rms_norm_eps = 1e-6;
  use_cache = true;
  pad_token_id = 0;
  eos_token_id: number | number[] = 1;
  bos_token_id = 2;
  hidden_activation = 'gelu_pytorch_tanh';
  partial_rotary_factor = 0.5;
  rope_theta = 10000.0;
  block_types: BlockType[] = ['recurrent', 'recurrent', 'attention'];
  attention_dropout = 0.0;
  num_key_value_heads = 10;
  attention_bias = false;
  w_init_variance_scale = 0.01;
  final_w_init_variance_scale: number;
  tie_word_embeddings = true;
  /** Keys of config.json this class does not model, kept so that a round trip loses nothing. */
  extra: Record<string, unknown> = {};

  constructor(args: RecurrentGemmaConfigArgs = {}) {
    const a = {...args} as Record<string, unknown>;
    for (const key of Object.keys(a)) {
      if (a[key] === undefined) delete a[key];
    }
    delete a.head_dim; // derived, see the getter; checked below
    Object.assign(this, a);
    if (args.lru_width == null) this.lru_width = this.hidden_size;
    if (args.num_key_value_heads == null) this.num_key_value_heads = this.num_attention_heads;
    this.final_w_init_variance_scale = args.final_w_init_variance_scale ?? 2 / this.num_hidden_layers;
    this.validate();
    if (args.head_dim != null && args.head_dim !== this.head_dim) {
      throw new ConfigError(
        `config: head_dim ${args.head_dim} disagrees with hidden_size / num_attention_heads = ${this.head_dim}`,
      );
    }
  }

  get head_dim(): number {
    return this.hidden_size / this.num_attention_heads;
  }

  /** block_types cycled to num_hidden_layers: the kind of each layer. */
  get layers_block_type(): BlockType[] {
    return Array.from({length: this.num_hidden_layers}, (_, i) => this.block_types[i % this.block_types.length]);
  }

  get eos_token_ids(): number[] {
    return Array.isArray(this.eos_token_id) ? this.eos_token_id : [this.eos_token_id];
  }

  /** Channels of each head that RoPE rotates. */
  get rotary_dim(): number {
    return Math.floor(this.head_dim * this.partial_rotary_factor);
  }

  private validate(): void {
    const posInt = [
      'num_hidden_layers',
      'vocab_size',
      'hidden_size',
      'intermediate_size',
      'num_attention_heads',
      'lru_width',
      'attention_window_size',
      'conv1d_width',
      'num_key_value_heads',
    ] as const;
    for (const f of posInt) {
      const v = this[f];
      if (!Number.isInteger(v) || v <= 0)
        throw new ConfigError(`config: ${f} must be a positive integer, got ${JSON.stringify(v)}`);
      if (v > CONFIG_LIMITS[f])
        throw new ConfigError(`config: ${f} ${v} is above the limit ${CONFIG_LIMITS[f]} (src/util/limits.ts)`);
    }
    // The largest matrices, which must fit one tensor.
    const big: [string, number][] = [
      ['vocab_size x hidden_size', this.vocab_size * this.hidden_size],
      ['intermediate_size / 2 x hidden_size', (this.intermediate_size / 2) * this.hidden_size],
      ['lru_width x hidden_size', this.lru_width * this.hidden_size],
    ];
    for (const [what, n] of big) {
      if (n > MAX_TENSOR_ELEMENTS)
        throw new ConfigError(`config: ${what} = ${n} values, more than one tensor holds (${MAX_TENSOR_ELEMENTS})`);
    }
    const num = ['logits_soft_cap', 'rms_norm_eps', 'partial_rotary_factor', 'rope_theta'] as const;
    for (const f of num) {
      if (typeof this[f] !== 'number' || !Number.isFinite(this[f]))
        throw new ConfigError(`config: ${f} must be a number, got ${JSON.stringify(this[f])}`);
    }
    if (this.hidden_size % this.num_attention_heads !== 0) {
      throw new ConfigError(
        `config: num_attention_heads (${this.num_attention_heads}) must divide hidden_size (${this.hidden_size})`,
      );
    }
    if (this.lru_width % this.num_attention_heads !== 0) {
      throw new ConfigError(
        `config: num_attention_heads (${this.num_attention_heads}) must divide lru_width (${this.lru_width})`,
      );
    }
    if (
      this.num_key_value_heads > this.num_attention_heads ||
      this.num_attention_heads % this.num_key_value_heads !== 0
    ) {
      throw new ConfigError(
        `config: num_key_value_heads (${this.num_key_value_heads}) must divide num_attention_heads (${this.num_attention_heads})`,
      );
    }
    if (this.intermediate_size % 2 !== 0) {
      throw new ConfigError(
        `config: intermediate_size must be even (the MLP uses half of it), got ${this.intermediate_size}`,
      );
    }
    if (!Array.isArray(this.block_types) || this.block_types.length === 0) {
      throw new ConfigError(`config: block_types must be a non-empty list, got ${JSON.stringify(this.block_types)}`);
    }
    for (const b of this.block_types) {
      if (b !== 'recurrent' && b !== 'attention')
        throw new ConfigError(
          `config: block_types has unknown block type ${JSON.stringify(b)} (expected "recurrent" or "attention")`,
        );
    }
    if (!SUPPORTED_ACTIVATIONS.includes(this.hidden_activation)) {
      throw new ConfigError(
        `config: hidden_activation ${JSON.stringify(this.hidden_activation)} is not supported (expected one of ${SUPPORTED_ACTIVATIONS.join(', ')})`,
      );
    }
    if (!(this.partial_rotary_factor > 0 && this.partial_rotary_factor <= 1) || this.rotary_dim % 2 !== 0) {
      throw new ConfigError(
        `config: partial_rotary_factor ${this.partial_rotary_factor} must give an even number of rotated channels per head (head_dim ${this.head_dim})`,
      );
    }
    if (!(this.logits_soft_cap > 0))
      throw new ConfigError(`config: logits_soft_cap must be > 0, got ${this.logits_soft_cap}`);
  }

  /** Reads an HF config.json object; accepts the older top-level rope keys and the newer rope_parameters. */
  static fromJSON(json: Record<string, unknown>): RecurrentGemmaConfig {
    if (json == null || typeof json !== 'object' || Array.isArray(json))
      throw new ConfigError('config: expected a JSON object');
    if (json.model_type != null && json.model_type !== 'recurrent_gemma') {
      throw new ConfigError(`config: model_type is ${JSON.stringify(json.model_type)}, expected "recurrent_gemma"`);
    }
    const known = new Set(Object.keys(new RecurrentGemmaConfig({num_hidden_layers: 1})).concat(['head_dim']));
    const args: Record<string, unknown> = {};
    const extra: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(json)) {
      if (known.has(k) && k !== 'extra') args[k] = v;
      else extra[k] = v;
    }
    const rp = json.rope_parameters as Record<string, unknown> | undefined;
    if (rp != null && typeof rp === 'object') {
      if (rp.rope_type != null && rp.rope_type !== 'default') {
        throw new ConfigError(
          `config: rope_parameters.rope_type ${JSON.stringify(rp.rope_type)} is not supported (expected "default")`,
        );
      }
      if (rp.rope_theta != null) args.rope_theta = rp.rope_theta;
      if (rp.partial_rotary_factor != null) args.partial_rotary_factor = rp.partial_rotary_factor;
      delete extra.rope_parameters;
    }
    const cfg = new RecurrentGemmaConfig(args as RecurrentGemmaConfigArgs);
    cfg.extra = extra;
    return cfg;
  }

  /** Only the fields this class models (what a layer's serialized config carries). */
  toModelFields(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(this)) if (k !== 'extra') out[k] = v;
    return out;
  }

  /** The HF config.json object, with both spellings of the rope settings. */
  toJSON(): Record<string, unknown> {
    const out: Record<string, unknown> = {
      architectures: ['RecurrentGemmaForCausalLM'],
      model_type: 'recurrent_gemma',
      ...this.extra,
    };
    Object.assign(out, this.toModelFields());
    out.head_dim = this.head_dim;
    out.rope_parameters = {
      rope_theta: this.rope_theta,
      partial_rotary_factor: this.partial_rotary_factor,
      rope_type: 'default',
    };
    out.dtype = out.dtype ?? 'float32';
    return out;
  }
}

/** The number of parameters a config's model holds, without building it (a tied head counts once). */
export function parameterCount(c: RecurrentGemmaConfig): number {
  const d = c.hidden_size,
    e = c.lru_width,
    m = c.intermediate_size / 2,
    H = c.num_attention_heads;
  const hd = c.head_dim,
    K = c.num_key_value_heads,
    w = c.conv1d_width,
    bw = e / H;
  const mlp = 2 * (m * d + m) + (d * m + d) + 2 * d; // gate, up, down, the two norms
  const recurrent = 2 * (e * d + e) + (d * e + d) + (e * w + e) + e + 2 * (H * bw * bw + H * bw);
  const attention = H * hd * d + 2 * K * hd * d + (d * H * hd + d);
  const layers = c.layers_block_type.reduce((s, t) => s + mlp + (t === 'recurrent' ? recurrent : attention), 0);
  return c.vocab_size * d * (c.tie_word_embeddings ? 1 : 2) + layers + d;
}
