"""PostgreSQL support: embedded server launcher, migrations."""
