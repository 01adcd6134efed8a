// WebSocket client for /v1/ws: reconnect with jittered exponential backoff, `since` resume, ping/pong, polling fallback.
import { parseServerMessage, type ClientMessage, type LiveEvent } from './messages';

export type ConnectionState = 'connecting' | 'connected' | 'reconnecting' | 'polling';

/** The part of the browser WebSocket this client uses (tests pass a fake). */
export interface WebSocketLike {
  onopen: ((event: Event) => void) | null;
  onclose: ((event: CloseEvent) => void) | null;
  onerror: ((event: Event) => void) | null;
  onmessage: ((event: MessageEvent) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export interface LiveSocketOptions {
  /** Absolute ws:// or wss:// URL of /v1/ws with its subscription query (e.g. all=true); `since` is added here. */
  url: string;
  onEvent: (event: LiveEvent) => void;
  /** The stream has a gap (resync, lagged, or a reconnect with nothing to resume from): refetch everything. */
  onRefetchAll: (reason: string) => void;
  onStateChange?: (state: ConnectionState) => void;
  /** Called on entering polling mode and then every poll_interval_ms while the socket stays down. */
  onPoll?: () => void;
  createSocket?: (url: string) => WebSocketLike;
  random?: () => number;
  backoff_base_ms?: number;
  backoff_max_ms?: number;
  ping_interval_ms?: number;
  pong_timeout_ms?: number;
  /** Consecutive failed connections before falling back to polling. */
  polling_after_failures?: number;
  poll_interval_ms?: number;
}

/** Delay before reconnect attempt `attempt` (0-based): uniform in [ceiling/2, ceiling], ceiling = min(max, base·2^attempt). */
export function backoffDelayMs(attempt: number, base_ms: number, max_ms: number, random: () => number): number {
  const ceiling_ms = Math.min(max_ms, base_ms * 2 ** Math.max(0, attempt));
  return ceiling_ms / 2 + random() * (ceiling_ms / 2);
}

export class LiveSocket {
  private readonly options: Required<Omit<LiveSocketOptions, 'onStateChange' | 'onPoll'>> &
    Pick<LiveSocketOptions, 'onStateChange' | 'onPoll'>;
  private socket: WebSocketLike | null = null;
  private last_seq: number | null = null;
  private failures = 0;
  private ever_connected = false;
  private stopped = true;
  private current_state: ConnectionState = 'connecting';
  private reconnect_timer: ReturnType<typeof setTimeout> | null = null;
  private ping_timer: ReturnType<typeof setInterval> | null = null;
  private pong_timer: ReturnType<typeof setTimeout> | null = null;
  private poll_timer: ReturnType<typeof setInterval> | null = null;

  constructor(options: LiveSocketOptions) {
    this.options = {
      createSocket: (url) => new WebSocket(url),
      random: Math.random,
      backoff_base_ms: 500,
      backoff_max_ms: 30_000,
      ping_interval_ms: 15_000,
      pong_timeout_ms: 10_000,
      polling_after_failures: 3,
      poll_interval_ms: 5_000,
      ...options,
    };
  }

  get state(): ConnectionState {
    return this.current_state;
  }

  get lastSeq(): number | null {
    return this.last_seq;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    this.clearTimers();
    this.stopPolling();
    this.detachAndClose(1000, 'client stopped');
  }

  private connectUrl(): string {
    const url = new URL(this.options.url);
    if (this.last_seq !== null) url.searchParams.set('since', String(this.last_seq));
    return url.toString();
  }

  private connect(): void {
    this.reconnect_timer = null;
    let socket: WebSocketLike;
    try {
      socket = this.options.createSocket(this.connectUrl());
    } catch {
      this.handleDrop();
      return;
    }
    this.socket = socket;
    socket.onopen = () => this.handleOpen();
    socket.onmessage = (event) => this.handleMessage(event.data);
    socket.onclose = () => {
      if (this.socket === socket) {
        this.socket = null;
        this.handleDrop();
      }
    };
    socket.onerror = () => undefined;
  }

  private handleOpen(): void {
    const resumed = this.ever_connected;
    this.ever_connected = true;
    this.failures = 0;
    this.stopPolling();
    this.setState('connected');
    this.startPing();
    if (resumed && this.last_seq === null) this.options.onRefetchAll('reconnected with nothing to resume from');
  }

  private handleMessage(data: unknown): void {
    this.clearPongTimer();
    const message = parseServerMessage(data);
    if (!message) return;
    switch (message.type) {
      case 'event':
        if (this.last_seq !== null && message.seq <= this.last_seq) return;
        this.last_seq = message.seq;
        this.options.onEvent(message);
        return;
      case 'resync':
        // The server's sequence may have restarted; accept whatever numbering comes next.
        this.last_seq = null;
        this.options.onRefetchAll(`resync: ${message.reason}`);
        return;
      case 'lagged':
        this.options.onRefetchAll(`lagged: missed ${message.missed}`);
        return;
      case 'pong':
        return;
    }
  }

  private handleDrop(): void {
    this.clearTimers();
    if (this.stopped) return;
    const delay_ms = backoffDelayMs(
      this.failures,
      this.options.backoff_base_ms,
      this.options.backoff_max_ms,
      this.options.random,
    );
    this.failures += 1;
    if (this.failures >= this.options.polling_after_failures) {
      this.setState('polling');
      this.startPolling();
    } else {
      this.setState(this.ever_connected ? 'reconnecting' : 'connecting');
    }
    this.reconnect_timer = setTimeout(() => this.connect(), delay_ms);
  }

  private startPing(): void {
    this.ping_timer = setInterval(() => {
      if (!this.socket) return;
      this.socket.send(JSON.stringify({ type: 'ping' } satisfies ClientMessage));
      if (this.pong_timer === null) {
        this.pong_timer = setTimeout(() => {
          this.pong_timer = null;
          this.detachAndClose(4000, 'pong timeout');
          this.handleDrop();
        }, this.options.pong_timeout_ms);
      }
    }, this.options.ping_interval_ms);
  }

  private startPolling(): void {
    if (this.poll_timer !== null) return;
    this.options.onPoll?.();
    this.poll_timer = setInterval(() => this.options.onPoll?.(), this.options.poll_interval_ms);
  }

  private stopPolling(): void {
    if (this.poll_timer !== null) clearInterval(this.poll_timer);
    this.poll_timer = null;
  }

  private clearPongTimer(): void {
    if (this.pong_timer !== null) clearTimeout(this.pong_timer);
    this.pong_timer = null;
  }

  private clearTimers(): void {
    if (this.reconnect_timer !== null) clearTimeout(this.reconnect_timer);
    if (this.ping_timer !== null) clearInterval(this.ping_timer);
    this.reconnect_timer = null;
    this.ping_timer = null;
    this.clearPongTimer();
  }

  private detachAndClose(code: number, reason: string): void {
    const socket = this.socket;
    this.socket = null;
    if (!socket) return;
    socket.onopen = socket.onclose = socket.onerror = null;
    socket.onmessage = null;
    try {
      socket.close(code, reason);
    } catch {
      // already closed
    }
  }

  private setState(state: ConnectionState): void {
    if (state === this.current_state) return;
    this.current_state = state;
    this.options.onStateChange?.(state);
  }
}
