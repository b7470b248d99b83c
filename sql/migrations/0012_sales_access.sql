-- Access: one group role per team (NOLOGIN), login users are granted into them (`memberflow access
-- create-user`). Least privilege; PUBLIC gets nothing. The role running the migrations (the platform's
-- own role) owns schema sales and everything in it. Strategy and how-tos: docs/access.md.
--
-- Roles are cluster-wide, so they are created only when missing: several databases (staging, tests)
-- can share one server. Privileges below are per database.

DO $$
DECLARE
    team text;
BEGIN
    FOREACH team IN ARRAY ARRAY['logistics', 'analytics', 'sales'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = team) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', team);
        ELSIF EXISTS (SELECT FROM pg_roles WHERE rolname = team
                      AND (rolcanlogin OR rolsuper OR rolcreatedb OR rolcreaterole OR rolbypassrls)) THEN
            -- someone else's role of that name: never hand its powers to a team
            RAISE EXCEPTION 'role % exists and can log in or administer; a team role must be a plain NOLOGIN group',
                team;
        END IF;
    END LOOP;
    -- PUBLIC may not connect to or create temporary tables in this database; the teams may connect.
    EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO logistics, analytics, sales', current_database());
END $$;

-- Nothing for PUBLIC in the schemas (PostgreSQL gives PUBLIC USAGE on schema public by default) ...
REVOKE ALL ON SCHEMA public FROM PUBLIC;
REVOKE ALL ON SCHEMA sales FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA sales FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA sales FROM PUBLIC;
-- ... nor EXECUTE on functions (PUBLIC's default), now or for functions the platform creates later.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA sales FROM PUBLIC;
ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

GRANT USAGE ON SCHEMA sales TO logistics, analytics, sales;

-- Members as analysts see them: no contact data (email, mobile_no) and the year of birth instead of
-- the date. A view runs with its owner's rights, so analytics needs no privilege on sales.members.
CREATE VIEW sales.member_profiles AS
SELECT membership_id,
       first_name,
       last_name,
       CAST(extract(year FROM date_of_birth) AS integer) AS birth_year,
       above_18,
       source_batch,
       created_at AS member_since,
       updated_at
FROM sales.members;
COMMENT ON VIEW sales.member_profiles IS
    'Members without contact data (email, mobile_no) or exact birthday: what analytics and the warehouse see.';

-- logistics: read transactions, their lines and the items (weights); mark transactions completed.
-- Column-level UPDATE: status and completed_at only; the pending -> completed rule is a trigger on
-- the table (0011) and holds for every writer.
GRANT SELECT ON sales.transactions, sales.transaction_lines, sales.items TO logistics;
GRANT UPDATE (status, completed_at) ON sales.transactions TO logistics;

-- analytics: read what the analysis of sales and membership needs; members only through the view.
GRANT SELECT ON sales.manufacturers, sales.items, sales.transactions, sales.transaction_lines,
    sales.member_profiles TO analytics;

-- sales: the catalogue. Column lists keep ids (identity) and creation times with the database.
GRANT SELECT, DELETE ON sales.manufacturers, sales.items TO sales;
GRANT INSERT (name), UPDATE (name) ON sales.manufacturers TO sales;
GRANT INSERT (name, manufacturer_id, cost, weight_kg, discontinued_at),
      UPDATE (name, manufacturer_id, cost, weight_kg, discontinued_at) ON sales.items TO sales;
