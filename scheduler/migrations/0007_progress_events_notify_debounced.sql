-- `progress` events no longer NOTIFY from the transaction that appends them. Every
-- transaction that notifies takes one database-wide lock at commit and holds it through its
-- WAL flush (PostgreSQL keeps the notification queue in commit order that way), so
-- completions that each notified committed one at a time instead of sharing flushes: with
-- 16 concurrent completers, claim + complete ran at 800-970 tasks/s with the notification
-- and 1,260-1,330 without (pgbench, this schema otherwise unchanged).
-- Completions (the only writers of progress events alone) announce them from the client
-- instead, after their commit and at most once per 50 ms per Queue (Queue::announce_progress:
-- at once when the last announcement is older, otherwise once when the 50 ms are up). Every
-- other event still notifies from its own transaction; subscribers also read again every
-- second without a notification.
CREATE OR REPLACE FUNCTION constellation_notify_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM inserted WHERE kind <> 'progress') THEN
        PERFORM pg_notify('constellation_event', '');
    END IF;
    RETURN NULL;
END $$;
