-- PostgreSQL -> dim_member: members as analysts may see them (member_key; no membership_id, email,
-- mobile or birthday).
SELECT member_key, first_name, last_name, birth_year, above_18, source_batch, member_since
FROM sales.member_profiles
