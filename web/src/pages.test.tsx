// Page tests under jsdom: each page renders from a mocked API, passes axe-core, and key interactions work.
// @vitest-environment jsdom
import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import axe from 'axe-core';
import { createRoot, type Root } from 'react-dom/client';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { App } from './App';
import { CANCELLED_LOG_LINES, mockApi, type RecordedRequest } from './test/mockApi';
import { applyTheme } from './theme';

// MapLibre needs WebGL, which jsdom lacks; the map panes are stood in for by labelled regions.
vi.mock('./map/JobMap', () => ({
  JobMap: () => <div role="region" aria-label="tile footprints map" />,
}));
vi.mock('./map/AoiMap', () => ({
  AoiMap: () => <div role="region" aria-label="area of interest map" />,
}));

// Rendering is awaited with vi.waitFor, as in a browser, rather than inside act().
(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = false;

let root: Root;
let container: HTMLElement;
let requests: RecordedRequest[];

async function renderAt(hash: string) {
  window.location.hash = hash;
  const client = new QueryClient({ defaultOptions: { queries: { retry: false } } });
  container = document.createElement('div');
  document.body.appendChild(container);
  root = createRoot(container);
  root.render(
    <QueryClientProvider client={client}>
      <App />
    </QueryClientProvider>,
  );
}

async function waitForText(text: string) {
  await vi.waitFor(() => expect(document.body.textContent).toContain(text), { timeout: 3000 });
}

async function expectNoAxeViolations() {
  // jsdom has no layout, so colour contrast is checked by theme.test.ts on the palette instead.
  const results = await axe.run(document.documentElement, { rules: { 'color-contrast': { enabled: false } } });
  const summary = results.violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
  expect(summary).toEqual([]);
}

function type(element: HTMLInputElement | HTMLTextAreaElement, value: string) {
  const prototype = element instanceof HTMLTextAreaElement ? HTMLTextAreaElement.prototype : HTMLInputElement.prototype;
  Object.getOwnPropertyDescriptor(prototype, 'value')!.set!.call(element, value);
  element.dispatchEvent(new Event('input', { bubbles: true }));
}

beforeEach(() => {
  // axe probes canvas for icon ligatures; jsdom has none.
  vi.spyOn(HTMLCanvasElement.prototype, 'getContext').mockReturnValue(null);
  applyTheme(document.documentElement);
  document.documentElement.lang = 'en';
  document.title = 'Constellation';
  requests = [];
  vi.stubGlobal('fetch', vi.fn(mockApi(requests)));
  vi.spyOn(window, 'confirm').mockReturnValue(true);
});

afterEach(() => {
  root.unmount();
  container.remove();
  vi.unstubAllGlobals();
});

describe('pages', () => {
  it('jobs list: accessible, filters from the URL reach the API, bulk actions send ids or the filter', async () => {
    await renderAt('#/jobs?state=failed&q=alps');
    await waitForText('3 / 4 tiles');
    await expectNoAxeViolations();
    expect(requests.find((r) => r.url.startsWith('/v1/jobs?'))?.url).toBe('/v1/jobs?state=failed&q=alps&limit=50');
    expect(
      (document.getElementById(document.querySelector('label[for$="-q"]')!.getAttribute('for')!) as HTMLInputElement)
        .value,
    ).toBe('alps');

    const row_box = document.querySelector<HTMLInputElement>(
      'input[aria-label^="select job 7d1f0c2e-0000-4000-8000-000000000002"]',
    )!;
    row_box.click();
    const cancel = [...document.querySelectorAll('button')].find((b) => b.textContent === 'Cancel selected')!;
    cancel.click();
    await waitForText('2 job(s) affected, 1 skipped');
    expect(requests.find((r) => r.url === '/v1/jobs/bulk')?.body).toEqual({
      action: 'cancel',
      ids: ['7d1f0c2e-0000-4000-8000-000000000002'],
    });

    const all = [...document.querySelectorAll('button')].find((b) => b.textContent === 'Apply to all matching filter')!;
    all.click();
    await vi.waitFor(() => expect(requests.filter((r) => r.url === '/v1/jobs/bulk')).toHaveLength(2));
    expect(requests.filter((r) => r.url === '/v1/jobs/bulk')[1]?.body).toEqual({
      action: 'cancel',
      filter: { state: 'failed', q: 'alps' },
    });

    const next = [...document.querySelectorAll('button')].find((b) => b.textContent === 'Next page')!;
    next.click();
    await vi.waitFor(() => expect(window.location.hash).toBe('#/jobs?state=failed&q=alps&cursor=c2'));
  });

  it('jobs list: the filter form folds behind a button naming how many filters are active', async () => {
    await renderAt('#/jobs?state=failed&q=alps');
    await waitForText('3 / 4 tiles');
    const toggle = [...document.querySelectorAll('button')].find((b) => b.textContent?.startsWith('Filters'))!;
    const form = document.querySelector('form[aria-label="job filters"]')!;
    expect(toggle.textContent).toBe('Filters (2 active)');
    expect(toggle.getAttribute('aria-controls')).toBe(form.id);
    expect(toggle.getAttribute('aria-expanded')).toBe('false');
    expect(form.classList.contains('filters-folded')).toBe(true);
    toggle.click();
    await vi.waitFor(() => expect(toggle.getAttribute('aria-expanded')).toBe('true'));
    expect(form.classList.contains('filters-folded')).toBe(false);
    await expectNoAxeViolations();
  });

  it('job detail: accessible, shows the job error, the failing tile and the log', async () => {
    await renderAt('#/jobs/7d1f0c2e-0000-4000-8000-000000000002');
    await waitForText('read error: short read');
    await waitForText('tile 3: read error');
    expect(document.body.textContent).toContain('tile 3 failed after 3 attempts');
    await expectNoAxeViolations();
  });

  it('job detail of a cancelled job: failures a part at a time, cancelled tiles as a count, the log paged', async () => {
    const id = '7d1f0c2e-0000-4000-8000-000000000003';
    await renderAt(`#/jobs/${id}`);
    await waitForText('60 failed tasks, showing the first 20');
    const failed = () => [...document.querySelectorAll('.failed-tiles li')].map((li) => li.textContent);
    expect(failed()).toHaveLength(20);
    expect(failed()[0]).toBe('tile 40 (attempt 3/3, failed): tile 40: read error');
    // The 156 cancelled tiles are one line, not 156 list items.
    const cancelled = document.querySelector('[aria-label="cancelled tasks"]')!;
    expect(cancelled.textContent).toBe('156 tiles and the finalize task cancelled: cancelled by request');
    expect(document.body.textContent).not.toContain('tile 100 (');
    const button = (name: string) =>
      [...document.querySelectorAll('button')].find((b) => b.textContent === name) as HTMLButtonElement | undefined;
    button('Show 40 more')!.click();
    await vi.waitFor(() => expect(failed()).toHaveLength(60));
    // Focus moves to the first failure revealed, since the button is gone.
    await vi.waitFor(() => expect(document.activeElement?.textContent).toBe('tile 60 (attempt 3/3, failed): tile 60: read error'));
    expect(button('Show 40 more')).toBeUndefined();
    expect(document.body.textContent).toContain('60 failed tasks');
    expect(document.body.textContent).not.toContain('showing the first');

    // The log: 500 lines a page (501 asked for), read on with `after` = the last id shown.
    const log_requests = () => requests.filter((r) => r.url.startsWith(`/v1/jobs/${id}/logs`)).map((r) => r.url);
    await waitForText('lines 1–500');
    const lines = () => document.querySelectorAll('[role="log"] li');
    expect(lines()).toHaveLength(500);
    expect(log_requests()).toEqual([`/v1/jobs/${id}/logs?limit=501`]);
    await expectNoAxeViolations();
    button('Load newer lines')!.click();
    await waitForText('lines 1–1000');
    expect(log_requests().at(-1)).toBe(`/v1/jobs/${id}/logs?after=1000&limit=501`);
    button('Load newer lines')!.click();
    await waitForText(`lines 1–${CANCELLED_LOG_LINES}; new lines appear as they are written`);
    expect(log_requests().at(-1)).toBe(`/v1/jobs/${id}/logs?after=2000&limit=501`);
    expect(lines()).toHaveLength(CANCELLED_LOG_LINES);
    // At the end the button is gone; focus is kept in the log.
    await vi.waitFor(() => expect(document.activeElement?.getAttribute('role')).toBe('log'));
    expect(lines()[CANCELLED_LOG_LINES - 1]!.textContent).toContain(`log line ${CANCELLED_LOG_LINES}`);
    expect(button('Load newer lines')).toBeUndefined();
    expect(button('Load older lines')).toBeUndefined();
  }, 30_000);

  it('job detail of a succeeded job: output layer controls are accessible and the TileJSON is fetched', async () => {
    await renderAt('#/jobs/7d1f0c2e-0000-4000-8000-000000000001');
    await waitForText('Show output');
    await vi.waitFor(() =>
      expect(requests.some((r) => r.url === '/v1/jobs/7d1f0c2e-0000-4000-8000-000000000001/tilejson')).toBe(true),
    );
    await waitForText('output (viridis)');
    await waitForText('-0.31'); // the legend's range from the STAC item's statistics
    await expectNoAxeViolations();
    const colormap = [...document.querySelectorAll('select')].find((s) => s.labels?.[0]?.textContent === 'Colormap')!;
    colormap.value = 'rdylgn';
    colormap.dispatchEvent(new Event('change', { bubbles: true }));
    await vi.waitFor(() =>
      expect(requests.map((r) => r.url)).toContain(
        '/v1/jobs/7d1f0c2e-0000-4000-8000-000000000001/tilejson?colormap=rdylgn',
      ),
    );
  });

  it('submit: accessible, and a problem+json answer is shown next to the form and the field', async () => {
    await renderAt('#/submit');
    await waitForText('ndvi-landsat-c2l2');
    await expectNoAxeViolations();
    const select = document.getElementById('recipe') as HTMLSelectElement;
    select.value = 'ndvi-landsat-c2l2';
    select.dispatchEvent(new Event('change', { bubbles: true }));
    await vi.waitFor(() => expect((document.getElementById('input-2-role') as HTMLInputElement).value).toBe('qa'));
    type(document.getElementById('input-0-path') as HTMLInputElement, '/nope.tif');
    type(document.getElementById('input-1-path') as HTMLInputElement, '/b5.tif');
    type(document.getElementById('input-2-path') as HTMLInputElement, '/qa.tif');
    const bounds = { west: '6', south: '45', east: '7.5', north: '46' };
    for (const [edge, value] of Object.entries(bounds)) {
      type(document.getElementById(`aoi-${edge}`) as HTMLInputElement, value);
      await vi.waitFor(() => expect((document.getElementById(`aoi-${edge}`) as HTMLInputElement).value).toBe(value));
    }
    const submit = [...document.querySelectorAll('button')].find((b) => b.textContent === 'Submit job')!;
    await vi.waitFor(() => expect((document.getElementById('input-2-path') as HTMLInputElement).value).toBe('/qa.tif'));
    submit.click();
    await waitForText('the job has 1 invalid field');
    const post = requests.find((r) => r.method === 'POST');
    expect(post?.body).toMatchObject({
      recipe: 'ndvi-landsat-c2l2',
      tile_px: 512,
      priority: 0,
      aoi: {
        type: 'Polygon',
        coordinates: [
          [
            [6, 45],
            [7.5, 45],
            [7.5, 46],
            [6, 46],
            [6, 45],
          ],
        ],
      },
    });
    const path_input = document.getElementById('input-0-path')!;
    expect(path_input.getAttribute('aria-invalid')).toBe('true');
    expect(document.getElementById(path_input.getAttribute('aria-describedby')!)?.textContent).toBe(
      'no such file: /nope.tif',
    );
    await expectNoAxeViolations();
  });

  it('workers: accessible, with GPU sparklines labelled by their latest reading', async () => {
    await renderAt('#/workers');
    await waitForText('gpu-node-1');
    await expectNoAxeViolations();
    const labels = [...document.querySelectorAll('svg[role="img"]')].map((svg) => svg.getAttribute('aria-label'));
    expect(labels).toEqual(['Utilization: 60 %', 'Memory used: 12.0 GiB', 'Temperature: 57 °C', 'Power: 302 W']);
  });
});
