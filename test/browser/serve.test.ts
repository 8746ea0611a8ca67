/**
 * scripts/serve.js over real http (no browser): every response carries the cross-origin
 * isolation headers (COOP same-origin, COEP require-corp, CORP same-origin), whatever its status,
 * and files keep their MIME types; the wasm binaries the bundle fetches are served as
 * application/wasm. test/browser/browser.test.ts checks that Chromium reports the page isolated.
 */
import * as fs from 'fs';
import * as http from 'http';
import * as os from 'os';
import * as path from 'path';

const {startServer} = require('../../scripts/serve.js');

const WANT = {
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-embedder-policy': 'require-corp',
  'cross-origin-resource-policy': 'same-origin',
};

let tmp: string;
let server: {url: string; close(): Promise<void>};

/** A raw request (fetch would follow the redirect). */
function request(
  url: string,
  method = 'GET',
): Promise<{status: number; headers: http.IncomingHttpHeaders; body: string}> {
  return new Promise((resolve, reject) => {
    http
      .request(url, {method}, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c) => {
          body += c;
        });
        res.on('end', () => resolve({status: res.statusCode!, headers: res.headers, body}));
      })
      .on('error', reject)
      .end();
  });
}

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'griffin-serve-'));
  fs.mkdirSync(path.join(tmp, 'page'));
  fs.writeFileSync(path.join(tmp, 'page/index.html'), '<!doctype html><p>hi</p>');
  fs.writeFileSync(path.join(tmp, 'page/app.js'), 'export {};');
  fs.mkdirSync(path.join(tmp, 'mounted'));
  fs.writeFileSync(path.join(tmp, 'mounted/tfjs-backend-wasm-threaded-simd.wasm'), Buffer.from([0, 97, 115, 109]));
  server = await startServer({root: tmp, mounts: {'/bundle/': path.join(tmp, 'mounted')}});
});
afterAll(async () => {
  await server?.close();
  fs.rmSync(tmp, {recursive: true, force: true});
});

test('every response carries COOP, COEP and CORP: files, mounts, HEAD, redirects, 404, 403, 405', async () => {
  const cases: [string, string, number][] = [
    ['/page/', 'GET', 200],
    ['/page/app.js', 'GET', 200],
    ['/page/app.js', 'HEAD', 200],
    ['/bundle/tfjs-backend-wasm-threaded-simd.wasm', 'GET', 200],
    ['/page', 'GET', 301],
    ['/nothing-here.js', 'GET', 404],
    ['/..%2F..%2Fetc%2Fpasswd', 'GET', 403],
    ['/page/', 'POST', 405],
  ];
  for (const [p, method, status] of cases) {
    const r = await request(`${server.url}${p}`, method);
    expect({p, method, status: r.status}).toEqual({p, method, status});
    for (const [name, value] of Object.entries(WANT))
      expect({p, method, [name]: r.headers[name]}).toEqual({p, method, [name]: value});
  }
});

test('MIME types and bodies are unchanged', async () => {
  const page = await request(`${server.url}/page/`);
  expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
  expect(page.body).toBe('<!doctype html><p>hi</p>');
  expect((await request(`${server.url}/page/app.js`)).headers['content-type']).toBe('text/javascript; charset=utf-8');
  const wasm = await request(`${server.url}/bundle/tfjs-backend-wasm-threaded-simd.wasm`);
  expect(wasm.headers['content-type']).toBe('application/wasm');
  expect(wasm.headers['content-length']).toBe('4');
  expect((await request(`${server.url}/page`)).headers.location).toBe('/page/');
});
