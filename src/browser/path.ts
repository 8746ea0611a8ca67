/**
 * What the browser bundle gets for Node's `path` (scripts/build_browser.mjs maps it here):
 * POSIX join / dirname / basename / resolve on plain strings, which is all the package uses.
 *   import * as path from 'path';                     // in the bundle: this module
 *   join('models', 'web', '../tiny/model.json');      // 'models/tiny/model.json'
 *   dirname('/m/web/model.json');   basename('/m/web/model.json', '.json');   // '/m/web', 'model'
 */
export const sep = '/';

function normalize(p: string): string {
  const abs = p.startsWith('/');
  const out: string[] = [];
  for (const part of p.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..' && out.length > 0 && out[out.length - 1] !== '..') out.pop();
    else if (part !== '..' || !abs) out.push(part);
  }
  const s = out.join('/');
  return abs ? `/${s}` : s || '.';
}

export function join(...parts: string[]): string {
  return normalize(parts.filter((p) => p !== '').join('/'));
}

export function resolve(...parts: string[]): string {
  let p = '';
  for (const part of parts) p = part.startsWith('/') ? part : p === '' ? part : `${p}/${part}`;
  return normalize(p.startsWith('/') ? p : `/${p}`);
}

export function dirname(p: string): string {
  const i = p.replace(/\/+$/, '').lastIndexOf('/');
  return i < 0 ? '.' : i === 0 ? '/' : p.slice(0, i);
}

export function basename(p: string, ext?: string): string {
  const b = p.replace(/\/+$/, '').split('/').pop() ?? '';
  return ext != null && b.endsWith(ext) ? b.slice(0, -ext.length) : b;
}

export function extname(p: string): string {
  const b = basename(p),
    i = b.lastIndexOf('.');
  return i <= 0 ? '' : b.slice(i);
}

export default {sep, join, resolve, dirname, basename, extname};
