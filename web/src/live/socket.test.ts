// Tests for the WebSocket client: backoff bounds, since resume, resync/lagged, ping/pong and polling fallback.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { backoffDelayMs, LiveSocket, type ConnectionState, type WebSocketLike } from './socket';
import type { LiveEvent } from './messages';

class FakeSocket implements WebSocketLike {
  onopen: ((event: Event) => void) | null = null;
  onclose: ((event: CloseEvent) => void) | null = null;
  onerror: ((event: Event) => void) | null = null;
  onmessage: ((event: MessageEvent) => void) | null = null;
  sent: string[] = [];
  closed_with: number | null = null;

  constructor(readonly url: string) {}

  send(data: string) {
    this.sent.push(data);
  }
  close(code = 1000) {
    this.closed_with = code;
  }
  serverOpen() {
    this.onopen?.(new Event('open'));
  }
  serverSend(message: unknown) {
    this.receive(JSON.stringify(message));
  }
  receive(data: string) {
    this.onmessage?.(new MessageEvent('message', { data }));
  }
  serverClose() {
    this.onclose?.(new Event('close') as CloseEvent);
  }
}

const event = (seq: number, kind = 'job_running', job_id = 'j1') => ({
  type: 'event',
  seq,
  job_id,
  kind,
  payload: {},
  ts: '2026-01-01T00:00:00Z',
});

function setup(overrides: Partial<ConstructorParameters<typeof LiveSocket>[0]> = {}) {
  const sockets: FakeSocket[] = [];
  const events: LiveEvent[] = [];
  const refetches: string[] = [];
  const states: ConnectionState[] = [];
  const polls = { count: 0 };
  const live = new LiveSocket({
    url: 'ws://example.test/v1/ws?all=true',
    createSocket: (url) => {
      const socket = new FakeSocket(url);
      sockets.push(socket);
      return socket;
    },
    onEvent: (e) => events.push(e),
    onRefetchAll: (reason) => refetches.push(reason),
    onStateChange: (s) => states.push(s),
    onPoll: () => {
      polls.count += 1;
    },
    random: () => 0.5,
    ...overrides,
  });
  const last = () => sockets[sockets.length - 1]!;
  return { live, sockets, events, refetches, states, polls, last };
}

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('backoffDelayMs', () => {
  it('stays within [ceiling/2, ceiling] and the ceiling doubles up to the maximum', () => {
    for (let attempt = 0; attempt < 12; attempt += 1) {
      const ceiling = Math.min(30_000, 500 * 2 ** attempt);
      expect(backoffDelayMs(attempt, 500, 30_000, () => 0)).toBe(ceiling / 2);
      expect(backoffDelayMs(attempt, 500, 30_000, () => 0.999999)).toBeLessThanOrEqual(ceiling);
      expect(backoffDelayMs(attempt, 500, 30_000, () => 0.999999)).toBeGreaterThan(ceiling * 0.99);
    }
    expect(backoffDelayMs(40, 500, 30_000, Math.random)).toBeLessThanOrEqual(30_000);
  });

  it('spreads clients apart (jitter)', () => {
    const delays = new Set([0, 0.25, 0.5, 0.75].map((r) => backoffDelayMs(3, 500, 30_000, () => r)));
    expect(delays.size).toBe(4);
  });
});

describe('LiveSocket', () => {
  it('connects without since, then resumes from the last sequence it saw', () => {
    const t = setup();
    t.live.start();
    expect(t.last().url).toBe('ws://example.test/v1/ws?all=true');
    t.last().serverOpen();
    expect(t.live.state).toBe('connected');
    t.last().serverSend(event(7));
    t.last().serverSend(event(9));
    t.last().serverClose();
    expect(t.live.state).toBe('reconnecting');
    expect(t.sockets).toHaveLength(1);
    vi.advanceTimersByTime(375); // attempt 0 with random 0.5: 250 + 0.5 * 250
    expect(t.sockets).toHaveLength(2);
    const url = new URL(t.last().url);
    expect(url.searchParams.get('since')).toBe('9');
    expect(url.searchParams.get('all')).toBe('true');
    t.live.stop();
  });

  it('waits longer after each consecutive failure and resets after a successful open', () => {
    const t = setup({ polling_after_failures: 99 });
    t.live.start();
    const waits: number[] = [];
    for (let i = 0; i < 4; i += 1) {
      const before = t.sockets.length;
      t.last().serverClose();
      let waited = 0;
      while (t.sockets.length === before) {
        vi.advanceTimersByTime(5);
        waited += 5;
      }
      waits.push(waited);
    }
    expect(waits).toEqual([375, 750, 1500, 3000]);
    t.last().serverOpen();
    t.last().serverClose();
    expect(vi.getTimerCount()).toBe(1);
    vi.advanceTimersByTime(374);
    expect(t.sockets).toHaveLength(5);
    vi.advanceTimersByTime(1);
    expect(t.sockets).toHaveLength(6);
    t.live.stop();
  });

  it('delivers events in order once, dropping replayed duplicates', () => {
    const t = setup();
    t.live.start();
    t.last().serverOpen();
    [1, 2, 2, 1, 3].forEach((seq) => t.last().serverSend(event(seq)));
    expect(t.events.map((e) => e.seq)).toEqual([1, 2, 3]);
    expect(t.live.lastSeq).toBe(3);
    t.live.stop();
  });

  it('asks for a full refetch on resync and lagged, and accepts a restarted sequence after resync', () => {
    const t = setup();
    t.live.start();
    t.last().serverOpen();
    t.last().serverSend(event(100));
    t.last().serverSend({ type: 'lagged', missed: 12 });
    expect(t.refetches).toEqual(['lagged: missed 12']);
    t.last().serverSend({ type: 'resync', reason: 'since too old' });
    expect(t.refetches).toEqual(['lagged: missed 12', 'resync: since too old']);
    t.last().serverSend(event(5));
    expect(t.events.map((e) => e.seq)).toEqual([100, 5]);
    t.live.stop();
  });

  it('refetches after reconnecting when there was no sequence to resume from', () => {
    const t = setup();
    t.live.start();
    t.last().serverOpen();
    expect(t.refetches).toEqual([]);
    t.last().serverClose();
    vi.advanceTimersByTime(1000);
    t.last().serverOpen();
    expect(t.refetches).toHaveLength(1);
    t.live.stop();
  });

  it('ignores malformed frames', () => {
    const t = setup();
    t.live.start();
    t.last().serverOpen();
    t.last().receive('not json');
    t.last().receive(JSON.stringify({ type: 'event', kind: 'progress' }));
    expect(t.events).toEqual([]);
    expect(t.live.state).toBe('connected');
    t.live.stop();
  });

  it('pings, and drops a connection that stops answering', () => {
    const t = setup({ ping_interval_ms: 1000, pong_timeout_ms: 500 });
    t.live.start();
    const first = t.last();
    first.serverOpen();
    vi.advanceTimersByTime(1000);
    expect(first.sent).toEqual(['{"type":"ping"}']);
    first.serverSend({ type: 'pong' });
    vi.advanceTimersByTime(1000);
    expect(first.sent).toHaveLength(2);
    vi.advanceTimersByTime(500);
    expect(first.closed_with).toBe(4000);
    expect(t.live.state).toBe('reconnecting');
    vi.advanceTimersByTime(375);
    expect(t.sockets).toHaveLength(2);
    t.live.stop();
  });

  it('falls back to polling while the socket stays down and stops polling once it is back', () => {
    const t = setup({ polling_after_failures: 3, poll_interval_ms: 5000 });
    t.live.start();
    t.last().serverClose();
    expect(t.live.state).toBe('connecting');
    vi.advanceTimersByTime(375);
    t.last().serverClose();
    expect(t.live.state).toBe('connecting');
    expect(t.polls.count).toBe(0);
    vi.advanceTimersByTime(750);
    t.last().serverClose();
    expect(t.live.state).toBe('polling');
    expect(t.polls.count).toBe(1);
    vi.advanceTimersByTime(5000);
    expect(t.polls.count).toBe(2);
    // the reconnect attempt (1500 ms after the third failure) succeeds
    t.last().serverOpen();
    expect(t.live.state).toBe('connected');
    vi.advanceTimersByTime(20_000);
    expect(t.polls.count).toBe(2);
    expect(t.states).toEqual(['polling', 'connected']);
    t.live.stop();
  });

  it('stop() closes the socket and leaves no timers behind', () => {
    const t = setup();
    t.live.start();
    t.last().serverOpen();
    t.live.stop();
    expect(t.last().closed_with).toBe(1000);
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(60_000);
    expect(t.sockets).toHaveLength(1);
  });
});
