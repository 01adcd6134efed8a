// Header badge for the live-update connection: connected, connecting, reconnecting or polling.
import { useLiveState } from '../live/LiveProvider';

const TEXT = {
  connecting: 'connecting…',
  connected: 'live',
  reconnecting: 'reconnecting…',
  polling: 'polling (live updates down)',
} as const;

export function ConnectionIndicator() {
  const state = useLiveState();
  return (
    <p className={`connection connection-${state}`} role="status" title="live update connection">
      <span className="dot" aria-hidden="true" />
      <span className="visually-hidden">Updates: </span>
      {TEXT[state]}
    </p>
  );
}
