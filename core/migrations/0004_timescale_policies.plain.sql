-- nothing to change on plain PostgreSQL: retention is ioc_maintain()'s partition drop.
SELECT 1;
