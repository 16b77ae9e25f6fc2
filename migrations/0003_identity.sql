-- Identity and access: users, the permission catalog, roles, grants, project membership, API keys.

-- Public ids for rows seeded by migrations; the application mints its own (internal/ids.py).
CREATE FUNCTION altalune_public_id() RETURNS char(14) LANGUAGE sql VOLATILE AS $$
    SELECT string_agg(substr('23456789abcdefghjklmnpqrstuvwxyz', 1 + floor(random() * 32)::int, 1), '')
    FROM generate_series(1, 14)
$$;

-- Global: a user may belong to many projects.
CREATE TABLE users (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    public_id   char(14)     NOT NULL,
    email       varchar(254) NOT NULL,
    email_key   varchar(254) GENERATED ALWAYS AS (lower(email)) STORED,
    first_name  varchar(100) NOT NULL,
    last_name   varchar(100) NOT NULL DEFAULT '',
    active      boolean      NOT NULL DEFAULT true,
    created_at  timestamptz  NOT NULL DEFAULT now(),
    updated_at  timestamptz  NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_public_id_key ON users (public_id);
CREATE UNIQUE INDEX users_email_key ON users (email_key);

-- The catalog: exactly the permissions named by the RPCs' access options (a test keeps them equal).
CREATE TABLE permissions (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    public_id   char(14)     NOT NULL DEFAULT altalune_public_id(),
    name        varchar(100) NOT NULL CHECK (name ~ '^[a-z][a-z_]*:[a-z][a-z_]*$'),
    description varchar(200) NOT NULL DEFAULT '',
    scope       text         NOT NULL CHECK (scope IN ('global', 'project')),
    created_at  timestamptz  NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX permissions_public_id_key ON permissions (public_id);
CREATE UNIQUE INDEX permissions_name_key ON permissions (name);

CREATE TABLE roles (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    public_id   char(14)     NOT NULL DEFAULT altalune_public_id(),
    name        varchar(50)  NOT NULL CHECK (name ~ '^[a-z][a-z0-9_-]*$'),
    description varchar(200) NOT NULL DEFAULT '',
    -- owner/admin/member/viewer: memberships name them, so they are never renamed or deleted.
    builtin     boolean      NOT NULL DEFAULT false,
    created_at  timestamptz  NOT NULL DEFAULT now(),
    updated_at  timestamptz  NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX roles_public_id_key ON roles (public_id);
CREATE UNIQUE INDEX roles_name_key ON roles (name);

-- A role's grants go with the role; a permission in use cannot vanish from under a role.
CREATE TABLE role_permissions (
    role_id       bigint NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    permission_id bigint NOT NULL REFERENCES permissions (id) ON DELETE RESTRICT,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (role_id, permission_id)
);

-- A user's global roles. RESTRICT: a role held by someone cannot be deleted (ROLE_IN_USE).
CREATE TABLE user_roles (
    user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role_id    bigint NOT NULL REFERENCES roles (id) ON DELETE RESTRICT,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, role_id)
);
CREATE INDEX user_roles_role_idx ON user_roles (role_id);

-- Global, not partitioned: "a user's projects" must not scan every partition.
CREATE TABLE project_members (
    project_id bigint NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       text   NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, user_id)
);
CREATE INDEX project_members_user_idx ON project_members (user_id);

-- Project-scoped: one list partition per project, like every project's data.
CREATE TABLE api_keys (
    project_id   bigint       NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    id           bigint GENERATED ALWAYS AS IDENTITY,
    public_id    char(14)     NOT NULL,
    name         varchar(100) NOT NULL,
    name_key     varchar(100) GENERATED ALWAYS AS (lower(name)) STORED,
    -- HMAC-SHA256 of the whole key under the server's pepper; the key itself is never stored.
    secret_hash  bytea        NOT NULL CHECK (octet_length(secret_hash) = 32),
    -- First characters of the secret part, shown in the key's prefix.
    secret_hint  varchar(8)   NOT NULL,
    scopes       text[]       NOT NULL,
    active       boolean      NOT NULL DEFAULT true,
    expires_at   timestamptz  NOT NULL,
    last_used_at timestamptz,
    created_at   timestamptz  NOT NULL DEFAULT now(),
    updated_at   timestamptz  NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, id)
) PARTITION BY LIST (project_id);
CREATE UNIQUE INDEX api_keys_public_id_key ON api_keys (project_id, public_id);
CREATE UNIQUE INDEX api_keys_name_key ON api_keys (project_id, name_key);

INSERT INTO permissions (name, scope, description) VALUES
    ('project:create',  'global',  'Create projects (the creator becomes their owner)'),
    ('project:list',    'global',  'List every project'),
    ('user:read',       'global',  'Read users'),
    ('user:write',      'global',  'Create, change, activate and deactivate users'),
    ('role:read',       'global',  'Read roles'),
    ('role:write',      'global',  'Create and change roles'),
    ('role:delete',     'global',  'Delete roles'),
    ('permission:read', 'global',  'Read the permission catalog'),
    ('iam:read',        'global',  'Read user roles, role grants and a user''s projects'),
    ('iam:write',       'global',  'Assign roles to users and permissions to roles'),
    ('project:read',    'project', 'Read the project'),
    ('project:write',   'project', 'Change the project'),
    ('project:delete',  'project', 'Delete the project'),
    ('employee:read',   'project', 'Read employees'),
    ('employee:write',  'project', 'Create and change employees'),
    ('employee:delete', 'project', 'Delete employees'),
    ('apikey:read',     'project', 'Read API keys (never their secrets)'),
    ('apikey:write',    'project', 'Create, change, activate and deactivate API keys'),
    ('apikey:delete',   'project', 'Delete API keys'),
    ('member:read',     'project', 'Read the project''s members'),
    ('member:write',    'project', 'Add, change and remove the project''s members');

INSERT INTO roles (name, description, builtin) VALUES
    ('owner',  'Everything inside a project, including deleting it', true),
    ('admin',  'Administers the service; inside a project, everything but deleting it', true),
    ('member', 'Works with a project''s data', true),
    ('viewer', 'Reads a project''s data', true);

INSERT INTO role_permissions (role_id, permission_id)
SELECT r.id, p.id
FROM roles r JOIN permissions p ON
    CASE r.name
        WHEN 'owner'  THEN p.scope = 'project'
        WHEN 'admin'  THEN p.name <> 'project:delete'
        WHEN 'member' THEN p.name IN ('project:read', 'employee:read', 'employee:write', 'employee:delete',
                                      'apikey:read', 'member:read')
        WHEN 'viewer' THEN p.name IN ('project:read', 'employee:read', 'apikey:read', 'member:read')
    END;
