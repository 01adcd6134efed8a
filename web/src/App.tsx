// App shell: skip link, header with navigation and connection state, and the routed page in <main>.
import type { MouseEvent } from 'react';
import { ConnectionIndicator } from './components/ConnectionIndicator';
import { JobDetailPage } from './pages/JobDetailPage';
import { JobsPage } from './pages/JobsPage';
import { SubmitPage } from './pages/SubmitPage';
import { WorkersPage } from './pages/WorkersPage';
import { Link, matchPath, useLocation } from './router';

const NAV = [
  { to: '/jobs', label: 'Jobs' },
  { to: '/submit', label: 'Submit' },
  { to: '/workers', label: 'Workers & GPUs' },
];

function Page({ path }: { path: string }) {
  if (path === '/' || path === '/jobs') return <JobsPage />;
  if (path === '/submit') return <SubmitPage />;
  if (path === '/workers') return <WorkersPage />;
  const detail = matchPath('/jobs/:id', path);
  if (detail?.id) return <JobDetailPage key={detail.id} id={detail.id} />;
  return (
    <>
      <h1>Not found</h1>
      <p>
        Nothing lives at <code>{path}</code>. <Link to="/jobs">Go to the jobs list</Link>.
      </p>
    </>
  );
}

export function App() {
  const { path } = useLocation();
  const section = path === '/' ? '/jobs' : `/${path.split('/')[1] ?? ''}`;
  return (
    <>
      <a className="skip-link" href="#main" onClick={skipToMain}>
        Skip to content
      </a>
      <header className="app-header">
        <Link to="/jobs" className="brand">
          Constellation
        </Link>
        <nav aria-label="main">
          <ul>
            {NAV.map((item) => (
              <li key={item.to}>
                <Link to={item.to} aria-current={section === item.to ? 'page' : undefined}>
                  {item.label}
                </Link>
              </li>
            ))}
          </ul>
        </nav>
        <ConnectionIndicator />
      </header>
      <main id="main" tabIndex={-1}>
        <Page path={path} />
      </main>
    </>
  );
}

/** With a hash router, "#main" would be read as a route; move focus instead. */
function skipToMain(event: MouseEvent) {
  event.preventDefault();
  document.getElementById('main')?.focus();
}
