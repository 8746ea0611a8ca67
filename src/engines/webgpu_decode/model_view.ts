/**
 * What the fused decode engine reads of a model: its config and the layers whose weights it
 * binds. RecurrentGemmaForCausalLM has these members, so a model is passed as it is; the engine
 * never imports the model class (engines sit above model core and see only its layers).
 *   import {fusedDecoderFor} from './index';
 *   const view: DecodeModelView = model;   const eng = fusedDecoderFor(view, 1);
 *
 * Shape letters (of the layers' weights): d hidden_size, V vocab_size (embed / lmHead: [V, d],
 * in row pieces past the binding limit).
 */

import type {RMSNorm} from '../../../layers/basic';
import type {Embedding, LMHead, ResidualBlock} from '../../../layers/model_layers';
import type {RecurrentGemmaConfig} from '../../config';

export interface DecodeModelView {
  readonly config: RecurrentGemmaConfig;
  /** The token embedding; also the LM head when `lmHead` is null (tied). */
  readonly embed: Embedding;
  /** The untied LM head, or null. */
  readonly lmHead: LMHead | null;
  readonly finalNorm: RMSNorm;
  /** The residual blocks in order (temporal_block: RecurrentBlock or LocalAttentionBlock). */
  readonly blocks: readonly ResidualBlock[];
}
