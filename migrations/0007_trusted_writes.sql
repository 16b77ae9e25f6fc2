-- Trusted writes: etags (a version per mutable row), idempotency records, and the append-only
-- event log (a project stream per project, partitioned like every project table, and one global
-- stream). See docs/trusted-writes.md.

-- Etags. `version` changes when a row really changes, and never otherwise: a trigger compares
-- the new row with the old one, leaving out the version itself, updated_at, generated columns
-- (not yet computed in a BEFORE trigger; they follow their sources anyway) and the columns the
-- trigger names (bookkeeping such as an API key's last use, which is not a change of the
-- resource). An update that changes nothing keeps both the version and updated_at.
CREATE FUNCTION bump_version() RETURNS trigger
    LANGUAGE plpgsql AS $$
DECLARE
    ignored text[] := ARRAY['version', 'updated_at'] || TG_ARGV || ARRAY(
        SELECT attname::text FROM pg_attribute
        WHERE attrelid = TG_RELID AND attgenerated <> '' AND NOT attisdropped);
BEGIN
    IF (to_jsonb(NEW) - ignored) IS DISTINCT FROM (to_jsonb(OLD) - ignored) THEN
        NEW.version := OLD.version + 1;
    ELSE
        NEW.version := OLD.version;
        NEW.updated_at := OLD.updated_at;
    END IF;
    RETURN NEW;
END
$$;

ALTER TABLE projects ADD COLUMN version bigint NOT NULL DEFAULT 1;
ALTER TABLE employees ADD COLUMN version bigint NOT NULL DEFAULT 1;
ALTER TABLE users ADD COLUMN version bigint NOT NULL DEFAULT 1;
ALTER TABLE roles ADD COLUMN version bigint NOT NULL DEFAULT 1;
ALTER TABLE api_keys ADD COLUMN version bigint NOT NULL DEFAULT 1;
ALTER TABLE project_members ADD COLUMN version bigint NOT NULL DEFAULT 1;

CREATE TRIGGER version_on_change BEFORE UPDATE ON projects
    FOR EACH ROW EXECUTE FUNCTION bump_version();
-- A row trigger on a partitioned table is cloned onto every partition, present and future.
CREATE TRIGGER version_on_change BEFORE UPDATE ON employees
    FOR EACH ROW EXECUTE FUNCTION bump_version();
CREATE TRIGGER version_on_change BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION bump_version();
CREATE TRIGGER version_on_change BEFORE UPDATE ON roles
    FOR EACH ROW EXECUTE FUNCTION bump_version();
CREATE TRIGGER version_on_change BEFORE UPDATE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION bump_version('last_used_at');
CREATE TRIGGER version_on_change BEFORE UPDATE ON project_members
    FOR EACH ROW EXECUTE FUNCTION bump_version();

-- Idempotency records: the first answer to a write that carried a request_id, kept for the
-- retention (ALTALUNE_IDEMPOTENCY_RETENTION_HOURS) and purged in the background. Keyed by the
-- caller, so one caller's request_id never answers another's call. `response` is NULL only while
-- the first call's transaction is open (the row is its claim); nobody else ever sees that state.
CREATE TABLE idempotency_keys (
    caller      text        NOT NULL,
    request_id  uuid        NOT NULL,
    rpc         text        NOT NULL,
    fingerprint bytea       NOT NULL CHECK (octet_length(fingerprint) = 32),
    response    bytea,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (caller, request_id)
);
CREATE INDEX idempotency_keys_expiry_idx ON idempotency_keys (expires_at);

-- Event streams: one per project (keyed by its internal id) and the global one (0). The counter
-- row is taken at the end of the writing transaction, so sequences are gapless and follow commit
-- order: a reader that has seen sequence n has seen every event before it.
CREATE TABLE event_streams (
    stream        bigint PRIMARY KEY,
    last_sequence bigint NOT NULL
);

-- An UPDATE of the stream's row, its first event excepted (the write path's hottest statement:
-- an INSERT ... ON CONFLICT would probe the index with a speculative insertion every time).
CREATE FUNCTION next_event_sequence(stream_key bigint) RETURNS bigint
    LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    taken bigint;
BEGIN
    UPDATE event_streams SET last_sequence = last_sequence + 1 WHERE stream = stream_key RETURNING last_sequence INTO taken;
    IF NOT FOUND THEN
        INSERT INTO event_streams AS s (stream, last_sequence) VALUES (stream_key, 1)
        ON CONFLICT (stream) DO UPDATE SET last_sequence = s.last_sequence + 1
        RETURNING last_sequence INTO taken;
    END IF;
    RETURN taken;
END
$$;

-- A project's events: partitioned in blocks like every project table (docs/tenancy.md), so the
-- partition keeper makes its partitions and a deleted project's events go with its data. No
-- foreign key to projects: the project id comes from authorization, never from a client, and the
-- check would lock the project's row on every event (the write path's cost).
CREATE TABLE project_events (
    project_id        bigint      NOT NULL,
    sequence          bigint      NOT NULL,
    type              text        NOT NULL,
    outcome           text        NOT NULL CHECK (outcome IN ('attempted', 'succeeded', 'failed', 'replayed', 'refused')),
    occurred_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor_kind        text        NOT NULL CHECK (actor_kind IN ('user', 'api_key', 'anonymous')),
    actor_id          text        NOT NULL DEFAULT '',
    peer              text        NOT NULL DEFAULT '',
    user_agent        text        NOT NULL DEFAULT '',
    rpc               text        NOT NULL,
    transport         text        NOT NULL DEFAULT '',
    resource_type     text        NOT NULL DEFAULT '',
    resource_id       text        NOT NULL DEFAULT '',
    project_public_id text        NOT NULL DEFAULT '',
    call_request_id   text        NOT NULL DEFAULT '',
    idempotency_key   text        NOT NULL DEFAULT '',
    code              text        NOT NULL DEFAULT '',
    reason            text        NOT NULL DEFAULT '',
    changed_fields    text[]      NOT NULL DEFAULT '{}',
    etag              text        NOT NULL DEFAULT '',
    PRIMARY KEY (project_id, sequence)
) PARTITION BY LIST (project_id);
-- Time ranges and the retention purge: events are appended in time order, so a BRIN index
-- (a few pages, next to nothing per insert) finds a range of them.
CREATE INDEX project_events_time_idx ON project_events USING brin (occurred_at);

-- Users, roles, projects themselves, and every refused call.
CREATE TABLE global_events (LIKE project_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE global_events DROP COLUMN project_id;
ALTER TABLE global_events ADD PRIMARY KEY (sequence);
CREATE INDEX global_events_time_idx ON global_events USING brin (occurred_at);

-- Append-only: nothing updates an event, and only the purges delete them (the retention purge,
-- and a deleted project's purge), which say so for their own session with
-- `SET altalune.purging_events = on`. This guards against the application's own mistakes; a
-- database owner can of course still drop the trigger.
CREATE FUNCTION refuse_event_change() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('altalune.purging_events', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'events are append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON project_events
    FOR EACH ROW EXECUTE FUNCTION refuse_event_change();
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON global_events
    FOR EACH ROW EXECUTE FUNCTION refuse_event_change();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON project_events
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_event_change();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON global_events
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_event_change();

-- Reading the log: a project's owners and admins; the global stream, administrators.
INSERT INTO permissions (name, scope, description) VALUES
    ('event:read', 'project', 'Read the project''s event log'),
    ('event:list', 'global',  'Read the global event log (users, roles, projects, refused calls)');
SELECT grant_permissions('owner', 'event:read');
SELECT grant_permissions('admin', 'event:read', 'event:list');
