// End-to-end browser tests of the web UI against a running `constellation serve` (API + UI, no worker;
// started by scripts/e2e.sh). Plain Node ESM + node:assert + playwright-core driving Debian's Chromium; one
// PASS/FAIL line per step.
//
// No worker runs unless this script starts one (`constellation worker --batch 1 --threads 1`), so nothing
// depends on how fast the binary computes tiles: a job stays queued until a worker is started, and stops
// moving once the worker has been stopped (SIGTERM: it finishes its one claimed tile and exits).
//
// Environment: E2E_BASE_URL (server), E2E_BIN (the constellation binary, for workers), E2E_DATABASE_URL (the
// server's database), E2E_SCENE (a 2048 px Sentinel-2 fixture folder), E2E_LARGE_SCENE (for the job cancelled
// from the UI; default E2E_SCENE, with 128 px tiles), E2E_ARTIFACTS (screenshots), E2E_CHROMIUM (default
// /usr/bin/chromium), E2E_PROFILE_DIR (a fresh Chromium user-data dir), E2E_WORKER_LOG (file the workers'
// output is appended to; default: discarded), E2E_WORKER_PIDS (file each worker's pid is appended to, so the
// caller can kill leftovers).
/* global process, Buffer, console, URL, fetch, setTimeout, clearTimeout, createImageBitmap, OffscreenCanvas, window, document, getComputedStyle */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { appendFileSync, closeSync, copyFileSync, mkdirSync, mkdtempSync, openSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const BASE = required('E2E_BASE_URL').replace(/\/$/, '');
const BIN = required('E2E_BIN');
const DATABASE_URL = required('E2E_DATABASE_URL');
const WORKER_LOG = process.env.E2E_WORKER_LOG;
const WORKER_PIDS = process.env.E2E_WORKER_PIDS;
const SCENE = required('E2E_SCENE');
const LARGE_SCENE = process.env.E2E_LARGE_SCENE || SCENE;
const ARTIFACTS = process.env.E2E_ARTIFACTS ?? new URL('./artifacts/', import.meta.url).pathname;
const EXECUTABLE = process.env.E2E_CHROMIUM ?? '/usr/bin/chromium';
const RECIPE = 'ndvi-sentinel2-l2a';
const BANDS = { red: 'B04.tif', nir: 'B08.tif', scl: 'SCL.tif' };
// Bounded waits, sized for a busy 2-core machine running a debug build.
const UI_TIMEOUT_MS = 20_000;
const JOB_TIMEOUT_MS = 90_000;
const LIVE_TIMEOUT_MS = 30_000;
const WORKER_EXIT_TIMEOUT_MS = 30_000;

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`error: ${name} is not set (run scripts/e2e.sh)`);
    process.exit(2);
  }
  return value;
}

/** Thrown from an `until` probe to stop waiting at once (e.g. the page shows an error). */
class Fatal extends Error {}

/** Polls `probe` until it returns a truthy value; throws `what` (with the last value seen) after `timeout_ms`. */
async function until(what, probe, timeout_ms = UI_TIMEOUT_MS, interval_ms = 250) {
  const deadline = Date.now() + timeout_ms;
  let last;
  for (;;) {
    try {
      last = await probe();
      if (last) return last;
    } catch (error) {
      if (error instanceof Fatal) throw error;
      last = `error: ${error.message.split('\n')[0]}`;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeout_ms / 1000} s waiting for ${what} (last seen: ${JSON.stringify(last)})`);
    }
    await new Promise((resolve) => setTimeout(resolve, interval_ms));
  }
}

async function api(method, path, body) {
  const response = await fetch(`${BASE}${path}`, {
    method,
    headers: body ? { 'content-type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  if (!response.ok) throw new Error(`${method} ${path} answered ${response.status}: ${text.slice(0, 300)}`);
  return json;
}

// --- workers: started and stopped by the steps; every one is killed when this script exits ---------------
const workers = new Set();

/** Starts `constellation worker` (one tile at a time, CPU); `extra` adds arguments such as `--once`. */
function startWorker(extra = []) {
  const args = ['worker', '--database-url', DATABASE_URL, '--batch', '1', '--threads', '1', '--backend', 'cpu', ...extra];
  const out = WORKER_LOG ? openSync(WORKER_LOG, 'a') : 'ignore';
  if (WORKER_LOG) appendFileSync(WORKER_LOG, `--- ${new Date().toISOString()} constellation ${args.slice(0, 1).concat(args.slice(3)).join(' ')}\n`);
  const child = spawn(BIN, args, { stdio: ['ignore', out, out] });
  if (typeof out === 'number') closeSync(out);
  child.exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      workers.delete(child);
      resolve({ code, signal });
    });
    child.once('error', (error) => {
      workers.delete(child);
      resolve({ code: null, signal: null, error });
    });
  });
  workers.add(child);
  if (WORKER_PIDS && child.pid) appendFileSync(WORKER_PIDS, `${child.pid}\n`);
  return child;
}

/** Waits for a worker to exit by itself (e.g. `--once`); kills it and throws after `timeout_ms`. */
async function workerExit(child, what, timeout_ms = WORKER_EXIT_TIMEOUT_MS) {
  let timer;
  const timeout = new Promise((resolve) => {
    timer = setTimeout(() => resolve(null), timeout_ms);
  });
  const result = await Promise.race([child.exited, timeout]);
  clearTimeout(timer);
  if (!result) {
    child.kill('SIGKILL');
    await child.exited;
    throw new Error(`worker ${child.pid} did not exit within ${timeout_ms / 1000} s ${what}`);
  }
  if (result.error) throw new Error(`worker could not be started: ${result.error.message}`);
  return result;
}

/** SIGTERM (the worker finishes its claimed tile, then exits) and waits for the exit. */
async function stopWorker(child) {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  return workerExit(child, 'after SIGTERM');
}

process.on('exit', () => {
  for (const child of workers) {
    try {
      child.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
});
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(130));

// ---------------------------------------------------------------------------------------------
mkdirSync(ARTIFACTS, { recursive: true });
for (const file of readdirSync(ARTIFACTS)) if (file.endsWith('.png')) rmSync(join(ARTIFACTS, file));
const profile = process.env.E2E_PROFILE_DIR ?? mkdtempSync(join(tmpdir(), 'constellation-e2e-profile-'));
mkdirSync(profile, { recursive: true });
const context = await chromium.launchPersistentContext(profile, {
  executablePath: EXECUTABLE,
  headless: true,
  viewport: { width: 1280, height: 900 },
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
// The page every step and helper drives; the phone steps (g-*) point it at a phone-sized page.
let page = context.pages()[0] ?? (await context.newPage());
page.setDefaultTimeout(UI_TIMEOUT_MS);
const browser_errors = [];
function collectErrors(target) {
  target.on('pageerror', (error) => browser_errors.push(`pageerror: ${error.message}`));
  target.on('console', (message) => {
    if (message.type() === 'error') browser_errors.push(`console: ${message.text()}`);
  });
}
collectErrors(page);
// Every output-tile response, to tell "no layer" from "the tile endpoint failed".
const tile_responses = [];
page.on('response', (response) => {
  if (/\/v1\/jobs\/[^/]+\/tiles\//.test(response.url())) {
    tile_responses.push({ url: response.url(), status: response.status(), type: response.headers()['content-type'] });
  }
});

const results = [];
const state = {};
let shot = 0;

async function screenshot(name) {
  shot += 1;
  const file = join(ARTIFACTS, `${String(shot).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true }).catch((error) => console.error(`  (screenshot ${file}: ${error.message})`));
  return file;
}

/** Runs one step; prints PASS/FAIL with notes. A step whose prerequisites failed is reported as SKIP (a failure). */
async function step(name, needs, body) {
  const started = Date.now();
  const notes = [];
  const missing = needs.filter((key) => state[key] === undefined);
  if (missing.length > 0) {
    results.push({ name, ok: false });
    console.log(`SKIP ${name}: needs ${missing.join(', ')} from an earlier step`);
    return;
  }
  try {
    await body((note) => notes.push(note));
    await screenshot(name);
    results.push({ name, ok: true });
    console.log(`PASS ${name} (${((Date.now() - started) / 1000).toFixed(1)} s)${notes.length ? ` — ${notes.join('; ')}` : ''}`);
  } catch (error) {
    const file = await screenshot(`${name}-FAILED`);
    results.push({ name, ok: false });
    console.log(`FAIL ${name} (${((Date.now() - started) / 1000).toFixed(1)} s): ${error.message.split('\n')[0]}`);
    for (const note of notes) console.log(`     note: ${note}`);
    console.log(`     screenshot: ${file}`);
  }
}

const header = () => page.locator('header.app-header');
/** Throws (stopping an `until`) when the page shows an error notice, with its text. */
async function noErrorNotice() {
  const alerts = page.locator('main [role="alert"]');
  if ((await alerts.count()) > 0) {
    throw new Fatal(`the page shows an error: ${(await alerts.allTextContents()).join(' | ').replace(/\s+/g, ' ').trim()}`);
  }
}
const connection = () => header().getByRole('status');
const h1 = () => page.getByRole('heading', { level: 1 });
const jobBadge = () => page.locator('.title-row .badge');
const progressText = () => page.getByRole('progressbar', { name: 'tile progress' }).getAttribute('aria-valuetext');

/** "3 / 4 tiles" → {done: 3, total: 4}; from the progress bar's accessible value text. */
async function progress() {
  const text = (await progressText()) ?? '';
  const match = /(\d+) \/ (\d+) tiles/.exec(text);
  return match ? { done: Number(match[1]), total: Number(match[2]), text } : null;
}

/**
 * Counts map pixels by the colour of the tile footprints (theme.ts STATE_COLORS at fill-opacity 0.45 over the
 * basemap): green = succeeded, blue = running. Reads a screenshot of the map region back in the page, since the
 * WebGL canvas keeps no drawing buffer to read from.
 */
async function mapColours() {
  const png = await page.getByRole('region', { name: 'tile footprints map' }).screenshot();
  return page.evaluate(async (base64) => {
    const blob = await (await fetch(`data:image/png;base64,${base64}`)).blob();
    const bitmap = await createImageBitmap(blob);
    const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
    const context2d = canvas.getContext('2d');
    context2d.drawImage(bitmap, 0, 0);
    const { data } = context2d.getImageData(0, 0, bitmap.width, bitmap.height);
    let green = 0;
    let blue = 0;
    let queued = 0;
    let cancelled = 0;
    const near = (r, g, b, [R, G, B]) => Math.abs(r - R) < 10 && Math.abs(g - G) < 10 && Math.abs(b - B) < 10;
    for (let i = 0; i < data.length; i += 4) {
      const [r, g, b] = [data[i], data[i + 1], data[i + 2]];
      if (g - Math.max(r, b) > 20) green += 1;
      else if (b - g > 25 && g - r > 20) blue += 1;
      // queued #8c959f and cancelled #3d444d at 0.45 over the land colour #eef0ea
      else if (near(r, g, b, [194, 199, 200])) queued += 1;
      else if (near(r, g, b, [158, 163, 163])) cancelled += 1;
    }
    return { green, blue, queued, cancelled, pixels: bitmap.width * bitmap.height };
  }, png.toString('base64'));
}

// --- a. jobs page and live connection ------------------------------------------------------------
await step('a-jobs-page-live', [], async (note) => {
  await page.goto(`${BASE}/`);
  await h1().filter({ hasText: /^Jobs$/ }).waitFor();
  await page.getByRole('region', { name: 'jobs table' }).waitFor();
  await until('the connection indicator to say "live"', async () => /\blive\b/.test((await connection().textContent()) ?? ''));
  assert.match((await connection().textContent()) ?? '', /Updates: live/);
  await until('the job list to load', async () => {
    await noErrorNotice();
    return (await page.getByText('No jobs match.').count()) === 1;
  });
  note('empty job list shown, header says "Updates: live"');
  state.live = true;
});

// --- b. submit through the form ----------------------------------------------------------------
await step('b-submit-form', [], async (note) => {
  await page.getByRole('navigation', { name: 'main' }).getByRole('link', { name: 'Submit' }).click();
  await h1().filter({ hasText: 'Submit a job' }).waitFor();
  const recipe = page.getByRole('combobox', { name: 'Recipe' });
  await until(`recipe ${RECIPE} in the list`, async () => (await recipe.locator(`option[value="${RECIPE}"]`).count()) === 1);
  await recipe.selectOption(RECIPE);
  // Picking the recipe makes one input row per role; fill each row's path by its role.
  const rows = page.getByRole('group', { name: /^input \d+$/ });
  await until('one input row per recipe role', async () => (await rows.count()) === 3);
  const roles = [];
  for (let i = 0; i < 3; i += 1) {
    const row = rows.nth(i);
    const role = await row.getByRole('textbox', { name: 'Role' }).inputValue();
    assert.ok(role in BANDS, `unexpected role "${role}" in input row ${i + 1}`);
    await row.getByRole('textbox', { name: 'Path' }).fill(`${SCENE}/${BANDS[role]}`);
    roles.push(role);
  }
  assert.deepEqual([...roles].sort(), ['nir', 'red', 'scl']);
  // The form offers 256–2048 px tiles; take 128 if it is ever offered, else the smallest (64 tiles of 256 px on 2048 px).
  const tile = page.getByRole('combobox', { name: 'Tile size (px)' });
  const sizes = await tile.locator('option').evaluateAll((options) => options.map((o) => o.value));
  const tile_px = sizes.includes('128') ? '128' : sizes.map(Number).sort((a, b) => a - b)[0].toString();
  await tile.selectOption(tile_px);
  if (tile_px !== '128') note(`tile size 128 is not offered by the form (options ${sizes.join('/')}); used ${tile_px}`);
  await screenshot('b-submit-filled');
  await page.getByRole('button', { name: 'Submit job' }).click();
  const id = await until(
    'the job detail page (#/jobs/<id>)',
    async () => /#\/jobs\/([0-9a-f-]{8,})$/.exec(new URL(page.url()).hash + '')?.[1],
    UI_TIMEOUT_MS,
  );
  await h1().filter({ hasText: `Job ${id.slice(0, 8)}` }).waitFor();
  const job = await api('GET', `/v1/jobs/${id}`);
  assert.equal(job.recipe, RECIPE);
  assert.equal(job.tile_px ?? Number(tile_px), Number(tile_px));
  assert.equal(job.state, 'queued', 'no worker runs, yet the job is not queued');
  note(`job ${id} created with ${job.tiles_total} tiles of ${tile_px} px`);
  state.job_id = id;
  state.tiles_total = job.tiles_total;
});

// --- c. live progress on the detail page, footprints on the map, output layer ------------------------
await step('c-live-progress-and-map', ['job_id'], async (note) => {
  const total = state.tiles_total;
  const id = state.job_id;
  // No reloads in this step: every change seen on the page came over the live connection.
  const badge = async () => ((await jobBadge().textContent()) ?? '').trim();
  const seen_progress = [];
  const seen_states = [];
  const record = async () => {
    const p = await progress().catch(() => null);
    const b = await badge();
    if (p && seen_progress.at(-1) !== p.done) seen_progress.push(p.done);
    if (seen_states.at(-1) !== b) seen_states.push(b);
    return { p, badge: b };
  };
  const fmt = (c) => `${c.green}g/${c.blue}b/${c.queued}q`;

  // 1. No worker: the job stays queued and every footprint is drawn in the queued grey.
  await page.locator('.map canvas.maplibregl-canvas').waitFor();
  const queued = await until(
    'every footprint drawn in the queued colour (no green, no blue)',
    async () => {
      await noErrorNotice();
      const { p, badge: b } = await record();
      if (b !== 'queued' || p?.done !== 0) return false;
      const c = await mapColours();
      return c.queued > 1000 && c.green === 0 && c.blue < 50 ? c : false;
    },
    UI_TIMEOUT_MS,
    500,
  );
  const states0 = (await api('GET', `/v1/jobs/${id}/footprints`)).features.map((f) => f.properties?.state);
  assert.equal(states0.length, total, 'footprint count');
  assert.ok(states0.every((s) => s === 'queued'), `footprint states before any worker: ${[...new Set(states0)].join(',')}`);
  note(`queued with no worker: map ${fmt(queued)} px`);
  await screenshot('c-job-queued');

  // 2. One worker until the first tiles are done, then stopped: the page shows the job part-way, and it stays there.
  const first = startWorker();
  let part_done;
  try {
    part_done = await until(
      'the first tiles to succeed',
      async () => {
        const job = await api('GET', `/v1/jobs/${id}`);
        return job.tiles_succeeded >= 2 ? job.tiles_succeeded : false;
      },
      JOB_TIMEOUT_MS,
      50,
    );
  } finally {
    await stopWorker(first);
  }
  const stopped_at = (await api('GET', `/v1/jobs/${id}`)).tiles_succeeded;
  assert.ok(stopped_at < total, `the worker finished all ${total} tiles before it could be stopped (raise the tile count)`);
  const part_way = await until(
    `the page to show ${stopped_at} / ${total} tiles and the map those tiles in green`,
    async () => {
      await noErrorNotice();
      const { p } = await record();
      if (p?.done !== stopped_at) return false;
      const c = await mapColours();
      return c.green > 0 && c.queued > 0 ? c : false;
    },
    LIVE_TIMEOUT_MS,
    250,
  );
  assert.ok(part_way.green < queued.queued, `part-way green area ${part_way.green} not below the whole job's ${queued.queued}`);
  await page.waitForTimeout(1000);
  const still = (await api('GET', `/v1/jobs/${id}`)).tiles_succeeded;
  assert.equal(still, stopped_at, 'tiles kept succeeding after the only worker exited');
  note(`worker stopped at ${stopped_at}/${total} (saw ${part_done} when stopping): map ${fmt(part_way)} px`);
  await screenshot('c-job-part-way');

  // 3. A worker again: the rest turns green live, sampled until the job succeeded.
  const map_samples = []; // [tiles done, green pixels]
  const second = startWorker();
  const sampling_started = Date.now();
  try {
    const deadline = Date.now() + JOB_TIMEOUT_MS;
    for (;;) {
      await noErrorNotice();
      const { p, badge: b } = await record();
      const c = await mapColours().catch(() => null);
      if (p && c) map_samples.push([p.done, c.green]);
      if (b === 'succeeded' && p?.done === total) break;
      if (b === 'failed' || b === 'cancelled') throw new Error(`job ended ${b} (progress ${p?.text})`);
      if (Date.now() > deadline) throw new Error(`job not succeeded after ${JOB_TIMEOUT_MS / 1000} s: badge "${b}", progress ${p?.text}`);
      await page.waitForTimeout(100);
    }
  } finally {
    await stopWorker(second);
  }
  // Once the job succeeded the output raster is drawn over the footprints: hide it to see them all green.
  const show_output = page.getByRole('group', { name: 'Output layer' }).getByRole('checkbox', { name: 'Show output' });
  await show_output.waitFor();
  if (await show_output.isChecked()) await show_output.uncheck();
  const final = await until(
    'every footprint drawn green (output layer hidden)',
    async () => {
      const c = await mapColours();
      return c.queued < queued.queued * 0.02 && c.blue < 50 && c.green > queued.queued * 0.95 ? c : false;
    },
    UI_TIMEOUT_MS,
    250,
  );
  await screenshot('c-job-succeeded-footprints');
  await show_output.check();
  const compact = map_samples
    .filter((sample, i) => i === 0 || sample[0] !== map_samples[i - 1][0] || sample[1] !== map_samples[i - 1][1])
    .map(([done, green]) => `${done}:${green}g`);
  note(`progress seen ${seen_progress.join('→')} of ${total}; badge ${seen_states.join('→')}`);
  note(`live map samples after restarting the worker (tiles done: green px) ${compact.join(' ')} (${map_samples.length} in ${((Date.now() - sampling_started) / 1000).toFixed(1)} s); final ${fmt(final)}`);
  // Seen without a reload: 0 with no worker, the count the first worker stopped at (possibly with a value on
  // the way there, as the updates arrive), then on to every tile; never backwards.
  const order = seen_progress.join('→');
  assert.equal(seen_progress[0], 0, `progress on the open page: ${order}`);
  assert.ok(seen_progress.includes(stopped_at), `progress on the open page never showed ${stopped_at}: ${order}`);
  assert.equal(seen_progress.at(-1), total, `progress on the open page: ${order}`);
  assert.ok(seen_progress.every((done, i) => i === 0 || done > seen_progress[i - 1]), `progress went backwards: ${order}`);
  assert.ok(final.green > part_way.green + 1000, `the green area did not grow: ${part_way.green} → ${final.green} px`);
  // The footprints cover the same area queued and succeeded: every one turned from grey to green. (The green
  // count is about 10 % larger: it also takes in the darker green outlines, which the queued-grey match misses.)
  const ratio = final.green / queued.queued;
  assert.ok(ratio > 0.95 && ratio < 1.25, `green area when done ${final.green} px vs queued area at first ${queued.queued} px`);
  const footprints = await api('GET', `/v1/jobs/${id}/footprints`);
  const tile_states = footprints.features.map((f) => f.properties?.state);
  assert.equal(tile_states.filter((s) => s === 'succeeded').length, total, `footprint states ${tile_states.join(',')}`);
  state.succeeded = true;
});

await step('c-output-layer', ['succeeded'], async (note) => {
  const failures = () => tile_responses.filter((r) => r.status !== 200);
  await page.getByRole('group', { name: 'Output layer' }).waitFor().catch(() => {
    throw new Error('the "Output layer" controls did not appear on the succeeded job');
  });
  // The legend's ramp appears once /tilejson answered; then MapLibre asks for tiles.
  const legend = page.getByRole('group', { name: 'map legend' });
  await until('the output legend ("output (viridis)")', async () => (await legend.getByText(/^output \(/).count()) === 1).catch(
    async (error) => {
      const tilejson = await fetch(`${BASE}/v1/jobs/${state.job_id}/tilejson`);
      throw new Error(`${error.message}; GET /tilejson answered ${tilejson.status}`);
    },
  );
  await until(
    'an output tile request',
    async () => tile_responses.some((r) => r.status === 200) || failures().length > 0,
    LIVE_TIMEOUT_MS,
  ).catch(() => {
    throw new Error('MapLibre requested no output tile within 30 s');
  });
  await page.waitForTimeout(1500); // let the first tiles paint
  const ok = tile_responses.filter((r) => r.status === 200);
  if (ok.length === 0) {
    const first = failures()[0];
    const reason = first.status === 501 ? ' (the output-tile endpoint is not implemented yet)' : '';
    throw new Error(`output tile endpoint answered ${first.status}${reason}: ${first.url.replace(BASE, '')}`);
  }
  assert.ok(
    ok.every((r) => r.type?.startsWith('image/png')),
    `tiles not image/png: ${[...new Set(ok.map((r) => r.type))].join(', ')}`,
  );
  // Render a tile directly too, so a blank layer is told apart from a missing one.
  const tile_url = new URL(ok[0].url);
  const direct = await fetch(`${BASE}${tile_url.pathname}${tile_url.search}`);
  const bytes = Buffer.from(await direct.arrayBuffer());
  assert.equal(direct.status, 200);
  assert.equal(bytes.subarray(1, 4).toString(), 'PNG');
  note(`legend shows "${(await legend.getByText(/^output \(/).textContent())?.trim()}"; ${ok.length} tile(s) 200 image/png, ${failures().length} other`);
});

// --- d. a large job submitted over the API, cancelled from the UI -----------------------------------
await step('d-cancel-from-ui', [], async (note) => {
  const created = await api('POST', '/v1/jobs', {
    recipe: RECIPE,
    inputs: Object.entries(BANDS).map(([role, file]) => ({ role, path: `${LARGE_SCENE}/${file}` })),
    tile_px: 128,
  });
  state.large_id = created.id;
  const total = created.tiles_total;
  note(`job ${created.id} (${total} tiles) created over the API`);
  // A worker for the first few tiles only, so the job is part-way (some tiles succeeded, none running) when cancelled.
  const worker = startWorker();
  try {
    await until(
      'the first tiles of the large job to succeed',
      async () => (await api('GET', `/v1/jobs/${created.id}`)).tiles_succeeded >= 3,
      JOB_TIMEOUT_MS,
      50,
    );
  } finally {
    await stopWorker(worker);
  }
  const done = (await api('GET', `/v1/jobs/${created.id}`)).tiles_succeeded;
  assert.ok(done < total, `the worker finished all ${total} tiles before it could be stopped`);

  await page.goto(`${BASE}/#/jobs/${created.id}`);
  await h1().filter({ hasText: `Job ${created.id.slice(0, 8)}` }).waitFor();
  const cancel = page.getByRole('group', { name: 'job actions' }).getByRole('button', { name: 'Cancel' });
  await until('the Cancel button to be enabled', () => cancel.isEnabled());
  await until(`the page to show ${done} / ${total} tiles`, async () => (await progress())?.done === done);
  const before = ((await jobBadge().textContent()) ?? '').trim();
  const p = await progress();
  assert.ok(['queued', 'running'].includes(before), `job already ${before} before cancel`);
  await screenshot('d-before-cancel');
  await cancel.click();
  await until('the job badge to say cancelled', async () => ((await jobBadge().textContent()) ?? '').trim() === 'cancelled', LIVE_TIMEOUT_MS);
  await until('the Retry button to be enabled', () =>
    page.getByRole('group', { name: 'job actions' }).getByRole('button', { name: 'Retry' }).isEnabled(),
  );
  const job = await api('GET', `/v1/jobs/${created.id}`);
  assert.equal(job.state, 'cancelled');
  assert.equal(job.tiles_succeeded, done, 'tiles succeeded changed although no worker ran');
  const counts_of = async () => {
    const counts = {};
    for (const f of (await api('GET', `/v1/jobs/${created.id}/footprints`)).features) {
      const s = f.properties?.state;
      counts[s] = (counts[s] ?? 0) + 1;
    }
    return counts;
  };
  const counts = await counts_of();
  assert.deepEqual(counts, { succeeded: done, cancelled: total - done }, 'footprint states after the cancel');
  note(`was ${before} at ${p?.text}; cancelled with ${job.tiles_succeeded}/${total} tiles done; footprints ${JSON.stringify(counts)}`);
  // Not required by this step, but worth knowing: do the unrun tiles turn "cancelled" on the map without a reload?
  await page.waitForTimeout(1000);
  const colours = await mapColours();
  note(`map pixels green ${colours.green}, queued-grey ${colours.queued}, cancelled-grey ${colours.cancelled}`);
  if (colours.cancelled < colours.queued) {
    console.log('WARN d-cancel-from-ui: the API says tiles are cancelled but the map still draws them as queued (not reloaded)');
  }
  // A worker started after the cancel finds nothing to do for this job (nor anything else) and exits.
  const after = startWorker(['--once']);
  const exit = await workerExit(after, 'with --once (nothing should be queued)');
  assert.equal(exit.code, 0, `worker --once exited with ${exit.code ?? exit.signal}`);
  const again = await api('GET', `/v1/jobs/${created.id}`);
  assert.equal(again.state, 'cancelled', 'the job is no longer cancelled after a worker ran');
  assert.equal(again.tiles_succeeded, done, 'a worker started after the cancel computed tiles of the cancelled job');
  assert.deepEqual(await counts_of(), counts, 'footprint states changed after a worker ran');
  note('a worker --once started after the cancel exited 0 and left the job as it was');
  state.cancelled_id = created.id;
});

// --- e. filters from the URL survive a reload --------------------------------------------------------
await step('e-url-filters', ['cancelled_id'], async (note) => {
  await page.goto(`${BASE}/#/jobs?state=cancelled&recipe=${RECIPE}`);
  await page.reload();
  await h1().filter({ hasText: /^Jobs$/ }).waitFor();
  const filters = page.getByRole('form', { name: 'job filters' });
  for (const s of ['queued', 'running', 'succeeded', 'failed', 'cancelled']) {
    const checked = await filters.getByRole('checkbox', { name: s, exact: true }).isChecked();
    assert.equal(checked, s === 'cancelled', `state checkbox "${s}" is ${checked ? '' : 'not '}checked`);
  }
  assert.equal(await filters.getByRole('combobox', { name: 'Recipe' }).inputValue(), RECIPE, 'recipe filter');
  const rows = page.getByRole('region', { name: 'jobs table' }).locator('tbody tr');
  await until('the filtered list to hold one job', async () => {
    await noErrorNotice();
    const busy = await page.locator('tbody[aria-busy="true"]').count();
    return busy === 0 && (await rows.count()) === 1 && (await rows.getByRole('link').count()) === 1;
  });
  const label = await rows.getByRole('checkbox').getAttribute('aria-label');
  assert.equal(label, `select job ${state.cancelled_id}`, 'the one row is not the cancelled job');
  assert.equal((await rows.locator('.badge').textContent())?.trim(), 'cancelled');
  assert.ok(new URL(page.url()).hash.includes('state=cancelled'));
  note('after reload: only "cancelled" checked, recipe filled, one row = the cancelled job');
});

// --- f. job detail: a long log paged through the API (and a live line at its end); a failed job's tiles -------
/** Runs SQL on the server's database (psql, as scripts/e2e.sh does); throws with psql's message on failure. */
function sql(statement) {
  const result = spawnSync('psql', ['-q', '-v', 'ON_ERROR_STOP=1', '-At', DATABASE_URL, '-c', statement], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`psql: ${(result.stderr || result.error?.message || '').trim()}`);
  return result.stdout.trim();
}

await step('f-log-paging', ['cancelled_id'], async (note) => {
  const id = state.cancelled_id;
  // 2300 stored lines: more than the 4 pages of 500 the view keeps, so paging on drops the first page.
  sql(`INSERT INTO log (job_id, level, message) SELECT '${id}', 'info', 'e2e line ' || g FROM generate_series(1, 2300) AS g ORDER BY g`);
  const all = [];
  for (let after = 0; ; ) {
    const page_items = (await api('GET', `/v1/jobs/${id}/logs?after=${after}&limit=1000`)).items;
    all.push(...page_items);
    if (page_items.length < 1000) break;
    after = page_items.at(-1).id;
  }
  const total = all.length;
  assert.ok(total >= 2300 && total <= 2400, `the job has ${total} log lines`);
  const log_urls = [];
  const on_request = (request) => {
    if (request.url().includes(`/v1/jobs/${id}/logs`)) log_urls.push(request.url().replace(BASE, ''));
  };
  page.on('request', on_request);
  try {
    await page.goto(`${BASE}/#/jobs/${id}`);
    await h1().filter({ hasText: `Job ${id.slice(0, 8)}` }).waitFor();
    const log = page.getByRole('log', { name: 'job log' });
    const status = page.locator('.log-status');
    const lines = log.locator('li');
    const newer = page.getByRole('button', { name: 'Load newer lines' });
    const older = page.getByRole('button', { name: 'Load older lines' });
    const showing = async (text) =>
      until(`the log to show "${text}"`, async () => {
        const alert = page.locator('section[aria-labelledby="logs-heading"] [role="alert"]');
        if ((await alert.count()) > 0) throw new Fatal(`the log shows an error: ${(await alert.first().textContent())?.trim()}`);
        return ((await status.textContent()) ?? '').trim() === text;
      });
    await showing('lines 1–500');
    assert.equal(await lines.count(), 500);
    assert.equal(await older.count(), 0, '"Load older lines" on the first page');
    assert.ok(((await lines.first().textContent()) ?? '').includes(all[0].message), 'the first line');
    for (let shown = 1000; shown <= 2000; shown += 500) {
      await newer.click();
      await showing(`lines 1–${shown}`);
    }
    assert.equal(await lines.count(), 2000);
    // A fifth page: the first is dropped; the view reaches the end and follows live lines.
    await newer.click();
    await showing(`lines 501–${total}; new lines appear as they are written`);
    assert.equal(await lines.count(), total - 500);
    assert.equal(await newer.count(), 0, '"Load newer lines" at the end of the log');
    assert.match(((await page.locator('.log-pager').first().textContent()) ?? ''), /500 earlier lines not shown/);
    assert.ok(((await lines.last().textContent()) ?? '').includes(all.at(-1).message), 'the last line');
    const afters = log_urls.map((url) => new URL(url, BASE).searchParams.get('after'));
    assert.deepEqual(
      afters,
      [null, ...[500, 1000, 1500, 2000].map((n) => String(all[n - 1].id))],
      `log requests ${log_urls.join(' ')}`,
    );
    assert.ok(log_urls.every((url) => url.includes('limit=501')), `log requests ${log_urls.join(' ')}`);
    // A line written now (as the server writes one: the line and its event in one statement) arrives live.
    sql(`WITH line AS (INSERT INTO log (job_id, task_id, level, message) VALUES ('${id}', NULL, 'warn', 'e2e live line') RETURNING id, job_id, task_id, level, message)
         INSERT INTO event (job_id, kind, payload) SELECT job_id, 'log', jsonb_build_object('id', id, 'task_id', task_id, 'level', level, 'message', message) FROM line`);
    await showing(`lines 501–${total + 1}; new lines appear as they are written`);
    assert.ok(((await lines.last().textContent()) ?? '').includes('e2e live line'), 'the live line is not last');
    const requests_before_older = log_urls.length;
    // Back: the dropped first page is read again; the window no longer reaches the end.
    await older.click();
    await showing('lines 1–2000');
    assert.equal(new URL(log_urls.at(-1), BASE).searchParams.get('after'), null, 'the first page is read from the start');
    assert.equal(log_urls.length, requests_before_older + 1, 'one request for the older page');
    assert.equal(await older.count(), 0);
    await newer.waitFor();
    note(`${total} stored lines: pages of 500 read with after=${afters.slice(1).join(',')}; the 5th dropped the 1st; a live line appended at the end; the 1st read again`);
  } finally {
    page.off('request', on_request);
  }
});

// A job whose input breaks after it was accepted: its first tile fails (one attempt allowed), the job fails and
// its other tiles end unrun. The page lists the failure with its error and counts the rest.
await step('f-failed-tiles', [], async (note) => {
  const scene = mkdtempSync(join(tmpdir(), 'constellation-e2e-broken-'));
  try {
    for (const file of Object.values(BANDS)) copyFileSync(join(SCENE, file), join(scene, file));
    const created = await api('POST', '/v1/jobs', {
      recipe: RECIPE,
      inputs: Object.entries(BANDS).map(([role, file]) => ({ role, path: join(scene, file) })),
      tile_px: 256,
      max_attempts: 1,
    });
    writeFileSync(join(scene, BANDS.red), 'not a GeoTIFF any more');
    const worker = startWorker(['--once']);
    const exit = await workerExit(worker, 'with --once on a job whose input broke', JOB_TIMEOUT_MS);
    assert.equal(exit.code, 0, `worker --once exited with ${exit.code ?? exit.signal}`);
    const job = await api('GET', `/v1/jobs/${created.id}`);
    assert.equal(job.state, 'failed', `the job with a broken input is ${job.state}`);
    const tasks = (await api('GET', `/v1/jobs/${created.id}/tasks`)).items;
    const failed = tasks.filter((t) => t.state === 'failed');
    const cancelled_tiles = tasks.filter((t) => t.state === 'cancelled' && t.kind === 'tile').length;
    assert.ok(failed.length >= 1 && cancelled_tiles >= 1, `task states ${JSON.stringify(tasks.map((t) => t.state))}`);

    await page.goto(`${BASE}/#/jobs/${created.id}`);
    await h1().filter({ hasText: `Job ${created.id.slice(0, 8)}` }).waitFor();
    const section = page.locator('section[aria-labelledby="failed-heading"]');
    const items = section.locator('.failed-tiles li');
    await until('the failed tiles', async () => (await items.count()) > 0);
    assert.equal(await items.count(), Math.min(failed.length, 20), 'failed tiles listed');
    const first = ((await items.first().textContent()) ?? '').replace(/\s+/g, ' ').trim();
    assert.ok(first.startsWith(`tile ${failed[0].tile_index} (attempt 1/1, failed): `), `first failure "${first}"`);
    assert.ok(first.endsWith(failed[0].error.replace(/\s+/g, ' ').trim()), `first failure "${first}" lacks the error "${failed[0].error}"`);
    const summary = ((await section.getByRole('list', { name: 'cancelled tasks' }).textContent()) ?? '').trim();
    assert.match(summary, new RegExp(`^${cancelled_tiles} tiles? and the finalize task cancelled: `), 'cancelled summary');
    note(`${failed.length} failed (listed with "${failed[0].error.slice(0, 80)}"), ${cancelled_tiles} tiles counted: "${summary.slice(0, 100)}"`);
  } finally {
    rmSync(scene, { recursive: true, force: true });
  }
});

// --- g. a phone-sized screen: every page fits, navigation by touch, the map shown, controls reachable ---------
// A second browser (the persistent profile above cannot also emulate a phone): 390×844 CSS px at 2×, touch.
const PHONE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };
const phone_browser = await chromium.launch({
  executablePath: EXECUTABLE,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking'],
});
const desktop_page = page;
page = await (await phone_browser.newContext(PHONE)).newPage();
page.setDefaultTimeout(UI_TIMEOUT_MS);
collectErrors(page);

/**
 * The page's horizontal fit: the document scrolls no wider than the viewport, and no visible element sticks
 * out of it, except inside a container that scrolls or clips (those are checked by name where they matter).
 */
async function phoneFit() {
  return page.evaluate((width) => {
    const clipped = (element) => {
      for (let e = element.parentElement; e && e !== document.body; e = e.parentElement) {
        if (getComputedStyle(e).overflowX !== 'visible') return true;
      }
      return false;
    };
    const name = (e) =>
      `${e.tagName.toLowerCase()}${e.id ? `#${e.id}` : ''}${e.className && typeof e.className === 'string' ? `.${e.className.trim().split(/\s+/).join('.')}` : ''}`;
    const out = [];
    for (const element of document.querySelectorAll('header *, main *')) {
      const r = element.getBoundingClientRect();
      if (r.width === 0 || r.height === 0 || element.closest('.visually-hidden') || clipped(element)) continue;
      if (r.left < -0.5 || r.right > width + 0.5) out.push(`${name(element)} [${Math.round(r.left)}, ${Math.round(r.right)}]`);
    }
    // A mobile browser widens the layout viewport to fit wide content: innerWidth grows past the screen.
    return { width: window.innerWidth, scroll_width: document.scrollingElement.scrollWidth, out };
  }, PHONE.viewport.width);
}

/** axe-core in the page, with layout (so colour contrast is checked too, unlike under jsdom); the violations. */
const AXE = new URL('../node_modules/axe-core/axe.min.js', import.meta.url).pathname;
async function axeViolations() {
  if (!(await page.evaluate(() => 'axe' in window))) await page.addScriptTag({ path: AXE });
  return page.evaluate(async () => {
    const results = await window.axe.run(document, { resultTypes: ['violations'] });
    return results.violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).slice(0, 3).join(', ')}`);
  });
}

/** Asserts the page fits the phone's width (see phoneFit) and axe-core finds nothing; notes the page height. */
async function assertPhoneFit(note, what) {
  const fit = await phoneFit();
  const screen_px = PHONE.viewport.width;
  assert.equal(fit.width, screen_px, `${what}: the layout viewport widened to ${fit.width} px to fit the content`);
  assert.ok(fit.scroll_width <= screen_px, `${what}: the page scrolls sideways (${fit.scroll_width} px wide on a ${screen_px} px screen)`);
  assert.deepEqual(fit.out.slice(0, 8), [], `${what}: elements outside the ${screen_px} px screen`);
  assert.deepEqual(await axeViolations(), [], `${what}: axe-core violations at phone size`);
  const height = await page.evaluate(() => document.scrollingElement.scrollHeight);
  note(`${what}: ${fit.scroll_width} px wide, ${height} px tall, no axe-core violations`);
}

/**
 * Asserts each locator is visible, wholly inside the screen's width, and at least `min_px` square: 24 for
 * controls (WCAG 2.2 target size), 1 for text that only has to be on screen.
 */
async function assertReachable(what, locators, min_px = 24) {
  for (const [label, locator] of Object.entries(locators)) {
    await locator.waitFor({ state: 'visible' }).catch(() => {
      throw new Error(`${what}: "${label}" is not visible`);
    });
    const box = await locator.boundingBox();
    assert.ok(box, `${what}: "${label}" has no box`);
    assert.ok(box.x >= 0 && box.x + box.width <= PHONE.viewport.width + 0.5, `${what}: "${label}" spans x ${box.x}–${box.x + box.width}, outside the ${PHONE.viewport.width} px screen`);
    assert.ok(box.width >= min_px && box.height >= min_px, `${what}: "${label}" is ${box.width}×${box.height} px, under ${min_px}×${min_px}`);
  }
}

/** Nav links: reachable; tapping one shows its page and marks the link current. */
async function tapNav(label, heading) {
  const nav = page.getByRole('navigation', { name: 'main' });
  const link = nav.getByRole('link', { name: label });
  await assertReachable('navigation', { [label]: link });
  await link.tap();
  await h1().filter({ hasText: heading }).waitFor();
  assert.equal(await link.getAttribute('aria-current'), 'page', `"${label}" is not marked as the current page after a tap`);
}

/** A map pane: a MapLibre canvas with a real size, inside the screen's width and on the page's first screens. */
async function assertMap(what, region) {
  const canvas = page.getByRole('region', { name: region }).locator('canvas.maplibregl-canvas');
  await canvas.waitFor({ state: 'visible' });
  const box = await canvas.boundingBox();
  assert.ok(box && box.width >= 300 && box.height >= 200, `${what}: map canvas ${box ? `${box.width}×${box.height}` : 'has no box'}, want at least 300×200 px`);
  assert.ok(box.x >= 0 && box.x + box.width <= PHONE.viewport.width + 0.5, `${what}: map spans x ${box.x}–${box.x + box.width}`);
  return `${Math.round(box.width)}×${Math.round(box.height)} px map`;
}

await step('g-phone-jobs', ['cancelled_id', 'job_id'], async (note) => {
  await page.goto(`${BASE}/#/jobs`);
  await h1().filter({ hasText: /^Jobs$/ }).waitFor();
  const table = page.getByRole('region', { name: 'jobs table' });
  const rows = table.locator('tbody tr');
  const job_count = (await api('GET', '/v1/jobs')).items.length;
  assert.ok(job_count >= 2, `${job_count} jobs on the server`);
  await until(`all ${job_count} jobs listed`, async () => {
    await noErrorNotice();
    return (await table.getByRole('link').count()) === job_count;
  });
  await assertPhoneFit(note, 'jobs');
  // The checker sees real problems: an image without alt text planted in the page is reported.
  await page.evaluate(() => {
    const img = document.createElement('img');
    img.id = 'e2e-no-alt';
    img.src = 'data:image/gif;base64,R0lGODlhAQABAAAAACw=';
    document.querySelector('main').append(img);
  });
  const planted = await axeViolations();
  await page.evaluate(() => document.getElementById('e2e-no-alt').remove());
  assert.ok(planted.some((v) => v.startsWith('image-alt: #e2e-no-alt')), `axe-core missed a planted image without alt: ${planted.join('; ')}`);
  // And the fit check sees a planted 600 px wide box.
  await page.evaluate(() => {
    const wide = document.createElement('div');
    wide.id = 'e2e-wide';
    wide.style.width = '600px';
    wide.style.height = '10px';
    document.querySelector('main').append(wide);
  });
  const wide_fit = await phoneFit();
  await page.evaluate(() => document.getElementById('e2e-wide').remove());
  assert.ok(
    wide_fit.width > PHONE.viewport.width && wide_fit.scroll_width > PHONE.viewport.width && wide_fit.out.some((e) => e.startsWith('div#e2e-wide')),
    `the fit check missed a 600 px box: ${JSON.stringify(wide_fit)}`,
  );
  await until('the page to fit again once the planted box is gone', async () => {
    const fit = await phoneFit();
    return fit.width === PHONE.viewport.width && fit.scroll_width <= PHONE.viewport.width && fit.out.length === 0;
  });
  await assertReachable('jobs', {
    'Jobs link': page.getByRole('navigation', { name: 'main' }).getByRole('link', { name: 'Jobs' }),
    'Submit link': page.getByRole('navigation', { name: 'main' }).getByRole('link', { name: 'Submit' }),
    'Workers link': page.getByRole('navigation', { name: 'main' }).getByRole('link', { name: 'Workers & GPUs' }),
    Filters: page.getByRole('button', { name: /^Filters/ }),
    'Cancel selected': page.getByRole('button', { name: 'Cancel selected' }),
    'Retry selected': page.getByRole('button', { name: 'Retry selected' }),
    'Delete selected': page.getByRole('button', { name: 'Delete selected' }),
    'Action for all matching': page.getByRole('combobox', { name: 'Action for all matching' }),
    'Apply to all matching filter': page.getByRole('button', { name: 'Apply to all matching filter' }),
    'Previous page': page.getByRole('button', { name: /^(Previous|First) page$/ }),
    'Next page': page.getByRole('button', { name: 'Next page' }),
  });
  // The table needs no sideways scrolling: every row's link, state, progress and time are on screen.
  const table_fit = await table.evaluate((e) => ({ scroll: e.scrollWidth, client: e.clientWidth }));
  assert.ok(table_fit.scroll <= table_fit.client, `the jobs table scrolls sideways (${table_fit.scroll} px in ${table_fit.client} px)`);
  for (let i = 0; i < (await rows.count()); i += 1) {
    const row = rows.nth(i);
    await assertReachable(`jobs row ${i + 1}`, { link: row.getByRole('link'), checkbox: row.getByRole('checkbox') });
    await assertReachable(
      `jobs row ${i + 1}`,
      { state: row.locator('.badge'), progress: row.getByRole('progressbar'), created: row.locator('time') },
      1,
    );
  }
  // The filter form starts folded, so the first job is on the first screen; the button unfolds it.
  const first_row = await rows.first().boundingBox();
  assert.ok(first_row && first_row.y + first_row.height <= PHONE.viewport.height, `the first job row ends at y ${first_row?.y + first_row?.height}, below the ${PHONE.viewport.height} px screen`);
  const toggle = page.getByRole('button', { name: /^Filters/ });
  const form = page.getByRole('form', { name: 'job filters' });
  assert.equal(await toggle.getAttribute('aria-expanded'), 'false');
  assert.equal(await form.isVisible(), false, 'the filter form is shown before the Filters button was tapped');
  await toggle.tap();
  await form.waitFor({ state: 'visible' });
  assert.equal(await toggle.getAttribute('aria-expanded'), 'true');
  await assertReachable('filters', {
    'Apply filters': form.getByRole('button', { name: 'Apply filters' }),
    Reset: form.getByRole('button', { name: 'Reset' }),
    Recipe: form.getByRole('combobox', { name: 'Recipe' }),
  });
  await assertPhoneFit(note, 'jobs with the filters unfolded');
  await screenshot('g-phone-jobs-filters');
  await toggle.tap();
  await form.waitFor({ state: 'hidden' });
  note(`${await rows.count()} rows, no sideways scrolling, the first at y ${Math.round(first_row.y)}`);
});

await step('g-phone-job-detail', ['cancelled_id', 'succeeded'], async (note) => {
  // Open the cancelled job from the list by touch.
  const link = page
    .getByRole('region', { name: 'jobs table' })
    .locator('tbody tr')
    .filter({ has: page.locator('.badge', { hasText: 'cancelled' }) })
    .getByRole('link');
  await link.tap();
  await h1().filter({ hasText: `Job ${state.cancelled_id.slice(0, 8)}` }).waitFor();
  const map = await assertMap('cancelled job', 'tile footprints map');
  const actions = page.getByRole('group', { name: 'job actions' });
  await assertReachable('job actions', {
    Cancel: actions.getByRole('button', { name: 'Cancel' }),
    Retry: actions.getByRole('button', { name: 'Retry' }),
    Delete: actions.getByRole('button', { name: 'Delete' }),
  });
  // The cancelled tiles are summed up in one line.
  const cancelled = page.getByRole('list', { name: 'cancelled tasks' });
  await cancelled.waitFor();
  const summary = ((await cancelled.textContent()) ?? '').trim();
  assert.match(summary, /^\d+ tiles and the finalize task cancelled: cancelled by request$/, 'cancelled summary');
  const log = page.getByRole('log', { name: 'job log' });
  await until('log lines', async () => (await log.locator('li').count()) > 0);
  const log_fit = await log.evaluate((e) => ({ scroll: e.scrollWidth, client: e.clientWidth }));
  assert.ok(log_fit.scroll <= log_fit.client, `the log scrolls sideways (${log_fit.scroll} px in ${log_fit.client} px)`);
  await assertPhoneFit(note, 'cancelled job');
  note(`${map}; "${summary}"`);
  await screenshot('g-phone-job-cancelled');

  // The succeeded job: map with the output layer and its controls.
  await page.goto(`${BASE}/#/jobs/${state.job_id}`);
  await h1().filter({ hasText: `Job ${state.job_id.slice(0, 8)}` }).waitFor();
  const map2 = await assertMap('succeeded job', 'tile footprints map');
  const output = page.getByRole('group', { name: 'Output layer' });
  await output.waitFor();
  await assertReachable('output layer', {
    'Show output': output.getByRole('checkbox', { name: 'Show output' }).locator('xpath=..'),
    Colormap: output.getByRole('combobox', { name: 'Colormap' }),
  });
  await page.getByRole('group', { name: 'map legend' }).getByText(/^output \(/).waitFor();
  // The log, read through the paged endpoint, reaches the end: the last line is the assembly, and the view follows live.
  const log2 = page.getByRole('log', { name: 'job log' });
  await until('the assembly line in the log', async () => /assembled .* from \d+ tile/.test((await log2.textContent()) ?? ''));
  const log_status = ((await page.locator('.log-status').textContent()) ?? '').trim();
  assert.match(log_status, /^lines? 1(–\d+)?; new lines appear as they are written$/, 'log status line');
  assert.equal(await page.getByRole('button', { name: 'Load newer lines' }).count(), 0, 'a short log offers newer lines');
  const log2_fit = await log2.evaluate((e) => ({ scroll: e.scrollWidth, client: e.clientWidth }));
  assert.ok(log2_fit.scroll <= log2_fit.client, `the log scrolls sideways (${log2_fit.scroll} px in ${log2_fit.client} px)`);
  await assertPhoneFit(note, 'succeeded job');
  note(`${map2}; log "${log_status}"`);
});

await step('g-phone-submit', [], async (note) => {
  await tapNav('Submit', 'Submit a job');
  const recipe = page.getByRole('combobox', { name: 'Recipe' });
  await until(`recipe ${RECIPE} in the list`, async () => (await recipe.locator(`option[value="${RECIPE}"]`).count()) === 1);
  await recipe.selectOption(RECIPE);
  const rows = page.getByRole('group', { name: /^input \d+$/ });
  await until('one input row per recipe role', async () => (await rows.count()) === 3);
  await assertReachable('submit', {
    Recipe: recipe,
    'first path': rows.first().getByRole('textbox', { name: 'Path' }),
    'Submit job': page.getByRole('button', { name: 'Submit job' }),
  });
  note(await assertMap('submit', 'area of interest map'));
  await assertReachable('submit', { 'Draw rectangle on map': page.getByRole('button', { name: 'Draw rectangle on map' }) });
  await assertPhoneFit(note, 'submit');
});

await step('g-phone-workers', [], async (note) => {
  await tapNav('Workers & GPUs', /Workers/);
  await until('the workers list to load', async () => {
    await noErrorNotice();
    return (await page.locator('main [aria-busy="true"]').count()) === 0 && (await page.locator('main').textContent())?.includes('Workers');
  });
  await assertPhoneFit(note, 'workers');
  const table = page.getByRole('region', { name: 'workers table' });
  if ((await table.count()) > 0) {
    const fit = await table.evaluate((e) => ({ scroll: e.scrollWidth, client: e.clientWidth }));
    assert.ok(fit.scroll <= fit.client, `the workers table scrolls sideways (${fit.scroll} px in ${fit.client} px)`);
    note(`workers table ${await table.locator('tbody tr').count()} row(s), no sideways scrolling`);
  }
  await screenshot('g-phone-workers-list');
  // And back to the jobs list by touch.
  await tapNav('Jobs', /^Jobs$/);
});

await phone_browser.close();
page = desktop_page;

await context.close();
if (!process.env.E2E_PROFILE_DIR) rmSync(profile, { recursive: true, force: true });

const unique_errors = [...new Set(browser_errors)];
if (unique_errors.length > 0) {
  console.log(`browser console errors (${unique_errors.length}, not counted as failures):`);
  for (const line of unique_errors.slice(0, 15)) console.log(`  ${line.slice(0, 300)}`);
}
const failed = results.filter((r) => !r.ok);
console.log(`${results.length - failed.length}/${results.length} steps passed${failed.length ? `; failed: ${failed.map((r) => r.name).join(', ')}` : ''}`);
process.exit(failed.length === 0 ? 0 : 1);
