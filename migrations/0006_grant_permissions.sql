-- A new domain's migration seeds its permissions and grants them to the built-in roles with one
-- call per role, e.g. SELECT grant_permissions('member', 'team:read', 'team:write');
-- (0003 granted the first catalog with one CASE statement that later migrations cannot extend.)
--
-- Refuses an unknown role or permission (a typo must fail the migration, not grant nothing), and
-- granting twice is a no-op, so a grant can be restated safely.
CREATE FUNCTION grant_permissions(role_name text, VARIADIC permission_names text[])
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    role_key bigint;
    unknown text[];
BEGIN
    SELECT id INTO role_key FROM roles WHERE name = role_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'grant_permissions: no role named %', role_name;
    END IF;
    SELECT array_agg(wanted) INTO unknown
    FROM unnest(permission_names) AS wanted
    WHERE NOT EXISTS (SELECT 1 FROM permissions p WHERE p.name = wanted);
    IF unknown IS NOT NULL THEN
        RAISE EXCEPTION 'grant_permissions: no permission named %', array_to_string(unknown, ', ');
    END IF;
    INSERT INTO role_permissions (role_id, permission_id)
    SELECT role_key, p.id FROM permissions p WHERE p.name = ANY (permission_names)
    ON CONFLICT DO NOTHING;
END;
$$;
