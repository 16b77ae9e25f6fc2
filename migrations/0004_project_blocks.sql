-- Project tables hold BLOCKS of projects: partition `<table>_b<n>` of a table partitioned by
-- LIST (project_id) holds the 1024 consecutive project ids n*1024 .. n*1024+1023, so the number of
-- partitions grows with projects / 1024, and CreateProject does no DDL. See docs/tenancy.md.
-- This migration defines the block functions and moves every existing per-project partition's
-- rows into block partitions, in its one transaction.

-- The schema's block size, chosen from measurements (docs/tenancy.md). A partition's bound is kept in
-- pg_class, which has no TOAST: 4096 ids per partition do not fit there, 1024 do. Changing it needs a
-- migration that re-partitions every project table.
CREATE FUNCTION project_block_size() RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS 'SELECT 1024::bigint';

-- Every table of this schema partitioned by LIST (project_id): read from the catalog, so a
-- migration that adds one needs no hand-kept list.
CREATE FUNCTION project_partitioned_tables() RETURNS SETOF regclass
    LANGUAGE sql STABLE AS $$
    SELECT c.oid::regclass
    FROM pg_partitioned_table pt
    JOIN pg_class c ON c.oid = pt.partrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_attribute a ON a.attrelid = pt.partrelid AND a.attnum = pt.partattrs[0]
    WHERE pt.partstrat = 'l' AND pt.partnatts = 1 AND a.attname = 'project_id'
      AND n.nspname = current_schema() AND NOT c.relispartition
    ORDER BY c.relname
$$;

-- The block a project id belongs to, and the name of that block's partition of a table.
CREATE FUNCTION project_block(project_id bigint) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS 'SELECT project_id / project_block_size()';

CREATE FUNCTION project_block_partition(parent regclass, block bigint) RETURNS text
    LANGUAGE sql STABLE AS $$
    SELECT relname || '_b' || block FROM pg_class WHERE oid = parent
$$;

-- The last id handed out by the projects sequence (0 before the first project).
CREATE FUNCTION project_last_issued_id() RETURNS bigint
    LANGUAGE sql VOLATILE AS $$
    SELECT coalesce(pg_sequence_last_value(pg_get_serial_sequence('projects', 'id')::regclass), 0)
$$;

-- The blocks that must have partitions: every block holding a project row (live, or deleted and
-- waiting for its purge), the block the sequence is in, and the next one (made ahead of need).
-- The blocks in use are found by skipping through the primary key, one probe per block, so the
-- background upkeep costs the same at 10 and at 100,000 projects.
CREATE FUNCTION project_blocks_needed() RETURNS SETOF bigint
    LANGUAGE sql VOLATILE AS $$
    WITH RECURSIVE used (block) AS (
        SELECT project_block(min(id)) FROM projects
        UNION ALL
        SELECT (SELECT project_block(min(p.id)) FROM projects p WHERE p.id >= (used.block + 1) * project_block_size())
        FROM used WHERE used.block IS NOT NULL
    )
    SELECT block FROM used WHERE block IS NOT NULL
    UNION
    SELECT generate_series(project_block(project_last_issued_id()), project_block(project_last_issued_id()) + 1)
$$;

-- Attach the missing block partitions of every project table; returns how many were made, the
-- last project id they now cover and the block size. Serialised by a transaction-level advisory lock, so the keepers
-- of several processes, `altalune migrate` and CreateProject's inline fallback can all call it.
-- CREATE TABLE + ATTACH PARTITION takes SHARE UPDATE EXCLUSIVE on the parent (reads and writes go
-- on), where CREATE TABLE ... PARTITION OF would take ACCESS EXCLUSIVE.
CREATE FUNCTION ensure_project_blocks(OUT created integer, OUT covered_through bigint, OUT block_size bigint)
    LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    size constant bigint := project_block_size();
    parent regclass;
    needed bigint[];
    existing text[];
    block bigint;
    child text;
BEGIN
    PERFORM pg_advisory_xact_lock(7813746515301351425);  -- 'altalune blocks'
    created := 0;
    block_size := size;
    needed := ARRAY(SELECT b FROM project_blocks_needed() AS b ORDER BY b);
    covered_through := (needed[array_upper(needed, 1)] + 1) * size - 1;
    FOR parent IN SELECT * FROM project_partitioned_tables() LOOP
        SELECT coalesce(array_agg(c.relname::text), '{}') INTO existing
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = parent AND NOT i.inhdetachpending;
        FOREACH block IN ARRAY needed LOOP
            child := project_block_partition(parent, block);
            CONTINUE WHEN child = ANY (existing);
            IF to_regclass(quote_ident(child)) IS NOT NULL THEN
                RAISE EXCEPTION 'table % exists but is not a partition of %', child, parent
                    USING HINT = 'a detached block is removed by the reaper; never re-attach it by hand';
            END IF;
            EXECUTE format(
                'CREATE TABLE %I (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED)',
                child, parent);
            EXECUTE format(
                'ALTER TABLE %s ATTACH PARTITION %I FOR VALUES IN (%s)', parent, child,
                (SELECT string_agg(v::text, ',') FROM generate_series(block * size, block * size + size - 1) AS v));
            created := created + 1;
        END LOOP;
    END LOOP;
END
$$;

-- True if every project table has an attached partition for the block of `project_id`.
CREATE FUNCTION project_block_ready(project_id bigint) RETURNS boolean
    LANGUAGE sql STABLE AS $$
    SELECT NOT EXISTS (
        SELECT 1 FROM project_partitioned_tables() AS parent
        WHERE NOT EXISTS (
            SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = parent AND NOT i.inhdetachpending
              AND c.relname = project_block_partition(parent, project_block(project_id))))
$$;

-- Block partitions no project can ever use again: every id of the block has been handed out and
-- no project row is in it. The caller must hold the creation fence (an exclusive advisory lock
-- that every project INSERT takes shared), so no transaction holding an id of the block is still
-- in flight. Also lists partitions left detach-pending and detached tables not yet dropped.
CREATE FUNCTION dead_project_blocks()
    RETURNS TABLE (parent regclass, partition_name text, state text)
    LANGUAGE sql VOLATILE AS $$
    WITH tables AS (SELECT t AS parent, relname::text AS parent_name FROM project_partitioned_tables() AS t
                    JOIN pg_class ON oid = t),
    candidates AS (
        SELECT t.parent, c.relname::text AS partition_name,
               CASE WHEN i.inhrelid IS NULL THEN 'detached'
                    WHEN i.inhdetachpending THEN 'detach_pending'
                    ELSE 'attached' END AS state,
               substr(c.relname, length(t.parent_name) + 3)::bigint AS block
        FROM tables t
        JOIN pg_class c ON c.relname ~ ('^' || t.parent_name || '_b[0-9]+$') AND c.relkind = 'r'
             AND c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
        LEFT JOIN pg_inherits i ON i.inhrelid = c.oid AND i.inhparent = t.parent
        WHERE (i.inhrelid IS NOT NULL OR NOT c.relispartition)
    )
    SELECT parent, partition_name, state FROM candidates
    WHERE (block + 1) * project_block_size() - 1 <= project_last_issued_id()
      AND NOT EXISTS (SELECT 1 FROM projects p
                      WHERE p.id BETWEEN block * project_block_size() AND (block + 1) * project_block_size() - 1)
    ORDER BY parent::text, block
$$;

-- Convert: set every per-project partition's rows aside, drop those partitions, make the block
-- partitions, put the rows back.
-- One transaction locks every old partition with its indexes and TOAST table: check first that
-- the server's lock table can hold that many, and say what to change if it cannot.
DO $$
DECLARE
    parent regclass;
    old regclass;
    fk name;
    definition text;
    columns text;
    locks_needed bigint;
    lock_slots bigint := current_setting('max_locks_per_transaction')::bigint
        * (current_setting('max_connections')::bigint + current_setting('max_prepared_transactions')::bigint);
BEGIN
    SELECT coalesce(sum(1 + (SELECT count(*) FROM pg_index x WHERE x.indrelid = c.oid)
                        + CASE WHEN c.reltoastrelid <> 0 THEN 2 ELSE 0 END), 0) + 100
    INTO locks_needed
    FROM project_partitioned_tables() AS t
    JOIN pg_inherits i ON i.inhparent = t
    JOIN pg_class c ON c.oid = i.inhrelid;
    IF locks_needed > lock_slots THEN
        RAISE EXCEPTION 'converting the per-project partitions needs about % locks in one transaction; this server''s lock table holds % (max_locks_per_transaction × (max_connections + max_prepared_transactions))', locks_needed, lock_slots
            USING HINT = format('Set max_locks_per_transaction to at least %s and restart PostgreSQL for this migration; it can be lowered again afterwards.',
                                locks_needed / (current_setting('max_connections')::bigint + current_setting('max_prepared_transactions')::bigint) + 1);
    END IF;
    -- The project tables' foreign keys are dropped first (one command each, for every partition)
    -- and added back once the rows are in place: one validating join instead of a check per row.
    CREATE TEMPORARY TABLE project_foreign_keys (parent regclass, name name, definition text) ON COMMIT DROP;
    INSERT INTO project_foreign_keys
    SELECT conrelid::regclass, conname, pg_get_constraintdef(oid) FROM pg_constraint
    WHERE contype = 'f' AND conparentid = 0 AND conrelid IN (SELECT * FROM project_partitioned_tables());
    FOR parent, fk IN SELECT f.parent, f.name FROM project_foreign_keys f LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', parent, fk);
    END LOOP;
    CREATE TEMPORARY TABLE moved_tables (parent regclass, columns text) ON COMMIT DROP;
    -- Rows are copied aside, the old partitions dropped while attached, then the rows go into the
    -- blocks. Detaching them one by one instead was quadratic (measured at 3,000 projects: 294 s;
    -- this way 10 s).
    FOR parent IN SELECT * FROM project_partitioned_tables() LOOP
        CONTINUE WHEN NOT EXISTS (SELECT 1 FROM pg_inherits WHERE inhparent = parent);
        -- Generated columns are computed again; identity values are kept as they are.
        SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO columns
        FROM pg_attribute
        WHERE attrelid = parent AND attnum > 0 AND NOT attisdropped AND attgenerated = '';
        EXECUTE format('CREATE TEMPORARY TABLE %I ON COMMIT DROP AS SELECT %s FROM %s',
                       'moving_' || parent::oid, columns, parent);
        INSERT INTO moved_tables VALUES (parent, columns);
        FOR old IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = parent LOOP
            EXECUTE format('DROP TABLE %s', old);
        END LOOP;
    END LOOP;
    PERFORM ensure_project_blocks();
    FOR parent, columns IN SELECT * FROM moved_tables LOOP
        EXECUTE format('INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM %I',
                       parent, columns, columns, 'moving_' || parent::oid);
    END LOOP;
    FOR parent, fk, definition IN SELECT * FROM project_foreign_keys LOOP
        EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I %s', parent, fk, definition);
    END LOOP;
END
$$;
