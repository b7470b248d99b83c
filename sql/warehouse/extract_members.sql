-- PostgreSQL -> dim_member: members as analysts may see them (no email, mobile or birthday).
SELECT membership_id, first_name, last_name, birth_year, above_18, source_batch, member_since
FROM sales.member_profiles
