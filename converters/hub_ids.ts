/**
 * What the Node and the browser Hub loaders share (converters/hub.ts downloads into Python's
 * cache; src/browser/hub.ts fetches /resolve/ URLs into the Cache API): their options, what a load
 * wants, their one-line error and the form of a Hub id. Nothing here touches the file system or
 * the network, so the browser bundle takes it as it is.
 *   const opts: HubOptions = {revision: 'main', offline: false};
 *   const id = looksLikeHubId('google/recurrentgemma-2b');   // true: owner/name
 */
import type {OnProgress} from '../src/util/progress';

export interface HubOptions {
  /** A branch, tag or commit hash (default 'main'). */
  revision?: string;
  /**
   * An access token (hf_...) for a gated or private repo; in Node the default is HF_TOKEN, else the
   * token file `huggingface-cli login` wrote (a page has no default).
   */
  token?: string;
  /** The Hub's address (default: in Node HF_ENDPOINT, else https://huggingface.co). */
  hubUrl?: string;
  /**
   * Node: the cache folder (default HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub).
   * Not used in a page (the Cache API is the cache).
   */
  cacheDir?: string;
  /** The cache only, no network (Node's default: HF_HUB_OFFLINE is 1/true/yes/on). */
  offline?: boolean;
  /** Bytes downloaded of the bytes to download ({unit: 'bytes', name: file}). */
  onProgress?: OnProgress;
}

/** Which files a load needs: the model's (config, weights, adapter files) and/or the tokenizer's. */
export interface HubWant {
  weights?: boolean;
  tokenizer?: boolean;
}

/** A Hub failure a user can act on (one line). */
export class HubError extends Error {}

/** A Hub model id of the form owner/name (the form this package takes; names as the Hub allows them). */
export const HUB_REPO_ID = /^[A-Za-z0-9][\w.-]*\/[A-Za-z0-9][\w.-]*$/;

/** Whether `source` has the form of a Hub id (owner/name, no '..', no trailing '.'). */
export function looksLikeHubId(source: string): boolean {
  return HUB_REPO_ID.test(source) && !source.includes('..') && !source.endsWith('.');
}
