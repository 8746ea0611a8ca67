#!/usr/bin/env node
/**
 * A tiny static file server for the browser example and the browser tests: serves the repository
 * (or --root DIR) on localhost only, read-only, with the MIME types a module page needs.
 *   node scripts/serve.js [--port 8080] [--root DIR]     # then open http://localhost:8080/examples/browser/
 *   const {startServer} = require('./scripts/serve');    // in tests: {url, close}
 *
 * Extra folders can be mounted under a URL prefix (the tests serve converted models from a temp dir).
 *
 * Every response (errors and redirects too) carries ISOLATION_HEADERS, which make the page
 * cross-origin isolated (self.crossOriginIsolated === true): SharedArrayBuffer is available, so
 * tfjs-backend-wasm picks its threaded SIMD build (tfjs-backend-wasm-threaded-simd.wasm, next to
 * the bundle). Everything the example loads is same-origin, which require-corp allows.
 */

const fs = require('fs');
const http = require('http');
const path = require('path');

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.txt': 'text/plain; charset=utf-8',
  '.md': 'text/plain; charset=utf-8',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
};

/** Cross-origin isolation: COOP + COEP make the page isolated; CORP keeps our files same-origin only. */
const ISOLATION_HEADERS = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

/**
 * Starts serving. root: the folder served at '/'; mounts: {'/prefix/': folder}; port 0 picks a
 * free port. Resolves to {url, port, close()}.
 */
function startServer({root = path.join(__dirname, '..'), port = 0, mounts = {}, quiet = true} = {}) {
  const bases = Object.entries(mounts).map(([prefix, dir]) => [prefix.replace(/\/?$/, '/'), path.resolve(dir)]);
  const server = http.createServer((req, res) => {
    for (const [name, value] of Object.entries(ISOLATION_HEADERS)) res.setHeader(name, value);
    const send = (code, text) => {
      res.writeHead(code, {'Content-Type': 'text/plain; charset=utf-8'});
      res.end(text);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'GET only');
    let urlPath;
    try {
      urlPath = decodeURIComponent(new URL(req.url, 'http://localhost').pathname);
    } catch {
      return send(400, 'bad URL');
    }
    let dir = path.resolve(root),
      rel = urlPath;
    for (const [prefix, d] of bases) {
      if (urlPath.startsWith(prefix)) {
        dir = d;
        rel = urlPath.slice(prefix.length - 1);
        break;
      }
    }
    let file = path.join(dir, rel);
    if (file !== dir && !file.startsWith(dir + path.sep)) return send(403, 'outside the served folder');
    fs.stat(file, (err, st) => {
      if (!err && st.isDirectory()) {
        if (!urlPath.endsWith('/')) {
          res.writeHead(301, {Location: `${urlPath}/`});
          return res.end();
        }
        file = path.join(file, 'index.html');
        try {
          st = fs.statSync(file);
        } catch (e) {
          err = e;
        }
      }
      if (err || !st.isFile()) {
        if (!quiet) console.log(`404 ${urlPath}`);
        return send(404, `not found: ${urlPath}`);
      }
      res.writeHead(200, {
        'Content-Type': TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream',
        'Content-Length': st.size,
        'Cache-Control': 'no-cache',
      });
      if (req.method === 'HEAD') return res.end();
      fs.createReadStream(file).pipe(res);
      if (!quiet) console.log(`200 ${urlPath}`);
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      const p = server.address().port;
      resolve({
        url: `http://localhost:${p}`,
        port: p,
        close: () =>
          new Promise((r) => {
            server.closeAllConnections?.();
            server.close(() => r());
          }),
      });
    });
  });
}

module.exports = {startServer, ISOLATION_HEADERS};

if (require.main === module) {
  const arg = (name, def) => {
    const i = process.argv.indexOf(`--${name}`);
    return i >= 0 ? process.argv[i + 1] : def;
  };
  const port = Number(arg('port', '8080'));
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`serve: --port must be 0..65535, got ${arg('port')}`);
    process.exit(2);
  }
  const root = path.resolve(arg('root', path.join(__dirname, '..')));
  if (!fs.existsSync(root)) {
    console.error(`serve: --root ${root} does not exist`);
    process.exit(2);
  }
  startServer({root, port, quiet: !process.argv.includes('--verbose')}).then(
    ({url}) => {
      console.log(`serving ${root} at ${url}/ (example: ${url}/examples/browser/), cross-origin isolated (COOP/COEP)`);
    },
    (e) => {
      console.error(`serve: ${e.message}`);
      process.exit(1);
    },
  );
}
