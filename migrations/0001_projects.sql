-- Tenants. Global (not partitioned): every project-scoped table is partitioned by projects.id.
CREATE TABLE projects (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    public_id   char(14)    NOT NULL,
    name        varchar(50) NOT NULL,
    description varchar(200) NOT NULL DEFAULT '',
    timezone    varchar(64) NOT NULL,
    environment text        NOT NULL CHECK (environment IN ('live', 'sandbox')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    -- Set when DeleteProject hides the project; the reaper then drops its partitions and the row.
    deleted_at  timestamptz
);

CREATE UNIQUE INDEX projects_public_id_key ON projects (public_id);
-- Names are unique case-insensitively among live projects; a deleted project frees its name.
CREATE UNIQUE INDEX projects_live_name_key ON projects (lower(name)) WHERE deleted_at IS NULL;
CREATE INDEX projects_deleted_idx ON projects (deleted_at) WHERE deleted_at IS NOT NULL;
