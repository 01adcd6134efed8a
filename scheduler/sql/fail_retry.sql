-- A retryable failure of worker $1's run ($2 id, $3 attempt) with error $4: back to the
-- queue after an exponential backoff with jitter, base $5 s, cap $6 s, scaled by a random
-- factor in [0.5, 1) so that tasks failing together do not retry together.
-- Matches nothing when fenced out or when the attempts are exhausted.
UPDATE task
SET state = 'queued',
    worker_id = NULL,
    lease_expires_at = NULL,
    error = $4,
    run_at = now() + make_interval(
        secs => least($6, $5 * power(2, attempt - 1)) * (0.5 + random() * 0.5))
WHERE id = $2 AND attempt = $3 AND worker_id = $1 AND state = 'running'
  AND attempt < max_attempts
RETURNING run_at
