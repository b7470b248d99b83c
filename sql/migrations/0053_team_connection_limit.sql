-- At most 10 sessions at once per team user (memberflow_assets/sales/access.py sets it for new users):
-- one person, or one leaked password, cannot take every connection of the server (max_connections)
-- and lock the platform out. A user cannot raise their own limit. Roles are cluster-wide, so this
-- covers the team users of every database on the server; a user this role may not alter (created by
-- someone else, outside memberflow) is named in a WARNING instead.
DO $$
DECLARE
    member text;
BEGIN
    FOR member IN
        SELECT DISTINCT u.rolname
        FROM pg_auth_members am
        JOIN pg_roles g ON g.oid = am.roleid
        JOIN pg_roles u ON u.oid = am.member
        WHERE g.rolname IN ('logistics', 'analytics', 'sales') AND u.rolcanlogin AND u.rolconnlimit = -1
    LOOP
        BEGIN
            EXECUTE format('ALTER ROLE %I CONNECTION LIMIT 10', member);
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE WARNING 'team user % keeps an unlimited number of sessions: %', member, SQLERRM;
        END;
    END LOOP;
END $$;
