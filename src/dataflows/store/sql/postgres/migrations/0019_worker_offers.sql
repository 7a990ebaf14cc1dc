-- dataflows schema, version 19 (PostgreSQL): event intake hands the runs an event wakes or
-- starts to an idle worker of another process, in the `NOTIFY` that wakes it, so that worker
-- begins them without a claim round trip (remote eager dispatch).
-- Runs with search_path set to the store's schema.

-- A worker with nothing to do offers its free slots (`offered`, with the lease it takes runs
-- under); an intake that claims runs for it takes them from the offer. A worker withdraws the
-- offer when it fills up and when it stops.
ALTER TABLE workers
    ADD COLUMN offered integer NOT NULL DEFAULT 0,
    ADD COLUMN lease_seconds double precision NOT NULL DEFAULT 30;

-- Intake as in version 6, and: with no worker of the sending process to claim for (no p_claim),
-- an intake of a few events (at most 4: one sent to resume or start runs, not a batch) claims
-- the runs it made runnable for a worker that offered slots (one whose liveness lock is held;
-- rows another intake holds are skipped), up to its offer and at most 8, and sends the claim in
-- the NOTIFY payload, {"s": sender, "w": worker, "runs": claim_runs' rows, "more": bool}: that
-- worker begins them from the payload, and the other listeners ignore it unless "more". A claim
-- too large for a payload (8,000 bytes) is undone and a plain NOTIFY sent instead.
CREATE OR REPLACE FUNCTION intake_events(p_events jsonb, p_channel text, p_sender text, p_claim jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    keys jsonb;
    answer jsonb;
    target record;
    claimed jsonb;
    taken integer;
    payload text;
    v_now double precision;
    v_class integer;
BEGIN
    keys := lock_intake(p_events);
    answer := store_events(p_events, keys);
    IF NOT (answer ->> 'work')::boolean THEN
        RETURN answer;
    END IF;
    IF p_claim IS NOT NULL THEN
        PERFORM pg_notify(p_channel, p_sender);
        RETURN answer || jsonb_build_object('claimed', (
            SELECT coalesce(jsonb_agg(to_jsonb(c)), '[]')
            FROM claim_runs(p_claim ->> 'worker', (p_claim ->> 'limit')::integer,
                            (p_claim ->> 'lease_until')::double precision,
                            (p_claim ->> 'now')::double precision) AS c));
    END IF;
    IF jsonb_array_length(p_events) <= 4 THEN
        -- A worker whose liveness lock this transaction can take has died (its process held it).
        v_class := ('x' || left(encode(sha256(convert_to('dataflows.workers/' || current_schema(),
                                                         'UTF8')), 'hex'), 8))::bit(32)::integer;
        SELECT w.id, least(w.offered, 8) AS slots, w.lease_seconds INTO target
        FROM workers w
        WHERE w.offered > 0 AND w.lock_free_since IS NULL
          AND NOT pg_try_advisory_xact_lock(v_class, w.lock_key)
        ORDER BY random()
        LIMIT 1
        FOR UPDATE SKIP LOCKED;
        IF FOUND THEN
            v_now := (p_events -> -1 ->> 'now')::double precision;
            BEGIN
                SELECT coalesce(jsonb_agg(to_jsonb(c)), '[]') INTO claimed
                FROM claim_runs(target.id, target.slots, v_now + target.lease_seconds, v_now) AS c;
                SELECT count(DISTINCT r ->> 'id') INTO taken FROM jsonb_array_elements(claimed) AS r;
                IF taken > 0 THEN
                    -- "more": the claim used all it could take (others may be runnable still)
                    -- or runs were cancelled (a worker may hold one in a sleep): every listener
                    -- is woken as by a plain notification.
                    payload := jsonb_build_object(
                        's', p_sender, 'w', target.id, 'runs', claimed,
                        'more', taken >= target.slots OR (answer ->> 'cancels')::boolean)::text;
                    IF octet_length(payload) > 7900 THEN
                        RAISE EXCEPTION USING ERRCODE = 'DFTOO';  -- undoes the claim
                    END IF;
                    UPDATE workers SET offered = greatest(offered - taken, 0) WHERE id = target.id;
                    PERFORM pg_notify(p_channel, payload);
                    RETURN answer;
                END IF;
            EXCEPTION WHEN SQLSTATE 'DFTOO' THEN
                NULL;  -- claimed as usual, after the plain notification below
            END;
        END IF;
    END IF;
    PERFORM pg_notify(p_channel, p_sender);
    RETURN answer;
END
$$;
