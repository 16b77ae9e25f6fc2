-- The reference project-scoped domain: one list partition per project (created with the project).
CREATE TABLE employees (
    project_id  bigint       NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    id          bigint GENERATED ALWAYS AS IDENTITY,
    public_id   char(14)     NOT NULL,
    name        varchar(100) NOT NULL,
    email       varchar(254) NOT NULL,
    -- Uniqueness is case-insensitive; a plain column keeps the index usable on every partition.
    email_key   varchar(254) GENERATED ALWAYS AS (lower(email)) STORED,
    role        varchar(100) NOT NULL,
    department  varchar(100) NOT NULL,
    status      text         NOT NULL CHECK (status IN ('active', 'inactive')),
    created_at  timestamptz  NOT NULL DEFAULT now(),
    updated_at  timestamptz  NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, id)
) PARTITION BY LIST (project_id);

CREATE UNIQUE INDEX employees_public_id_key ON employees (project_id, public_id);
CREATE UNIQUE INDEX employees_email_key ON employees (project_id, email_key);
CREATE INDEX employees_status_idx ON employees (project_id, status);
