/**
 * The tensors (HF names and shapes) a config implies, computed without building a model, and the
 * check of a checkpoint's tensor list against them: run when a checkpoint is opened, so that a
 * config that disagrees with its weights is refused in one line before anything is allocated.
 *   const shapes = configTensors(config);   // 'model.layers.0.mlp_block.up_proj.weight' -> [m, d], ...
 *   checkTensorList(config, 'ckpt/config.json', new Map([['model.final_norm.weight', {shape: [64], file: 'x'}]]));
 */
import type {RecurrentGemmaConfig} from '../src/config';
import {CheckpointError} from './safetensors';

/** name -> shape, as the model built from the config holds them (lm_head.weight only when untied). */
export function configTensors(c: RecurrentGemmaConfig): Map<string, number[]> {
  const d = c.hidden_size,
    e = c.lru_width,
    m = c.intermediate_size / 2,
    H = c.num_attention_heads,
    hd = c.head_dim,
    K = c.num_key_value_heads,
    bw = e / H;
  const out = new Map<string, number[]>();
  out.set('model.embed_tokens.weight', [c.vocab_size, d]);
  const linear = (name: string, inF: number, outF: number, bias: boolean) => {
    out.set(`${name}.weight`, [outF, inF]);
    if (bias) out.set(`${name}.bias`, [outF]);
  };
  c.layers_block_type.forEach((type, i) => {
    const p = `model.layers.${i}`;
    out.set(`${p}.temporal_pre_norm.weight`, [d]);
    out.set(`${p}.channel_pre_norm.weight`, [d]);
    linear(`${p}.mlp_block.gate_proj`, d, m, true);
    linear(`${p}.mlp_block.up_proj`, d, m, true);
    linear(`${p}.mlp_block.down_proj`, m, d, true);
    const t = `${p}.temporal_block`;
    if (type === 'recurrent') {
      linear(`${t}.linear_y`, d, e, true);
      linear(`${t}.linear_x`, d, e, true);
      linear(`${t}.linear_out`, e, d, true);
      out.set(`${t}.conv_1d.weight`, [e, 1, c.conv1d_width]);
      out.set(`${t}.conv_1d.bias`, [e]);
      out.set(`${t}.rg_lru.recurrent_param`, [e]);
      for (const g of ['input_gate', 'recurrent_gate']) {
        out.set(`${t}.rg_lru.${g}_weight`, [H, bw, bw]);
        out.set(`${t}.rg_lru.${g}_bias`, [H, bw]);
      }
    } else {
      linear(`${t}.q_proj`, d, H * hd, c.attention_bias);
      linear(`${t}.k_proj`, d, K * hd, c.attention_bias);
      linear(`${t}.v_proj`, d, K * hd, c.attention_bias);
      linear(`${t}.o_proj`, H * hd, d, true);
    }
  });
  out.set('model.final_norm.weight', [d]);
  if (!c.tie_word_embeddings) out.set('lm_head.weight', [c.vocab_size, d]);
  return out;
}

/** The config fields a tensor's shape comes from, for messages. */
function fieldsOf(name: string): string {
  if (name.includes('embed_tokens') || name.startsWith('lm_head')) return 'vocab_size, hidden_size';
  if (name.includes('mlp_block')) return 'hidden_size, intermediate_size';
  if (/rg_lru|conv_1d|linear_/.test(name)) return 'hidden_size, lru_width, num_attention_heads, conv1d_width';
  if (/_proj/.test(name)) return 'hidden_size, num_attention_heads, num_key_value_heads, attention_bias';
  return 'hidden_size';
}

/**
 * Refuses, naming the files and the config fields, a checkpoint whose tensors (name -> shape, and
 * the file holding it) are not exactly those the config implies. A tied checkpoint may also carry
 * an lm_head.weight equal in shape to the embedding (transformers writes one).
 */
export function checkTensorList(
  config: RecurrentGemmaConfig,
  configFile: string,
  tensors: Map<string, {shape: number[]; file: string}>,
): void {
  const want = configTensors(config);
  const layers = (names: Iterable<string>) => {
    let n = 0;
    for (const k of names) {
      const m = /^model\.layers\.(\d+)\./.exec(k);
      if (m != null) n = Math.max(n, Number(m[1]) + 1);
    }
    return n;
  };
  const held = layers(tensors.keys());
  if (held !== config.num_hidden_layers) {
    const where = tensors.values().next().value?.file ?? 'the checkpoint';
    throw new CheckpointError(
      `${configFile}: num_hidden_layers is ${config.num_hidden_layers} but ${where} holds tensors of ${held} layer(s)`,
    );
  }
  for (const [name, shape] of want) {
    const t = tensors.get(name);
    if (t == null) {
      const where = tensors.values().next().value?.file ?? 'the checkpoint';
      throw new CheckpointError(
        `${configFile}: the config implies tensor ${JSON.stringify(name)} [${shape}], which ${where} lacks`,
      );
    }
    if (t.shape.length !== shape.length || t.shape.some((x, i) => x !== shape[i])) {
      throw new CheckpointError(
        `${t.file}: tensor ${JSON.stringify(name)} has shape [${t.shape}], but ${configFile} (${fieldsOf(name)}) implies [${shape}]`,
      );
    }
  }
  for (const [name, t] of tensors) {
    if (want.has(name)) continue;
    if (name === 'lm_head.weight' && config.tie_word_embeddings) {
      const emb = want.get('model.embed_tokens.weight')!;
      if (t.shape.length === 2 && t.shape[0] === emb[0] && t.shape[1] === emb[1]) continue;
      throw new CheckpointError(
        `${t.file}: tensor "lm_head.weight" has shape [${t.shape}], but ${configFile} (vocab_size, hidden_size) implies [${emb}]`,
      );
    }
    throw new CheckpointError(
      `${t.file}: unexpected tensor ${JSON.stringify(name)} (not part of a RecurrentGemma with the config in ${configFile})`,
    );
  }
}
