-- Teams see members through a surrogate key, never the membership_id. The ID is
-- <last name>_<first 5 hex of SHA-256 of the birthday>: with the last name (and analytics' birth year)
-- anyone holding it recovers the exact birthday in at most 366 tries. member_key is random, so it
-- says nothing about the member; it is assigned once, when the member is first loaded, and an
-- upsert keeps it.
ALTER TABLE sales.members ADD COLUMN member_key uuid NOT NULL DEFAULT gen_random_uuid();
ALTER TABLE sales.members ADD CONSTRAINT members_member_key_unique UNIQUE (member_key);
COMMENT ON COLUMN sales.members.member_key IS
    'Random surrogate key: how the teams and the warehouse see a member (membership_id reveals the birthday).';

-- Members as analysts see them: the key, names, year of birth; no membership_id, contact data or
-- birthday. A view runs with its owner's rights: analytics needs no privilege on sales.members.
DROP VIEW sales.member_profiles;
CREATE VIEW sales.member_profiles AS
SELECT member_key,
       first_name,
       last_name,
       CAST(extract(year FROM date_of_birth) AS integer) AS birth_year,
       above_18,
       source_batch,
       created_at AS member_since,
       updated_at
FROM sales.members;
COMMENT ON VIEW sales.member_profiles IS
    'Members by member_key, without membership_id, contact data or birthday: what analytics and the warehouse see.';

-- Transactions as the teams see them: the member as member_key.
CREATE VIEW sales.member_transactions AS
SELECT t.transaction_id,
       m.member_key,
       t.total_price,
       t.total_weight_kg,
       t.status,
       t.created_at,
       t.completed_at,
       t.updated_at
FROM sales.transactions t
JOIN sales.members m USING (membership_id);
COMMENT ON VIEW sales.member_transactions IS
    'Transactions with the member as member_key (no membership_id): what logistics, analytics and the warehouse read.';

-- No team reads sales.transactions.membership_id: every other column stays readable (logistics'
-- UPDATE ... WHERE needs them), the member comes through the views.
REVOKE SELECT ON sales.transactions FROM logistics, analytics;
GRANT SELECT (transaction_id, total_price, total_weight_kg, status, created_at, completed_at, updated_at)
    ON sales.transactions TO logistics, analytics;
GRANT SELECT ON sales.member_profiles TO analytics;
GRANT SELECT ON sales.member_transactions TO logistics, analytics;
