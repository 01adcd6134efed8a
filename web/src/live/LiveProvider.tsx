// React glue: one LiveSocket per app, its events folded into the query cache, its state exposed to the header.
import { useQueryClient } from '@tanstack/react-query';
import { createContext, useContext, useEffect, useState, type ReactNode } from 'react';
import { applyEventToCache, refetchAll } from './cache';
import { LiveSocket, type ConnectionState } from './socket';

const LiveStateContext = createContext<ConnectionState>('connecting');

export function liveSocketUrl(location: { protocol: string; host: string }): string {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/v1/ws?all=true`;
}

export function LiveProvider({ children }: { children: ReactNode }) {
  const client = useQueryClient();
  const [state, setState] = useState<ConnectionState>('connecting');

  useEffect(() => {
    const socket = new LiveSocket({
      url: liveSocketUrl(window.location),
      onEvent: (event) => applyEventToCache(client, event),
      onRefetchAll: () => refetchAll(client),
      onPoll: () => refetchAll(client),
      onStateChange: setState,
    });
    socket.start();
    return () => socket.stop();
  }, [client]);

  return <LiveStateContext.Provider value={state}>{children}</LiveStateContext.Provider>;
}

export const useLiveState = () => useContext(LiveStateContext);
