-- dataflows schema, version 2 (PostgreSQL): where a pending wait's search for its event resumes.
-- Every event that can still resolve a wait was stored after the wait was registered, so a run
-- woken by an event searches the events after this sequence number, not all since it started.
ALTER TABLE waits ADD COLUMN after_seq bigint NOT NULL DEFAULT 0;

-- Intake's first step in one round trip: its event names' locks, shared, then the filter shapes
-- of waits on those names. The shapes are read after the locks are held: a VOLATILE function
-- takes a fresh snapshot for each statement in it (a single statement's snapshot would predate
-- the lock and could miss a shape registered just before it was granted).
CREATE FUNCTION lock_wait_shapes(names jsonb, locks jsonb)
RETURNS TABLE (event_name text, filter_paths text)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM count(pg_advisory_xact_lock_shared(hashtextextended(current_schema() || l.key, 0)))
    FROM jsonb_array_elements_text(locks) WITH ORDINALITY AS l(key, n);
    RETURN QUERY
        SELECT s.event_name, s.filter_paths FROM wait_shapes s
        WHERE s.event_name IN (SELECT jsonb_array_elements_text(names));
END
$$;
