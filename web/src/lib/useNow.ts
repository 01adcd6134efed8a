// Hook returning the current time in ms, refreshed every interval_ms (for ticking ages).
import { useEffect, useState } from 'react';

export function useNow(interval_ms: number): number {
  const [now_ms, setNowMs] = useState(() => Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNowMs(Date.now()), interval_ms);
    return () => clearInterval(timer);
  }, [interval_ms]);
  return now_ms;
}
