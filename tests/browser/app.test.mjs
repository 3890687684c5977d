// The web app in headless Chromium (WebGPU on SwiftShader): load a model, run the agent, check
// the rendered trace against a scenario, check the page stayed responsive.
//
//   APP_URL=http://127.0.0.1:PORT/ MODEL_URL=... TOOLS_URL=http://127.0.0.1:PORT2 \
//   SCENARIO=fixture/scenario.json SHOT=mid.png SHOT_END=end.png node tests/browser/app.test.mjs
//
// Environment:
//   APP_URL (required)   the served dist/
//   MODEL_URL            model URL typed into #model-url (default: the page's default)
//   TOOLS_URL            tool server typed into #tools-url (default: the page's default)
//   QUERY                the query (default: SCENARIO's "query")
//   SCENARIO             scenario.json of tests/browser/make_fixture.rs; without it only the run
//                        itself is checked (it ends with `done:`, trace and JSON are well formed)
//   UNTIL                done (default) | first-token (press #stop after the first streamed
//                        token, expect `stopped`) | started (press #stop STOP_AFTER_MS, default
//                        20000, after #run: for models too slow for SwiftShader) | loaded
//   MODE, MAX_STEPS, MAX_NEW_TOKENS, RAW_PROMPTS=1   agent settings
//   TIMEOUT_MS           run timeout (default 600000); LOAD_TIMEOUT_MS (default 600000)
//   MAX_GAP_MS           largest allowed main-thread gap during the run (default 1000)
//   CHECK_CACHE=1        reload after loading and expect the model "from cache" (Cache API)
//   IMPORT_DIR           after a finished run, import IMPORT_DIR/planner through the Adapters row,
//                        reload, and expect the stored adapter installed and its native first step
//                        (IMPORT_DIR/expected.json)
//   AGENT_DIR            the shipped fixture agent's folder (agent/fixture of the served dist/):
//                        after the first load, #adapter-list must list its three adapters and
//                        export files equal to these
//   APP_SERVER_PID       after a finished run, kill this process (the page's server), reload and
//                        expect the app to open from the service worker; then clear the caches
//   SHOT, SHOT_END       screenshots: mid-run (first observation, or first token) and at the end
//   SHOT_LOADED          screenshot after the first load (speed estimate, storage)
//   SHOT_PREFILL         screenshot (viewport) while the first prefill is under way, if caught
//   JUDGE_WIDTH, JUDGE_TEMPERATURE   "why this step?" on the finished run's first planner step
//                        (default 4 samples at 1.2: distinct steps from the memorising fixture)
//   CHROMIUM             browser binary (default /usr/bin/chromium)
//   TRAIN=1              instead of an agent run, fine-tune with the "Fine-tune" panel: load the
//                        model, pick TRAIN_DATA (α-UMi JSON), type the settings of TRAIN_REFERENCE
//                        (train_reference.json of make_fixture.rs), train, stop after step
//                        STOP_AT_STEP (default 2) and resume, then check the losses fall and
//                        match the native ones (relative LOSS_RTOL, default 1e-3), that the
//                        adapter is in the Cache API in PEFT layout and downloads, and that the
//                        page stayed responsive; SHOT_TRAIN: the panel mid-training
//   DPO_PAIRS, DPO_REFERENCE  with TRAIN=1, first step-level DPO with the panel: objective DPO,
//                        pick DPO_PAIRS (dpo_pairs.jsonl of make_fixture.rs), type the settings of
//                        DPO_REFERENCE (dpo_reference.json), train (pausing after step
//                        DPO_STOP_AT_STEP, default 1, and resuming), then check the first loss is
//                        ln 2 (policy = reference), the losses and reward margins match native
//                        (LOSS_RTOL), the plot draws the margin, and the stored adapter is the
//                        role's installed one continued (its rank); SHOT_DPO: the panel at the end
import { chromium } from 'playwright-core';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const env = process.env;
const appUrl = env.APP_URL;
const until = env.UNTIL || 'done';
const runTimeout = Number(env.TIMEOUT_MS || 600000);
const loadTimeout = Number(env.LOAD_TIMEOUT_MS || 600000);
const maxGapAllowed = Number(env.MAX_GAP_MS || 1000);
const stopAfter = Number(env.STOP_AFTER_MS || 20000);
const scenario = env.SCENARIO ? JSON.parse(readFileSync(env.SCENARIO, 'utf8')) : null;
const query = env.QUERY || scenario?.query || 'What day of the week is 2026-12-25?';

const failures = [];
const fail = (msg) => { failures.push(msg); console.log('FAIL: ' + msg); };
const t0 = Date.now();
const log = (msg) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

if (!appUrl) { console.log('FAIL: APP_URL is not set'); process.exit(1); }

const udd = mkdtempSync(join(tmpdir(), 'umi-browser-'));
const args = ['--no-sandbox', '--disable-gpu-sandbox', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic',
  '--enable-unsafe-webgpu'];
const ctx = await chromium.launchPersistentContext(udd, {
  executablePath: env.CHROMIUM || '/usr/bin/chromium', headless: true, args,
  viewport: { width: 1100, height: 1000 },
});
const page = ctx.pages()[0] || await ctx.newPage();
const problems = [];
page.on('console', (m) => {
  if (m.type() === 'error' || m.type() === 'warning') {
    problems.push(`[console.${m.type()}] ${m.text()}`);
    console.log(`[console.${m.type()}] ${m.text()}`);
  }
});
page.on('pageerror', (e) => { problems.push(`[pageerror] ${e}`); console.log(`[pageerror] ${e}`); });
// the model worker's console (WebGPU, models and the agent run there)
page.on('worker', (w) => w.on('console', (m) => {
  if (m.type() === 'error' || m.type() === 'warning') {
    problems.push(`[worker console.${m.type()}] ${m.text()}`);
    console.log(`[worker console.${m.type()}] ${m.text()}`);
  }
}));

const text = (sel) => page.$eval(sel, (e) => e.textContent).catch(() => '');
const steps = () => page.$$eval('#trace .step', (els) => els.map((e) => ({
  role: e.dataset.role,
  title: e.querySelector('.who')?.textContent ?? '',
  text: e.querySelector('.text')?.textContent ?? '',
})));
const installHeartbeat = () => page.evaluate(() => {
  clearInterval(window.__umiBeat);
  window.__umiHb = { last: performance.now(), maxGap: 0, beats: 0 };
  window.__umiBeat = setInterval(() => {
    const now = performance.now();
    window.__umiHb.maxGap = Math.max(window.__umiHb.maxGap, now - window.__umiHb.last);
    window.__umiHb.last = now;
    window.__umiHb.beats += 1;
  }, 50);
});
// Every text #run-status shows, with its time (a MutationObserver: polling misses short ones).
// With `stopDuringPrefill`, the observer itself clicks #stop at the first planner prefill report
// between its first and last chunk, and records when.
const installStatusLog = (stopDuringPrefill = false) => page.evaluate((stop) => {
  const el = document.querySelector('#run-status');
  const log = { statuses: [], stopClickedAt: null };
  window.__umiStatus = log;
  const record = () => {
    const s = el.textContent;
    log.statuses.push({ t: performance.now(), s });
    const m = /planner prefill (\d+)\/(\d+) tokens/.exec(s);
    if (stop && log.stopClickedAt === null && m && Number(m[1]) > 0 && Number(m[1]) < Number(m[2])) {
      log.stopClickedAt = performance.now();
      document.querySelector('#stop').click();
    }
  };
  record();
  new MutationObserver(record).observe(el, { childList: true, characterData: true, subtree: true });
}, stopDuringPrefill);
const statusLog = () => page.evaluate(() => window.__umiStatus);
const heartbeat = () => page.evaluate(() => {
  // a gap still open counts too
  const hb = window.__umiHb;
  return { maxGap: Math.max(hb.maxGap, performance.now() - hb.last), beats: hb.beats };
});

let exitCode = 0;
try {
  // 1. the page and the GPU
  await page.goto(appUrl);
  await page.waitForFunction(() => {
    const t = document.querySelector('#gpu-info')?.textContent ?? '';
    return t.startsWith('GPU: ') && !t.includes('starting') || t.includes('missing');
  }, null, { timeout: 60000, polling: 100 });
  const gpuInfo = await text('#gpu-info');
  log(`gpu-info: ${gpuInfo}`);
  // a software adapter (SwiftShader here) is named as such, with the native alternative
  const warning = await page.$('#gpu-warning');
  if (/swiftshader|fallback adapter|llvmpipe/i.test(gpuInfo) !== (warning !== null)) {
    fail(`#gpu-warning should show exactly for a software adapter: gpu-info "${gpuInfo}", warning ${warning !== null}`);
  }
  if (gpuInfo.includes('missing')) throw new Error(`WebGPU is not available: ${gpuInfo}`);

  // 2. the model
  const loadModel = async () => {
    if (env.MODEL_URL) await page.fill('#model-url', env.MODEL_URL);
    await installHeartbeat();
    // every text #load-progress shows (a MutationObserver: the upload reports come fast)
    await page.evaluate(() => {
      const el = document.querySelector('#load-progress');
      window.__umiLoad = [];
      const record = () => {
        const s = el.textContent.trim();
        if (s && s !== window.__umiLoad.at(-1)) window.__umiLoad.push(s);
      };
      new MutationObserver(record).observe(el, { childList: true, characterData: true, subtree: true });
    });
    const loadStart = Date.now();
    await page.click('#load-model');
    let lastProgress = '';
    let status;
    for (;;) {
      status = await text('#model-status');
      if (status.startsWith('ready')) { log(`model-status: ${status}`); break; }
      if (status.startsWith('error')) throw new Error(`loading the model failed: ${status}`);
      if (Date.now() - loadStart > loadTimeout) throw new Error(`the model did not load in ${loadTimeout} ms (${status})`);
      const p = (await text('#load-progress')).trim();
      const stage = p.replace(/[\d.]+/g, '#'); // log each stage / file once, not every MiB
      if (p && stage !== lastProgress) log(`load-progress: ${p}`);
      lastProgress = stage;
      await sleep(200);
    }
    checkLoadProgress(await page.evaluate(() => window.__umiLoad));
    const loadHb = await heartbeat();
    log(`model loaded in ${((Date.now() - loadStart) / 1000).toFixed(1)} s; largest main-thread gap while loading: ${loadHb.maxGap.toFixed(0)} ms (informational)`);
    // the load measured the model's speed here, and says what a step will take
    const estimate = await page.$('#speed-estimate') ? await text('#speed-estimate') : '';
    if (!/prefill [\d.]+ tok\/s, decode [\d.]+ tok\/s; an agent step .* takes about [\d.]+ (s|min)/.test(estimate)) {
      fail(`#speed-estimate does not give the measured speed and a step's time: "${estimate}"`);
    } else {
      log(`speed-estimate: ${estimate}`);
    }
    // on a software adapter the warning carries the estimate too
    if (await page.$('#gpu-warning') && !(await text('#gpu-warning')).includes('measured on this adapter')) {
      fail(`#gpu-warning lacks the measured estimate: "${await text('#gpu-warning')}"`);
    }
    return status;
  };
  const first = await loadModel();
  if (env.SHOT_LOADED) { await page.screenshot({ path: env.SHOT_LOADED, fullPage: true }); log(`loaded screenshot: ${env.SHOT_LOADED}`); }
  if (env.EXPECT_STATUS && !first.includes(env.EXPECT_STATUS)) fail(`the model status should say "${env.EXPECT_STATUS}": ${first}`);
  if (env.AGENT_DIR) {
    for (const role of ['planner', 'caller', 'summarizer']) {
      await checkExport(role, 'shipped', join(env.AGENT_DIR, role));
    }
  }
  if (env.CHECK_CACHE === '1') {
    // a second visit reads the model from the Cache API
    if (first.includes('from cache')) fail('the first load already says "from cache" (stale browser profile?)');
    await page.reload();
    await page.waitForFunction(() => (document.querySelector('#gpu-info')?.textContent ?? '').includes('largest'), null, { timeout: 60000 });
    const second = await loadModel();
    if (!second.includes('from cache')) fail(`after a reload the model did not come from the cache: ${second}`);
  }
  if (until === 'loaded') throw 'done';
  if (env.TRAIN === '1') {
    if (env.DPO_PAIRS) await fineTuneDpo();
    await fineTune();
    throw 'done';
  }

  // 3. the run
  if (env.TOOLS_URL) await page.fill('#tools-url', env.TOOLS_URL);
  await page.fill('#query', query);
  if (env.MODE) await page.selectOption('#mode', env.MODE);
  if (env.MAX_STEPS) await page.fill('#max-steps', env.MAX_STEPS);
  if (env.MAX_NEW_TOKENS) await page.fill('#max-new-tokens', env.MAX_NEW_TOKENS);
  if (env.RAW_PROMPTS === '1') await page.check('#raw-prompts');
  await installHeartbeat();
  await installStatusLog();
  const runStart = Date.now();
  await page.click('#run');
  let midShot = false;
  let prefillShot = false;
  let status = '';
  let lastLogged = '';
  for (;;) {
    status = await text('#run-status');
    const s = await steps();
    const summary = s.map((x) => x.role).join(',');
    if (summary !== lastLogged) { log(`trace: ${summary || '(empty)'} | ${status} | ${await text('#tok-s')}`); lastLogged = summary; }
    const firstToken = s.length > 0 && s[0].text.length > 0;
    const pf = /prefill (\d+)\/(\d+) tokens/.exec(status);
    if (env.SHOT_PREFILL && !prefillShot && pf && Number(pf[1]) > 0 && Number(pf[1]) < Number(pf[2])) {
      prefillShot = true;
      await page.screenshot({ path: env.SHOT_PREFILL });
      log(`prefill screenshot (${status}): ${env.SHOT_PREFILL}`);
    }
    const shotNow = until === 'first-token' ? firstToken
      : until === 'started' ? Date.now() - runStart > stopAfter
        : s.some((x) => x.role === 'observation');
    if (shotNow && !midShot) {
      midShot = true;
      if (env.SHOT) { await page.screenshot({ path: env.SHOT, fullPage: true }); log(`mid-run screenshot: ${env.SHOT}`); }
      if (until !== 'done') {
        if (!status.startsWith('running')) fail(`expected the run to be running, #run-status is "${status}"`);
        await page.click('#stop');
        log(`clicked #stop (status was "${status}")`);
      }
    }
    if (/^(done:|error:|stopped)/.test(status)) break;
    if (Date.now() - runStart > runTimeout) throw new Error(`the run did not finish in ${runTimeout} ms (status: ${status})`);
    await sleep(250);
  }
  const runHb = await heartbeat();
  const runSecs = (Date.now() - runStart) / 1000;
  log(`run ended after ${runSecs.toFixed(1)} s: ${status}; ${await text('#tok-s')}`);
  log(`largest main-thread gap during the run: ${runHb.maxGap.toFixed(0)} ms over ${runHb.beats} beats of 50 ms (limit ${maxGapAllowed} ms)`);
  if (runHb.maxGap > maxGapAllowed) fail(`the page froze: a ${runHb.maxGap.toFixed(0)} ms gap between 50 ms timer beats during the run`);
  if (env.SHOT && !midShot) { await page.screenshot({ path: env.SHOT, fullPage: true }); log(`mid-run screenshot taken at the end (no observation appeared): ${env.SHOT}`); }

  const trace = await steps();
  console.log('---- trace ----');
  for (const s of trace) console.log(`[${s.role}] ${s.title.trim()}: ${s.text.replace(/\n/g, ' | ').slice(0, 300)}`);
  console.log('---------------');

  // 4. checks
  if (until !== 'done') {
    if (status !== 'stopped') fail(`expected #run-status "stopped" after #stop, got "${status}"`);
  } else if (!status.startsWith('done:')) {
    fail(`the run did not finish: #run-status is "${status}"`);
  } else {
    const json = await text('#trajectory-json');
    let record = null;
    try { record = JSON.parse(json); } catch (e) { fail(`#trajectory-json is not JSON: ${e.message}`); }
    if (record) {
      if (!Array.isArray(record.tools) || record.tools.length === 0) fail('trajectory JSON: "tools" is empty');
      if (record.instruction !== query) fail(`trajectory JSON: instruction is ${JSON.stringify(record.instruction)}, expected the query`);
      if (!Array.isArray(record.conversations) || record.conversations[0]?.from !== 'user') fail('trajectory JSON: conversations do not start with the user turn');
      if (`done: ${record.stop_reason}` !== status) fail(`trajectory JSON: stop_reason ${record.stop_reason} does not match ${status}`);
      log(`trajectory JSON: ${record.conversations?.length} turns, stop_reason ${record.stop_reason}`);
    }
    if (trace.length === 0) fail('the trace is empty');
    if (scenario) checkScenario(trace, status, scenario);
    await checkWhyThisStep();
    await checkPrefillProgress();
    await checkStopDuringPrefill();
    await checkStorage();
    if (env.IMPORT_DIR) await checkImportedAdapter(loadModel);
    if (env.APP_SERVER_PID) await checkOffline();
  }
} catch (e) {
  if (e !== 'done') fail(e instanceof Error ? e.message : String(e));
}

if (env.SHOT_END) { await page.screenshot({ path: env.SHOT_END, fullPage: true }).catch(() => {}); log(`end screenshot: ${env.SHOT_END}`); }
if (failures.length > 0) {
  console.log('---- page text ----\n' + await page.evaluate(() => document.body.innerText).catch(() => ''));
}
if (problems.length > 0) console.log(`---- ${problems.length} console errors / warnings / page errors (above) ----`);
await ctx.close();
rmSync(udd, { recursive: true, force: true });
if (failures.length > 0) {
  console.log(`\nbrowser test FAILED (${failures.length}):\n - ${failures.join('\n - ')}`);
  exitCode = 1;
} else {
  console.log(`\nbrowser test passed (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
}
process.exit(exitCode);

/**
 * The load went through its stages in order (download, parse, upload, warm-up), and the upload
 * moved: several percentages, rising, up to 100.
 */
function checkLoadProgress(texts) {
  const stages = ['download', 'parse', 'upload to GPU', 'warm-up'];
  const order = texts.map((t) => stages.findIndex((s) => t.startsWith(s))).filter((i) => i >= 0);
  const firsts = stages.map((_, i) => order.indexOf(i));
  const sorted = order.every((v, i) => i === 0 || v >= order[i - 1]);
  if (firsts.some((i) => i < 0) || !sorted) {
    fail(`the load should show each stage, in order (${stages.join(', ')}): ${JSON.stringify(texts.slice(0, 12))}`);
  }
  const upload = texts.map((t) => /^upload to GPU .*?: (\d+)%/.exec(t)).filter(Boolean).map((m) => Number(m[1]));
  const rising = upload.every((v, i) => i === 0 || v > upload[i - 1]);
  if (upload.length < 3 || !rising || upload.at(-1) !== 100) {
    fail(`the upload progress should rise to 100%: ${JSON.stringify(upload)}`);
  } else {
    log(`load progress: ${texts.length} texts, upload ${upload.length} steps ${upload[0]}% to ${upload.at(-1)}%`);
  }
}

/** The planner's first prefill reported its progress chunk by chunk, up to the whole prompt. */
async function checkPrefillProgress() {
  const reports = (await statusLog()).statuses
    .map((x) => /running: planner prefill (\d+)\/(\d+) tokens/.exec(x.s))
    .filter(Boolean)
    .map((m) => [Number(m[1]), Number(m[2])]);
  const total = reports[0]?.[1];
  const done = [...new Set(reports.filter(([, t]) => t === total).map(([d]) => d))];
  if (!total || done.length < 3 || done[0] !== 0 || !done.includes(total)) {
    fail(`the planner prefill did not report its progress (0, chunks, then all): ${JSON.stringify(reports.slice(0, 6))}`);
  } else {
    log(`planner prefill progress: ${done.length} reports, 0 to ${total} tokens`);
  }
}

/** A second run, stopped between two prefill chunks: the page says "stopped" within 2 s. */
async function checkStopDuringPrefill() {
  await installStatusLog(true);
  await page.click('#run');
  const start = Date.now();
  for (;;) {
    const log_ = await statusLog();
    const last = log_.statuses[log_.statuses.length - 1].s;
    if (log_.stopClickedAt !== null && last === 'stopped') {
      const stoppedAt = log_.statuses.find((x) => x.s === 'stopped' && x.t >= log_.stopClickedAt).t;
      const ms = stoppedAt - log_.stopClickedAt;
      const at = log_.statuses.filter((x) => x.t <= log_.stopClickedAt).pop().s;
      log(`stop during the prefill ("${at}"): stopped after ${ms.toFixed(0)} ms`);
      if (ms > 2000) fail(`Stop during the prefill took ${ms.toFixed(0)} ms (limit 2000)`);
      return;
    }
    if (/^(done:|error:)/.test(last)) {
      fail(`the second run ended ("${last}") without a prefill report between chunks to stop at`);
      return;
    }
    if (Date.now() - start > 120000) {
      fail(`the second run was not stopped within 120 s (status "${last}", stop clicked: ${log_.stopClickedAt !== null})`);
      return;
    }
    await sleep(100);
  }
}

/**
 * Imports IMPORT_DIR/planner (a PEFT adapter make_fixture.rs trained so that the planner's first
 * step names another date) through the Adapters row, reloads, loads the model again: the stored
 * adapter must be installed, and the planner's first step must be the one the adapter writes
 * natively (IMPORT_DIR/expected.json).
 */
async function checkImportedAdapter(loadModel) {
  const expected = JSON.parse(readFileSync(join(env.IMPORT_DIR, 'expected.json'), 'utf8'));
  const dir = join(env.IMPORT_DIR, 'planner');
  await page.selectOption('#adapter-role', 'planner');
  // from a folder URL (the served copy of IMPORT_DIR): a missing folder is a clear error, the
  // real one installs the adapter and the list exports the very files
  const importUrl = async (url) => {
    await page.fill('#adapter-url', url);
    await page.click('#adapter-url-import');
    await page.waitForFunction(() => /imported|error/.test(document.querySelector('#adapter-status')?.textContent ?? ''), null, { timeout: 60000 });
    return text('#adapter-status');
  };
  const missing = await importUrl(new URL('fixture/import/no-such-adapter', appUrl).href);
  if (!/error: .*no-such-adapter\/adapter_config\.json was not found \(HTTP 404\)/.test(missing)) {
    fail(`importing from a missing folder URL should say which file was not found: "${missing}"`);
  }
  const fromUrl = await importUrl(new URL('fixture/import/planner', appUrl).href);
  if (!fromUrl.includes('imported') || !fromUrl.includes('kept in this browser')) {
    fail(`the adapter was not imported from its folder URL: "${fromUrl}"`);
  } else {
    log(`adapter-status (URL): ${fromUrl}`);
    await checkExport('planner', 'browser', dir);
  }
  await page.setInputFiles('#adapter-files', [join(dir, 'adapter_config.json'), join(dir, 'adapter_model.safetensors')]);
  try {
    await page.waitForFunction(() => /imported|error/.test(document.querySelector('#adapter-status')?.textContent ?? ''), null, { timeout: 60000 });
  } catch (e) {
    fail(`the adapter import did not answer: ${e.message}`);
    return;
  }
  const imported = await text('#adapter-status');
  log(`adapter-status: ${imported}`);
  if (!imported.includes('imported') || !imported.includes('kept in this browser')) {
    fail(`the adapter was not imported and kept: "${imported}"`);
    return;
  }
  await page.reload();
  await page.waitForFunction(() => (document.querySelector('#gpu-info')?.textContent ?? '').includes('largest'), null, { timeout: 60000 });
  const status = await loadModel();
  if (!status.includes("planner: adapter from this browser's storage")) {
    fail(`after a reload the stored planner adapter was not installed: ${status}`);
    return;
  }
  // the list says so, and exports the very files imported
  await checkExport('planner', 'browser', dir);
  if (env.AGENT_DIR) await checkExport('caller', 'shipped', join(env.AGENT_DIR, 'caller'));
  if (env.TOOLS_URL) await page.fill('#tools-url', env.TOOLS_URL);
  if (env.RAW_PROMPTS === '1') await page.check('#raw-prompts');
  await page.fill('#query', expected.query);
  await page.click('#run');
  const start = Date.now();
  let planner = null;
  for (;;) {
    const s = await steps();
    // the planner's step is complete once the caller (or anything after it) appears
    if (s.length >= 2) { planner = s[0]; break; }
    const st = await text('#run-status');
    if (/^(done:|error:|stopped)/.test(st) || Date.now() - start > 120000) {
      fail(`the run with the imported adapter ended before its first step completed: ${st}`);
      return;
    }
    await sleep(100);
  }
  await page.click('#stop');
  await page.waitForFunction(() => /^(done:|error:|stopped)/.test(document.querySelector('#run-status')?.textContent ?? ''), null, { timeout: 30000 }).catch(() => {});
  if (planner.role !== 'planner' || !sameJsonOrContains(planner.text, expected.planner_text.replace(/\nNext: caller\.$/, ''))) {
    fail(`with the imported adapter the planner wrote ${JSON.stringify(planner.text)}, natively ${JSON.stringify(expected.planner_text)}`);
  } else {
    log(`imported adapter: the planner's first step is the native one (${JSON.stringify(planner.text)})`);
  }
}

/** The caches umi keeps (`li` per cache: data-cache, data-files), after a refresh. */
async function cacheList() {
  await page.click('#storage-refresh');
  await sleep(500);
  return page.$$eval('#storage-caches li', (lis) => Object.fromEntries(lis.map((li) => [li.dataset.cache, Number(li.dataset.files)])));
}

/** The Storage section lists the app shell and the model with their files, and the space used. */
/**
 * "why this step?" on the finished run's first planner step: the worker samples JUDGE_WIDTH
 * (default 4) alternatives at JUDGE_TEMPERATURE (default 1.2) and judges every ordered pair of
 * the distinct steps; the table lists the taken step first (and only it as taken), one judge
 * call per ordered pair, at most one win per call, and the samples spread over the rows.
 */
async function checkWhyThisStep() {
  if ((env.MODE || 'multi') !== 'multi') return;
  const first = '#trace .step[data-role="planner"]';
  const button = await page.$(`${first} button.why`);
  if (!button) { fail('the finished run\'s planner step has no "why this step?" button'); return; }
  const taken = (await page.$eval(`${first} pre.text`, (e) => e.textContent)).trim();
  // the memorising fixture repeats its step at the default temperature: sample hotter so that
  // distinct steps meet the judge
  const width = Number(env.JUDGE_WIDTH || 4);
  await page.fill('#judge-width', String(width));
  await page.fill('#judge-temperature', env.JUDGE_TEMPERATURE || '1.2');
  const started = Date.now();
  await button.click();
  try {
    await page.waitForSelector(`${first} .judgment, ${first} .judgment-error`, { timeout: runTimeout });
  } catch (e) { fail(`"why this step?" gave no judgment: ${e.message}`); return; }
  const error = await page.$eval(`${first}`, (el) => el.querySelector('.judgment-error')?.textContent ?? null);
  if (error !== null) { fail(`"why this step?" failed: ${error}`); return; }
  const j = await page.$eval(`${first} .judgment`, (el) => ({
    calls: Number(el.dataset.calls),
    summary: el.querySelector('.judgment-summary')?.textContent ?? '',
    rows: [...el.querySelectorAll('tr[data-wins]')].map((r) => ({
      taken: r.classList.contains('taken'), wins: Number(r.dataset.wins),
      sampled: Number(r.dataset.sampled), text: r.querySelector('td.text')?.textContent ?? '',
    })),
  }));
  const m = j.rows.length;
  log(`why this step: ${((Date.now() - started) / 1000).toFixed(1)} s; ${j.summary}; wins ${JSON.stringify(j.rows.map((r) => r.wins))}, sampled ${JSON.stringify(j.rows.map((r) => r.sampled))}`);
  if (m < 1 || !j.rows[0].taken || j.rows.slice(1).some((r) => r.taken)) fail(`the judgment table does not list the taken step first and alone: ${JSON.stringify(j.rows)}`);
  if (j.calls !== m * (m - 1)) fail(`${m} distinct steps need ${m * (m - 1)} judge calls (both orders), the table says ${j.calls}`);
  const wins = j.rows.reduce((a, r) => a + r.wins, 0);
  if (wins > j.calls) fail(`${wins} wins from ${j.calls} judge calls`);
  const sampled = j.rows.reduce((a, r) => a + r.sampled, 0);
  if (sampled !== width) fail(`the rows account for ${sampled} samples, not the ${width} drawn`);
  if (m < 2) fail(`all ${width} samples repeated the taken step, so nothing was judged: raise JUDGE_TEMPERATURE`);
  if (taken && m >= 1 && !j.rows[0].text.includes(taken)) fail(`the taken row "${j.rows[0].text}" is not the trace's step "${taken}"`);
  if (!/ranks \d+ of \d+/.test(j.summary)) fail(`the judgment summary gives no rank: "${j.summary}"`);
}

async function checkStorage() {
  const caches = await cacheList();
  const usage = await text('#storage-usage');
  log(`storage: ${usage}; caches ${JSON.stringify(caches)}`);
  if (!/\d+(\.\d+)? MB/.test(usage)) fail(`#storage-usage gives no size: "${usage}"`);
  if (!(caches['umi-models'] >= 1)) fail(`the Storage section does not list the cached model: ${JSON.stringify(caches)}`);
  if (!(caches['umi-app-shell'] >= 3)) fail(`the service worker has not cached the app shell (page, JS, wasm): ${JSON.stringify(caches)}`);
}

/**
 * A visit with the page server stopped (APP_SERVER_PID killed) still opens the app, from the
 * service worker's copy; then "Clear models and app shell" empties both caches.
 */
async function checkOffline() {
  process.kill(Number(env.APP_SERVER_PID));
  await sleep(300);
  await page.reload();
  try {
    // the worker's script and wasm come from the copy too: WebGPU comes up in it
    await page.waitForFunction(() => (document.querySelector('#gpu-info')?.textContent ?? '').includes('largest')
      && document.querySelector('#load-model') !== null, null, { timeout: 60000 });
    log(`with the page server stopped the app opened (gpu-info: ${await text('#gpu-info')})`);
  } catch (e) {
    fail(`with the page server stopped the app did not open: ${e.message}`);
    return;
  }
  await page.click('#storage-clear');
  await sleep(500);
  const caches = await cacheList();
  if (caches['umi-models'] || caches['umi-app-shell']) fail(`"Clear models and app shell" left ${JSON.stringify(caches)}`);
  else log(`cleared: ${JSON.stringify(caches)}`);
}

/** The DPO part of TRAIN=1 (see the header). */
async function fineTuneDpo() {
  const ref = JSON.parse(readFileSync(env.DPO_REFERENCE, 'utf8'));
  const rtol = Number(env.LOSS_RTOL || 1e-3);
  await page.selectOption('#train-role', ref.role);
  await page.selectOption('#train-objective', 'dpo');
  await page.fill('#train-beta', String(ref.beta));
  await page.setInputFiles('#train-file', env.DPO_PAIRS);
  await page.fill('#train-lr', String(ref.learning_rate));
  await page.fill('#train-steps', String(ref.steps));
  await page.fill('#train-max-len', String(ref.max_len));
  await installHeartbeat();
  const start = Date.now();
  await page.click('#train-start');
  await trainPausingOnce(ref.steps, Number(env.DPO_STOP_AT_STEP || 1), null);
  const secs = (Date.now() - start) / 1000;
  const hb = await heartbeat();
  log(`DPO done in ${secs.toFixed(1)} s; largest main-thread gap ${hb.maxGap.toFixed(0)} ms (limit ${maxGapAllowed} ms)`);
  if (hb.maxGap > maxGapAllowed) fail(`the page froze: a ${hb.maxGap.toFixed(0)} ms gap during DPO`);
  if (env.SHOT_DPO) { await page.locator('#finetune').screenshot({ path: env.SHOT_DPO }); log(`DPO panel screenshot: ${env.SHOT_DPO}`); }

  const rows = await page.$$eval('#train-losses li', (els) => els.map((e) => ({
    loss: Number(e.dataset.loss), margin: e.dataset.margin, accuracy: e.dataset.accuracy,
  })));
  const got = rows.map((r) => r.loss);
  console.log('---- DPO losses (step: browser / native / relative difference; reward margin browser / native) ----');
  let worst = 0;
  for (let i = 0; i < Math.max(got.length, ref.losses.length); i++) {
    const rel = Math.abs(got[i] - ref.losses[i]) / Math.abs(ref.losses[i]);
    worst = Math.max(worst, rel);
    console.log(`${i + 1}: ${got[i]} / ${ref.losses[i]} / ${rel.toExponential(2)}; margin ${rows[i]?.margin} / ${ref.rewards_margins[i]}`);
  }
  if (got.length !== ref.losses.length) fail(`${got.length} DPO losses in #train-losses, expected ${ref.losses.length}`);
  else if (!(worst <= rtol)) fail(`browser and native DPO losses differ by up to ${worst.toExponential(2)} (relative), more than ${rtol}`);
  if (!(Math.abs(got[0] - Math.LN2) <= rtol * Math.LN2)) fail(`the first DPO loss is ${got[0]}, not ln 2 (policy = reference)`);
  if (!(got[got.length - 1] < got[0])) fail(`the DPO loss did not go down: ${got[0]} → ${got[got.length - 1]}`);
  // margins: β·(log-ratio differences), ~0 while policy = reference, so compared absolutely
  // against the scale of the last native one
  const scale = Math.max(...ref.rewards_margins.map(Math.abs), 1e-3);
  rows.forEach((r, i) => {
    const m = Number(r.margin);
    if (r.margin === undefined || !Number.isFinite(m)) fail(`step ${i + 1} has no reward margin: ${r.margin}`);
    else if (Math.abs(m - ref.rewards_margins[i]) > 10 * rtol * scale) {
      fail(`step ${i + 1}: reward margin ${m}, native ${ref.rewards_margins[i]}`);
    }
    if (!(Number(r.accuracy) >= 0 && Number(r.accuracy) <= 1)) fail(`step ${i + 1}: reward accuracy ${r.accuracy}`);
  });
  const last = Number(rows.at(-1)?.margin);
  if (!(last > 0)) fail(`the last reward margin is ${last}: DPO did not favour the chosen steps`);
  const margin = await page.$eval('#train-plot polyline.margin', (e) => e.getAttribute('points')).catch(() => '');
  if (margin.trim().split(/\s+/).length !== got.length) fail(`#train-plot's margin curve has points "${margin}"`);
  const status = await text('#train-status');
  log(`DPO losses ${got.map((l) => l.toFixed(5)).join(', ')}; largest relative difference to native ${worst.toExponential(2)}; last margin ${last}`);

  // the adapter: the role's installed one continued (its rank, not the form's), stored
  const cfg = await page.evaluate(async (role) => {
    const c = await (await caches.open('umi-adapters')).match(`adapters/${role}/adapter_config.json`);
    return c ? c.json() : null;
  }, ref.role);
  if (!cfg) fail('the DPO adapter is not in the Cache API (umi-adapters)');
  else if (cfg.r !== ref.lora_r) fail(`the DPO adapter has r = ${cfg.r}, not the installed adapter's ${ref.lora_r}`);
  if (!(await text('#train-adapter')).includes('now runs with this adapter')) fail(`DPO did not install its adapter: ${await text('#train-adapter')}`);
  if (!(await exportedFile(ref.role, 'browser', 'adapter_config.json'))) fail(`#adapter-list does not list the DPO ${ref.role} adapter`);
  log(`DPO adapter stored and installed (r = ${cfg?.r}); status: ${status}`);
  await page.selectOption('#train-objective', 'sft');
}

/**
 * Waits for a started fine-tuning run to end, clicking #train-stop once `stopAt` steps are
 * listed and #train-resume once it paused (checking the pause held and installed the adapter);
 * fails when it ends with an error or after TRAIN_TIMEOUT_MS. `shotPath`: a screenshot of the
 * panel after the first step.
 */
async function trainPausingOnce(steps, stopAt, shotPath) {
  const trainTimeout = Number(env.TRAIN_TIMEOUT_MS || 600000);
  const start = Date.now();
  const losses = () => page.$$eval('#train-losses li', (els) => els.map((e) => Number(e.dataset.loss)));
  const status = () => text('#train-status');
  let stopped = false;
  let resumed = false;
  let shot = false;
  let last = '';
  let sawSpeed = false;
  for (;;) {
    // the losses before the status: a step's status (with its tok/s) is set with its loss, so
    // a loss seen here has its status seen too before the stop click below replaces it (read
    // the other way round, a step ending between the two reads hid its tok/s: CI, 2026-12-06)
    const l = await losses();
    const s = await status();
    if (/\d tok\/s/.test(s)) sawSpeed = true;
    if (s !== last) { log(`train-status: ${s}`); last = s; }
    if (s.startsWith('error')) throw new Error(`fine-tuning failed: ${s}`);
    if (!shot && l.length >= 1 && shotPath) {
      shot = true;
      await page.locator('#finetune').screenshot({ path: shotPath });
      log(`panel screenshot mid-training: ${shotPath}`);
    }
    if (!stopped && l.length >= stopAt) {
      stopped = true;
      await page.click('#train-stop');
      log(`clicked #train-stop after step ${l.length}`);
    }
    if (stopped && !resumed && s.startsWith('paused')) {
      const pausedAt = (await losses()).length;
      if (pausedAt >= steps) fail(`the run did not pause before its end (paused at step ${pausedAt})`);
      const adapter = await text('#train-adapter');
      if (!adapter.includes('now runs with this adapter')) fail(`pausing did not install the adapter: ${adapter}`);
      await sleep(500);
      if ((await losses()).length !== pausedAt) fail('steps went on after the pause');
      if (await page.isDisabled('#train-resume')) fail('#train-resume is disabled while paused');
      resumed = true;
      await page.click('#train-resume');
      log(`paused at step ${pausedAt}; clicked #train-resume`);
    }
    if (s.startsWith('done')) break;
    if (Date.now() - start > trainTimeout) throw new Error(`fine-tuning did not finish in ${trainTimeout} ms (${s})`);
    await sleep(250);
  }
  if (!resumed) fail('the run was never paused and resumed');
  if (!sawSpeed) fail('the status never showed tokens/s');
}

/** The TRAIN=1 check (see the header). */
async function fineTune() {
  const ref = JSON.parse(readFileSync(env.TRAIN_REFERENCE, 'utf8'));
  const rtol = Number(env.LOSS_RTOL || 1e-3);
  const stopAt = Number(env.STOP_AT_STEP || 2);
  await page.selectOption('#train-role', ref.role);
  await page.selectOption('#train-objective', 'sft');
  await page.selectOption('#train-source', 'file');
  await page.setInputFiles('#train-file', env.TRAIN_DATA);
  await page.fill('#train-rank', String(ref.rank));
  await page.fill('#train-alpha', String(ref.alpha));
  await page.fill('#train-dropout', String(ref.dropout));
  await page.fill('#train-lr', String(ref.learning_rate));
  await page.fill('#train-steps', String(ref.steps));
  await page.fill('#train-max-len', String(ref.max_len));
  await installHeartbeat();
  const start = Date.now();
  await page.click('#train-start');
  const losses = () => page.$$eval('#train-losses li', (els) => els.map((e) => Number(e.dataset.loss)));
  await trainPausingOnce(ref.steps, stopAt, env.SHOT_TRAIN);
  const secs = (Date.now() - start) / 1000;
  const hb = await heartbeat();
  log(`fine-tuning done in ${secs.toFixed(1)} s; largest main-thread gap ${hb.maxGap.toFixed(0)} ms (limit ${maxGapAllowed} ms)`);
  if (hb.maxGap > maxGapAllowed) fail(`the page froze: a ${hb.maxGap.toFixed(0)} ms gap during fine-tuning`);

  // the losses: falling, and those of the native run
  const got = await losses();
  const want = ref.losses;
  console.log('---- losses (step: browser / native / relative difference) ----');
  let worst = 0;
  for (let i = 0; i < Math.max(got.length, want.length); i++) {
    const rel = Math.abs(got[i] - want[i]) / Math.abs(want[i]);
    worst = Math.max(worst, rel);
    console.log(`${i + 1}: ${got[i]} / ${want[i]} / ${rel.toExponential(2)}`);
  }
  if (got.length !== want.length) fail(`${got.length} losses in #train-losses, expected ${want.length}`);
  else if (!(worst <= rtol)) fail(`browser and native losses differ by up to ${worst.toExponential(2)} (relative), more than ${rtol}`);
  if (!(got[got.length - 1] < got[0])) fail(`the loss did not go down: ${got[0]} → ${got[got.length - 1]}`);
  log(`losses ${got[0].toFixed(4)} → ${got[got.length - 1].toFixed(4)}; largest relative difference to native ${worst.toExponential(2)} (tolerance ${rtol})`);

  // the adapter: in the Cache API in PEFT layout, and downloadable
  const stored = await page.evaluate(async (role) => {
    const cache = await caches.open('umi-adapters');
    const cfg = await cache.match(`adapters/${role}/adapter_config.json`);
    const model = await cache.match(`adapters/${role}/adapter_model.safetensors`);
    if (!cfg || !model) return null;
    const bytes = new Uint8Array(await model.arrayBuffer());
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    const header = JSON.parse(new TextDecoder().decode(bytes.slice(8, 8 + n)));
    return { config: await cfg.json(), names: Object.keys(header), size: bytes.length };
  }, ref.role);
  if (!stored) fail('the adapter files are not in the Cache API (umi-adapters)');
  else {
    if (stored.config.peft_type !== 'LORA' || stored.config.r !== ref.rank || stored.config.lora_alpha !== ref.alpha) {
      fail(`adapter_config.json is not the run's: ${JSON.stringify(stored.config)}`);
    }
    const a = 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight';
    if (!stored.names.includes(a)) fail(`adapter_model.safetensors lacks ${a}: ${stored.names.slice(0, 4)}`);
    log(`cached adapter: ${stored.names.length - 1} tensors, ${stored.size} bytes, r=${stored.config.r}`);
  }
  const [download] = await Promise.all([page.waitForEvent('download', { timeout: 10000 }), page.click('#adapter-model-link')]);
  const name = download.suggestedFilename();
  if (name !== 'adapter_model.safetensors') fail(`the download is named ${name}`);
  log(`download: ${name}`);
  // the fine-tuned adapter is the role's adapter in use, exported from browser storage
  const listed = await exportedFile(ref.role, 'browser', 'adapter_model.safetensors');
  if (!listed || listed.length !== stored?.size) {
    fail(`#adapter-list does not export the fine-tuned ${ref.role} adapter (${listed?.length} bytes, stored ${stored?.size})`);
  } else {
    log(`adapter list: the fine-tuned ${ref.role} adapter, ${listed.length} bytes`);
  }
}

/**
 * The bytes #adapter-list exports as `file` for `role`, once it lists `role` with `origin`
 * (`null` when it does not within 30 s).
 */
async function exportedFile(role, origin, file) {
  const selector = `#adapter-list li[data-role="${role}"][data-origin="${origin}"] a.export[data-file="${file}"]`;
  try {
    await page.waitForSelector(selector, { timeout: 30000 });
  } catch {
    return null;
  }
  const b64 = await page.evaluate(async (sel) => {
    const href = document.querySelector(sel).href;
    const bytes = new Uint8Array(await (await fetch(href)).arrayBuffer());
    let s = '';
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return btoa(s);
  }, selector);
  return Buffer.from(b64, 'base64');
}

/** #adapter-list lists `role`'s adapter from `origin`, and its two export links give the files of `dir`. */
async function checkExport(role, origin, dir) {
  const sha = (b) => createHash('sha256').update(b).digest('hex');
  for (const file of ['adapter_config.json', 'adapter_model.safetensors']) {
    const got = await exportedFile(role, origin, file);
    const want = readFileSync(join(dir, file));
    if (!got) {
      const rows = await page.$$eval('#adapter-list li', (lis) => lis.map((li) => `${li.dataset.role}/${li.dataset.origin}`));
      fail(`#adapter-list has no ${origin} ${role} adapter exporting ${file}: ${JSON.stringify(rows)}`);
      return;
    }
    if (sha(got) !== sha(want)) {
      fail(`the exported ${role} ${file} (${got.length} bytes) is not ${join(dir, file)} (${want.length} bytes)`);
      return;
    }
  }
  log(`adapter list: ${role} from ${origin}, both files export byte-identical`);
}

/** JSON-equal when both parse, else whitespace-insensitive containment. */
function sameJsonOrContains(haystack, needle) {
  const norm = (s) => String(s).replace(/\s+/g, ' ').trim();
  try { if (JSON.stringify(JSON.parse(haystack)) === JSON.stringify(JSON.parse(needle))) return true; } catch {}
  return norm(haystack).includes(norm(needle));
}

function checkScenario(trace, status, sc) {
  const need = (cond, msg) => { if (!cond) fail(msg); };
  const of = (role) => trace.filter((s) => s.role === role);
  const planners = of('planner');
  need(planners.some((s) => sameJsonOrContains(s.text, sc.planner_rationale_1)),
    `no planner step contains rationale 1 ${JSON.stringify(sc.planner_rationale_1)}`);
  need(planners.some((s) => sameJsonOrContains(s.text, sc.planner_rationale_2)),
    `no planner step contains rationale 2 ${JSON.stringify(sc.planner_rationale_2)}`);
  const name = sc.action?.name;
  const input = typeof sc.action?.input === 'string' ? sc.action.input : JSON.stringify(sc.action?.input);
  need(of('caller').some((s) => {
    const m = /Action:\s*(.*)\nAction Input:\s*([\s\S]*)/.exec(s.text);
    return m && m[1].trim() === name && sameJsonOrContains(m[2], input);
  }), `no caller step with Action: ${name} and Action Input: ${input}`);
  need(of('observation').some((s) => sameJsonOrContains(s.text, sc.observation)),
    `no observation step with ${JSON.stringify(sc.observation)}`);
  need(of('summarizer').some((s) => sameJsonOrContains(s.text, sc.answer)),
    `no summarizer step with the answer ${JSON.stringify(sc.answer)}`);
  need(!trace.some((s) => s.role === 'error'), 'the trace has an error step');
  need(status === 'done: Conclusion', `#run-status is "${status}", expected "done: Conclusion"`);
  // the order of a two-step α-UMi run
  const order = trace.map((s) => s.role).join(',');
  need(order === 'planner,caller,observation,planner,summarizer',
    `trace roles are ${order}, expected planner,caller,observation,planner,summarizer`);
}
