// griffin-tfjs browser example: chat with a converted model (streamed, stoppable, the recurrent
// state kept between turns) and LoRA fine-tuning on pasted text with a live loss plot.
// Serve the repository (node scripts/serve.js) and open /examples/browser/ (see the README).
// window.griffinApp exposes the loaded objects for scripting and for test/browser.

const params = new URLSearchParams(location.search);
const bundleUrl = params.get('bundle') ?? '../../dist/browser/griffin.esm.js';
const $ = (id) => document.getElementById(id);

let G;
try {
  G = await import(bundleUrl);
} catch (e) {
  $('status').textContent = `cannot load the bundle ${bundleUrl} (run npm run build): ${e.message}`;
  $('status').dataset.state = 'error';
  throw e;
}
const {
  tf,
  RecurrentGemmaForCausalLM,
  GemmaTokenizer,
  GenerationState,
  Trainer,
  encodeChat,
  useBackend,
  setLoraTraining,
} = G;

// Lets the page paint and take clicks between tokens / steps (a resolved promise would not).
const breathe = () => new Promise((r) => setTimeout(r, 0));

const app = {
  G,
  tf,
  backend: null,
  model: null,
  tokenizer: null,
  state: null,
  lastToken: -1,
  generating: null,
  tune: {model: null, tokenizer: null, losses: [], trainer: null, stop: false},
  isolation: null,
  weights: null,
  ready: null,
};
window.griffinApp = app;

function setStatus(text, state = 'idle', el = $('status')) {
  el.textContent = text;
  el.dataset.state = state;
  el.classList.toggle('error', state === 'error');
}

const folderOf = (url) => (url.endsWith('/') || url.startsWith('indexeddb://') ? url : url.replace(/[^/]*$/, ''));
const tokenizerUrlFor = (modelUrl) =>
  params.get('tokenizer') ??
  (modelUrl.startsWith('indexeddb://')
    ? null
    : new URL('tokenizer.model', new URL(folderOf(modelUrl), location.href)).href);

/** `dtype`: how the weight matrices are held ('auto' keeps an export's own: int4 stays int4). */
async function loadModel(url, onProgress, dtype = 'float32') {
  const tokUrl = tokenizerUrlFor(url);
  if (tokUrl == null) throw new Error('an indexeddb:// model needs &tokenizer=URL');
  const [model, tokenizer] = await Promise.all([
    RecurrentGemmaForCausalLM.fromPretrained(url, {onProgress, dtype}),
    GemmaTokenizer.load(tokUrl),
  ]);
  return {model, tokenizer};
}

/** "154.9 kB", "1.23 GB". */
function formatBytes(n) {
  const [unit, div] = n >= 1e9 ? ['GB', 1e9] : n >= 1e6 ? ['MB', 1e6] : ['kB', 1e3];
  return `${(n / div).toFixed(n >= 1e9 ? 2 : 1)} ${unit}`;
}

/** What the loaded weights hold and take on the backend: shown next to the status, and in app.weights. */
function showWeights(model) {
  const spec = model.compact;
  const dtype =
    spec == null
      ? 'float32'
      : spec.dtype === 'int4'
        ? `int4 (group ${spec.groupSize}${spec.zeroPoints ? ', zero points' : ''})`
        : spec.dtype;
  app.weights = {dtype: model.weightDtype, spec, bytes: model.weightBytes()};
  $('weights').textContent = `${dtype} weights: ${formatBytes(app.weights.bytes)}`;
  $('weights').title =
    `${app.weights.bytes} bytes on the ${app.backend} backend (packed matrices at their packed size)`;
}

// ---- backend and chat model ----

async function start() {
  const wanted = $('backend-choice').value || undefined;
  setStatus('starting backend', 'loading');
  app.backend = await useBackend(wanted);
  $('backend').textContent = app.backend;
  await showIsolation();
  await loadChatModel($('model-url').value);
}

/**
 * Next to the backend: whether the page is cross-origin isolated (scripts/serve.js sends COOP and
 * COEP), which SharedArrayBuffer and so the wasm backend's threaded SIMD build need; on wasm, that
 * build and its thread count. Also in app.isolation, for scripting and tests.
 */
async function showIsolation() {
  const isolated = self.crossOriginIsolated === true;
  const info = {crossOriginIsolated: isolated, wasmBuild: null, wasmThreads: null};
  let text = isolated ? 'cross-origin isolated' : 'not cross-origin isolated';
  if (app.backend === 'wasm') {
    const [simd, threads] = await Promise.all([
      tf.env().getAsync('WASM_HAS_SIMD_SUPPORT'),
      tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT'),
    ]);
    info.wasmBuild = simd && threads ? 'threaded-simd' : simd ? 'simd' : 'plain';
    info.wasmThreads = tf.backend().wasm?.tfjs?.getThreadsCount?.() ?? null;
    text += `; ${info.wasmBuild} build${info.wasmThreads == null ? '' : `, ${info.wasmThreads} thread${info.wasmThreads === 1 ? '' : 's'}`}`;
  }
  app.isolation = info;
  $('isolation').textContent = `(${text})`;
  $('isolation').dataset.isolated = String(isolated);
  $('isolation').title = isolated
    ? 'SharedArrayBuffer available: wasm can use threads'
    : 'serve the page with Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp (node scripts/serve.js does) for wasm threads';
}

async function loadChatModel(url) {
  setStatus('loading model', 'loading');
  $('progress').value = 0;
  app.model?.dispose();
  app.model = null;
  resetChat();
  const t0 = performance.now();
  const {model, tokenizer} = await loadModel(
    url,
    (p) => {
      $('progress').value = p.total ? p.loaded / p.total : 0;
    },
    $('dtype').value || 'auto',
  );
  app.model = model;
  app.tokenizer = tokenizer;
  $('progress').value = 1;
  showWeights(model);
  const params_ = model.countParams();
  setStatus(
    `ready: ${(params_ / 1e6).toFixed(2)}M parameters, loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    'ready',
  );
  for (const id of ['send', 'reset', 'ft-train']) $(id).disabled = false;
}

/** The ids of a text (BOS + its tokens) and its logits [t, V] as one flat array; for scripting and tests. */
app.logits = async (text) => {
  const ids = app.tokenizer.encode(text);
  const out = app.model.forward({inputIds: [ids]});
  try {
    return {ids, logits: Array.from(await out.logits.data())};
  } finally {
    out.logits.dispose();
  }
};

function appendTurn(role, text) {
  const div = document.createElement('div');
  div.className = `turn-${role}`;
  div.textContent = role === 'user' ? `> ${text}` : text;
  $('transcript').append(div);
  $('transcript').scrollTop = $('transcript').scrollHeight;
  return div;
}

async function send() {
  const text = $('prompt').value.trim();
  if (text === '' || app.generating) return;
  const tok = app.tokenizer,
    useTemplate = $('use-template').checked;
  const first = app.state == null;
  let ids;
  if (!useTemplate) {
    ids = tok.encode(text, {addBos: first});
  } else if (tok.startOfTurnId < 0) {
    throw new Error('the tokenizer has no <start_of_turn>/<end_of_turn>: untick "chat template"');
  } else {
    const userTurn = encodeChat(tok, [{role: 'user', content: text}], {addGenerationPrompt: true});
    // Later turns go onto the kept state: close the model's turn, then the new turn without a BOS.
    ids = first
      ? userTurn
      : [
          ...(app.lastToken === tok.endOfTurnId ? [] : [tok.endOfTurnId]),
          ...tok.encode('\n', {addBos: false}),
          ...userTurn.slice(1),
        ];
  }
  app.state ??= GenerationState.empty(app.model, 1);
  $('prompt').value = '';
  appendTurn('user', text);
  const out = appendTurn('model', '');
  out.id = 'output';
  document.querySelectorAll('[id=output]').forEach((el) => {
    if (el !== out) el.removeAttribute('id');
  });
  const ac = new AbortController();
  app.generating = ac;
  $('send').disabled = true;
  $('stop').disabled = false;
  $('reset').disabled = true;
  $('load').disabled = true;
  setStatus('generating', 'generating');
  const t0 = performance.now();
  let t1 = t0,
    n = 0;
  try {
    for await (const ev of app.model.stream([ids], {
      tokenizer: tok,
      state: app.state,
      signal: ac.signal,
      maxNewTokens: Number($('max-tokens').value),
      temperature: Number($('temperature').value),
      seed: $('seed').value === '' ? Date.now() % 1e9 : Number($('seed').value),
    })) {
      if (n === 0) t1 = performance.now();
      n++;
      app.lastToken = ev.tokenId;
      if (ev.text) out.textContent += ev.text;
      const rate = n > 1 ? ((n - 1) / ((performance.now() - t1) / 1000)).toFixed(1) : '-';
      $('tps').textContent =
        `${n} tokens, ${rate} tokens/s (prompt ${ids.length} tokens in ${((t1 - t0) / 1000).toFixed(2)} s)`;
      $('transcript').scrollTop = $('transcript').scrollHeight;
      await breathe();
    }
    $('context').textContent = String(app.state.positions[0]);
    setStatus(ac.signal.aborted ? 'stopped' : 'done', 'done');
  } finally {
    app.generating = null;
    $('send').disabled = false;
    $('stop').disabled = true;
    $('reset').disabled = false;
    $('load').disabled = false;
  }
}

function resetChat() {
  app.state?.dispose();
  app.state = null;
  app.lastToken = -1;
  $('transcript').textContent = '';
  $('context').textContent = '0';
}

// ---- fine-tuning ----

function plotLoss() {
  const c = $('ft-loss'),
    g = c.getContext('2d'),
    losses = app.tune.losses;
  g.clearRect(0, 0, c.width, c.height);
  g.fillStyle = '#666';
  g.font = '11px sans-serif';
  if (losses.length === 0) return;
  const max = Math.max(...losses),
    min = Math.min(...losses, 0);
  const n = Math.max(Number($('ft-steps').value), losses.length);
  const x = (i) => 30 + (i / Math.max(n - 1, 1)) * (c.width - 40);
  const y = (v) => 10 + (1 - (v - min) / (max - min || 1)) * (c.height - 30);
  g.fillText(max.toFixed(2), 0, 14);
  g.fillText(min.toFixed(2), 0, c.height - 18);
  g.fillText('step', c.width - 30, c.height - 4);
  g.strokeStyle = '#1a73e8';
  g.lineWidth = 2;
  g.beginPath();
  losses.forEach((v, i) => (i === 0 ? g.moveTo(x(i), y(v)) : g.lineTo(x(i), y(v))));
  g.stroke();
}

/** Chunks of the pasted text as training examples: BOS + up to seqLen - 1 tokens, every token a target. */
function examplesFrom(text, tok, seqLen = 64) {
  const ids = tok.encode(text, {addBos: false});
  if (ids.length < 2) throw new Error('paste some text to train on (at least two tokens)');
  const out = [];
  for (let i = 0; i < ids.length; i += seqLen - 1) {
    const row = [tok.bosId, ...ids.slice(i, i + seqLen - 1)];
    if (row.length >= 2) out.push({ids: row, labels: row, where: `pasted text, chunk ${out.length + 1}`});
  }
  return out;
}

async function train() {
  const st = $('ft-status');
  $('ft-train').disabled = true;
  $('ft-stop').disabled = false;
  $('ft-generate').disabled = true;
  app.tune.stop = false;
  try {
    setStatus('loading the model to tune', 'loading', st);
    app.tune.model?.dispose();
    app.tune.trainer?.dispose();
    const {model, tokenizer} = await loadModel($('ft-model-url').value);
    app.tune.model = model;
    app.tune.tokenizer = tokenizer;
    const examples = examplesFrom($('ft-text').value, tokenizer);
    const steps = Number($('ft-steps').value);
    const trainer = new Trainer(model, {
      train: examples,
      batchSize: Math.min(4, examples.length),
      steps,
      lr: Number($('ft-lr').value),
      warmupSteps: Math.min(3, steps - 1),
      seed: 0,
      lora: {rank: Number($('ft-rank').value), alpha: 2 * Number($('ft-rank').value)},
    });
    app.tune.trainer = trainer;
    app.tune.losses = [];
    plotLoss();
    for (let i = 0; i < steps && !app.tune.stop; i++) {
      const s = await trainer.trainStep();
      app.tune.losses.push(s.loss);
      plotLoss();
      setStatus(
        `step ${s.step}/${s.totalSteps}: loss ${s.loss.toFixed(3)}, ${Math.round(s.tokensPerSecond)} tokens/s`,
        'training',
        st,
      );
      await breathe();
    }
    setLoraTraining(model, false);
    const l = app.tune.losses;
    setStatus(
      `${app.tune.stop ? 'stopped' : 'trained'}: loss ${l[0].toFixed(3)} -> ${l[l.length - 1].toFixed(3)} in ${l.length} steps`,
      'trained',
      st,
    );
    $('ft-generate').disabled = false;
  } catch (e) {
    setStatus(e.message, 'error', st);
    throw e;
  } finally {
    $('ft-train').disabled = false;
    $('ft-stop').disabled = true;
  }
}

async function generateTuned() {
  const {model, tokenizer} = app.tune;
  const ids = tokenizer.encode($('ft-prompt').value);
  $('ft-output').textContent = $('ft-prompt').value;
  $('ft-generate').disabled = true;
  try {
    for await (const ev of model.stream([ids], {tokenizer, maxNewTokens: 32, temperature: 0})) {
      if (ev.text) $('ft-output').textContent += ev.text;
      await breathe();
    }
  } finally {
    $('ft-generate').disabled = false;
  }
}

// ---- wiring ----

const guard = (fn, el) => () =>
  fn().catch((e) => {
    console.error(e);
    setStatus(e.message, 'error', el);
  });
// Default models: one converted into ./model/ (see the README), else the shipped small model
// (assets/griffin-small, in the tfjs layout) when it has weights. Fine-tuning prefers the
// shipped small model.
const SHIPPED = '../../assets/griffin-small/';
const exists = (url) =>
  fetch(new URL('model.json', new URL(url, location.href)), {method: 'HEAD'}).then(
    (r) => r.ok,
    () => false,
  );
async function defaults() {
  const [local, shipped] = await Promise.all([exists('./model/'), exists(SHIPPED)]);
  $('model-url').value = params.get('model') ?? (local || !shipped ? './model/' : SHIPPED);
  $('ft-model-url').value = params.get('tuneModel') ?? (shipped ? SHIPPED : $('model-url').value);
}
$('backend-choice').value = params.get('backend') ?? '';
$('dtype').value = params.get('dtype') ?? 'auto';
$('load').onclick = guard(start);
$('send').onclick = guard(send);
$('prompt').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey) {
    e.preventDefault();
    guard(send)();
  }
});
$('stop').onclick = () => app.generating?.abort();
$('reset').onclick = resetChat;
$('ft-train').onclick = guard(train, $('ft-status'));
$('ft-stop').onclick = () => {
  app.tune.stop = true;
};
$('ft-generate').onclick = guard(generateTuned, $('ft-status'));
app.ready = defaults()
  .then(() => (params.get('autoload') === '0' ? undefined : start()))
  .catch((e) => {
    setStatus(e.message, 'error');
    throw e;
  });
app.ready.catch(() => {});
