"""Projects: the tenants. Every project-scoped table is list-partitioned by
project, one partition per block of project ids (docs/tenancy.md)."""
