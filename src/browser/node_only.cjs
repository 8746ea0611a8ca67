// What the browser bundle gets for the Node-only modules it must not carry (the `webgpu` npm
// package, os, readline, child_process, ...: scripts/build_browser.mjs maps them here). Loading
// it is harmless; using anything from it is a one-line error.
'use strict';
const fail = (name) => () => {
  throw new Error(`${name}: Node-only, not available in the browser bundle`);
};
module.exports = new Proxy(
  {},
  {
    get(_target, key) {
      if (key === '__esModule' || key === 'then' || typeof key === 'symbol') return undefined;
      return fail(String(key));
    },
  },
);
