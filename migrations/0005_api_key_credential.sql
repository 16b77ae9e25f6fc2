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
        SELECT live_project, k.secret_hash, k.scopes, k.active, k.expires_at <= now(),
               (k.last_used_at IS NULL OR k.last_used_at < now() - last_used_resolution)
        FROM api_keys k
        WHERE k.project_id = live_project AND k.public_id = key_public_id;
END
$$;
