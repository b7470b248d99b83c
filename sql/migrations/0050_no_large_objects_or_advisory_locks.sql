-- In this database no team can create large objects or take advisory locks. PostgreSQL lets PUBLIC
-- execute both kinds of function by default: any user could create large objects (which they then
-- own) even in a read-only team, or take the advisory lock keys the platform waits on (the sales
-- demo's, the image hours') and stall its runs. The platform's role needs neither privilege from
-- PUBLIC: on the embedded server it is a superuser.
--
-- Function privileges live in each database's own catalog, so this holds here only; the other
-- databases of the embedded server refuse team connections altogether (memberflow_assets/postgres.py).
-- Only the functions' owner (a superuser) can revoke them: where the platform's role is not one
-- (RDS), nothing changes and a WARNING names what the administrator must revoke (docs/access.md).
DO $$
DECLARE
    functions regprocedure[];
    fn regprocedure;
    still_public text;
BEGIN
    SELECT array_agg(p.oid::regprocedure ORDER BY p.oid) INTO functions
    FROM pg_proc p
    WHERE p.pronamespace = 'pg_catalog'::regnamespace
      AND (p.proname ~ '^(lo_|loread$|lowrite$)' OR p.proname ~ '^pg_(try_)?advisory_')
      AND (p.proacl IS NULL OR EXISTS (SELECT FROM aclexplode(p.proacl) a WHERE a.grantee = 0));  -- 0 = PUBLIC
    FOREACH fn IN ARRAY coalesce(functions, '{}') LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', fn);
    END LOOP;
    SELECT string_agg(p.oid::regprocedure::text, ', ') INTO still_public
    FROM pg_proc p
    WHERE p.oid = ANY(functions)
      AND (p.proacl IS NULL OR EXISTS (SELECT FROM aclexplode(p.proacl) a WHERE a.grantee = 0));
    IF still_public IS NOT NULL THEN
        RAISE WARNING 'PUBLIC can still execute % in database %', still_public, current_database()
            USING HINT = 'only a superuser can revoke these; see "Production" in docs/access.md';
    END IF;
END $$;
