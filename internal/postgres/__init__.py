"""PostgreSQL support: embedded server launcher, migrations, block partitions, and what every
repository shares (rows.py: reads and refused writes; statements.py: SQL fragments; errors.py)."""
