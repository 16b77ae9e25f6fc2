-- The API key lookup every call with an API key makes: the key's project (live) and the key row,
-- in one statement and one round trip.
--
-- PL/pgSQL on purpose: the key statement is planned with the project's internal id as a constant
-- (the pool forces custom plans), so only the project's block partition is opened. The same lookup
-- written as a join would plan and lock every partition of api_keys.
CREATE FUNCTION api_key_credential(project_public_id bpchar, key_public_id bpchar, last_used_resolution interval)
RETURNS TABLE (
    project_id      bigint,
    secret_hash     bytea,
    scopes          text[],
    active          boolean,
    expires_at      timestamptz,
    expired         boolean,
    stale_last_used boolean
)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    live_project bigint;
BEGIN
    SELECT p.id INTO live_project FROM projects p
    WHERE p.public_id = project_public_id AND p.deleted_at IS NULL;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY
        SELECT live_project, k.secret_hash, k.scopes, k.active, k.expires_at, k.expires_at <= now(),
               (k.last_used_at IS NULL OR k.last_used_at < now() - last_used_resolution)
        FROM api_keys k
        WHERE k.project_id = live_project AND k.public_id = key_public_id;
END
$$;

-- A user's membership in a live project: its role, and the project permissions of the built-in
-- role of the same name. The one statement of this rule, used by user_credential() below and by
-- the authorizer (internal/auth/store.py). Plain SQL, so the planner inlines it where it is used.
CREATE FUNCTION project_membership(member_id bigint, in_project bpchar)
RETURNS TABLE (project_id bigint, role text, permissions text[])
LANGUAGE sql STABLE AS $$
    SELECT pr.id, pm.role,
           ARRAY(SELECT p.name::text FROM roles r
                 JOIN role_permissions rp ON rp.role_id = r.id
                 JOIN permissions p ON p.id = rp.permission_id
                 WHERE r.name = pm.role AND p.scope = 'project')
    FROM projects pr
    JOIN project_members pm ON pm.project_id = pr.id AND pm.user_id = member_id
    WHERE pr.public_id = in_project AND pr.deleted_at IS NULL
$$;

-- The lookup every call with a login JWT makes: the user, their global permissions and their
-- membership in the call's project (project_membership() above), in one statement.
--
-- None of these tables is partitioned, so the statement is planned once per connection (generic
-- plan) instead of on every call: the pool's force_custom_plan exists for partitioned tables, and
-- planning this join costs about a millisecond, several times its execution.
CREATE FUNCTION user_credential(by_public_id bpchar, by_email text, project_public_id bpchar)
RETURNS TABLE (
    id                 bigint,
    public_id          bpchar,
    active             boolean,
    global_permissions text[],
    member_project_id  bigint,
    member_role        text,
    member_permissions text[]
)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    who users%ROWTYPE;
BEGIN
    IF by_public_id IS NOT NULL THEN
        SELECT * INTO who FROM users u WHERE u.public_id = by_public_id;
    ELSE
        SELECT * INTO who FROM users u WHERE u.email_key = lower(by_email);
    END IF;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY
        SELECT who.id, who.public_id, who.active,
               ARRAY(SELECT DISTINCT p.name::text FROM user_roles ur
                     JOIN role_permissions rp ON rp.role_id = ur.role_id
                     JOIN permissions p ON p.id = rp.permission_id
                     WHERE ur.user_id = who.id AND p.scope = 'global'),
               membership.project_id, membership.role, membership.permissions
        FROM (SELECT 1) AS one
        LEFT JOIN LATERAL project_membership(who.id, project_public_id) AS membership ON true;
END
$$;
