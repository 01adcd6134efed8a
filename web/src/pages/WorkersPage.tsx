// Workers & GPUs page: worker table with heartbeat ages and live per-GPU sparklines.
import { useWorkers } from '../api/queries';
import type { GpuInfo, GpuSample, Worker } from '../api/types';
import { ErrorNotice } from '../components/ErrorNotice';
import { Sparkline } from '../components/Sparkline';
import { ageSecs, formatAge, formatBytes } from '../lib/format';
import { useNow } from '../lib/useNow';

export function WorkersPage() {
  const workers = useWorkers();
  const now_ms = useNow(1000);
  const items = workers.data?.items ?? [];
  return (
    <>
      <h1>Workers &amp; GPUs</h1>
      <ErrorNotice error={workers.error} heading="could not load workers" />
      <div className="table-scroll" tabIndex={0} role="region" aria-label="workers table">
        <table className="workers-table">
          <thead>
            <tr>
              <th scope="col">Host</th>
              <th scope="col">Backend</th>
              <th scope="col">State</th>
              <th scope="col">Heartbeat</th>
              <th scope="col">GPUs</th>
            </tr>
          </thead>
          <tbody>
            {items.map((worker) => (
              <tr key={worker.id}>
                <td>
                  {worker.host}
                  <div className="muted mono">{worker.id.slice(0, 8)}</div>
                </td>
                <td data-label="Backend">{worker.backend}</td>
                <td data-label="State">{worker.state}</td>
                <td data-label="Heartbeat">{formatAge(ageSecs(worker.heartbeat_at, now_ms))} ago</td>
                <td data-label="GPUs">{gpusOf(worker).length}</td>
              </tr>
            ))}
            {workers.isSuccess && items.length === 0 && (
              <tr>
                <td colSpan={5}>No workers have registered.</td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
      {items
        .filter((worker) => gpusOf(worker).length > 0)
        .map((worker) => (
          <WorkerGpus key={worker.id} worker={worker} />
        ))}
    </>
  );
}

const finiteOr = (value: unknown): number | undefined =>
  typeof value === 'number' && Number.isFinite(value) ? value : undefined;

/** A worker's GPUs: its registered inventory (untyped JSON) plus any GPU index seen only in samples. */
export function gpusOf(worker: Worker): GpuInfo[] {
  const gpus = new Map<number, GpuInfo>();
  for (const raw of worker.gpus as Record<string, unknown>[]) {
    const index = finiteOr(raw.index);
    if (index === undefined) continue;
    gpus.set(index, {
      index,
      name: typeof raw.name === 'string' ? raw.name : undefined,
      uuid: typeof raw.uuid === 'string' ? raw.uuid : undefined,
      memory_total_bytes: finiteOr(raw.memory_total_bytes),
    });
  }
  for (const sample of worker.samples) {
    if (!gpus.has(sample.gpu_index)) {
      gpus.set(sample.gpu_index, { index: sample.gpu_index, memory_total_bytes: sample.mem_total_bytes ?? undefined });
    }
  }
  return [...gpus.values()].sort((a, b) => a.index - b.index);
}

/** Samples of one GPU, oldest first. */
export function samplesOf(samples: GpuSample[], gpu_index: number): GpuSample[] {
  return samples.filter((sample) => sample.gpu_index === gpu_index).sort((a, b) => Date.parse(a.ts) - Date.parse(b.ts));
}

/** One metric over time; samples that lack it (a card that does not report power, say) are skipped. */
export function series(samples: GpuSample[], pick: (sample: GpuSample) => number | null | undefined): number[] {
  return samples.map(pick).filter((value): value is number => typeof value === 'number' && Number.isFinite(value));
}

function WorkerGpus({ worker }: { worker: Worker }) {
  return (
    <section aria-labelledby={`gpus-${worker.id}`}>
      <h2 id={`gpus-${worker.id}`}>GPUs on {worker.host}</h2>
      <div className="gpu-grid">
        {gpusOf(worker).map((gpu) => {
          const samples = samplesOf(worker.samples, gpu.index);
          const simulated = samples.some((s) => s.simulated);
          return (
            <article className="gpu-card" key={gpu.index} aria-label={`GPU ${gpu.index}`}>
              <h3>
                GPU {gpu.index}
                {gpu.name ? `: ${gpu.name}` : ''} {simulated && <span className="tag">simulated</span>}
              </h3>
              {gpu.memory_total_bytes !== undefined && (
                <p className="muted">{formatBytes(gpu.memory_total_bytes)} memory</p>
              )}
              <div className="sparklines">
                <Sparkline
                  label="Utilization"
                  values={series(samples, (s) => s.util_gpu_pct)}
                  min={0}
                  max={100}
                  format={(v) => `${Math.round(v)} %`}
                />
                <Sparkline
                  label="Memory used"
                  values={series(samples, (s) => s.mem_used_bytes)}
                  min={0}
                  max={gpu.memory_total_bytes || undefined}
                  format={formatBytes}
                />
                <Sparkline
                  label="Temperature"
                  values={series(samples, (s) => s.temp_c)}
                  format={(v) => `${Math.round(v)} °C`}
                />
                <Sparkline
                  label="Power"
                  values={series(samples, (s) => s.power_w)}
                  format={(v) => `${Math.round(v)} W`}
                />
              </div>
            </article>
          );
        })}
      </div>
    </section>
  );
}
