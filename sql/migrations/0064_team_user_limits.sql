-- Every team user logs in with limits (memberflow_assets/sales/access.py TEAM_USER_LIMITS sets them for new
-- users; this, for users created before): temporary files of at most 2 GB per session (a user cannot
-- raise it: only a superuser may set temp_file_limit), statements of at most 30 minutes, and a session
-- idle in an open transaction for 15 minutes is ended — it would hold locks the platform waits for and
-- keep VACUUM from cleaning up. A setting the user already has is left as it is (an
-- administrator may have chosen another value). Roles are cluster-wide, like 0053; where this role may
-- not set one (temp_file_limit on RDS) a WARNING names it instead.
DO $$
DECLARE
    member text;
    limit_name text;
    limit_value text;
BEGIN
    FOR member IN
        SELECT DISTINCT u.rolname
        FROM pg_auth_members am
        JOIN pg_roles g ON g.oid = am.roleid
        JOIN pg_roles u ON u.oid = am.member
        WHERE g.rolname IN ('logistics', 'analytics', 'sales') AND u.rolcanlogin
    LOOP
        FOR limit_name, limit_value IN
            VALUES ('temp_file_limit', '2GB'), ('statement_timeout', '30min'),
                   ('idle_in_transaction_session_timeout', '15min')
        LOOP
            CONTINUE WHEN EXISTS (
                SELECT FROM pg_db_role_setting s
                WHERE s.setrole = (SELECT oid FROM pg_roles WHERE rolname = member) AND s.setdatabase = 0
                  AND EXISTS (SELECT FROM unnest(s.setconfig) c WHERE c LIKE limit_name || '=%'));
            BEGIN
                EXECUTE format('ALTER ROLE %I SET %I = %L', member, limit_name, limit_value);
            EXCEPTION WHEN insufficient_privilege THEN
                RAISE WARNING 'team user % has no % (%): a superuser must set it', member, limit_name, SQLERRM;
            END;
        END LOOP;
    END LOOP;
END $$;
