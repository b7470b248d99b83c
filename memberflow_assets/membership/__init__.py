"""Membership applications: landing zone -> classified members (files and sales.members)."""
