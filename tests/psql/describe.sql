CREATE TABLE branches(id serial PRIMARY KEY, name varchar(20) NOT NULL UNIQUE, opened timestamptz DEFAULT now());
CREATE TABLE accounts(id integer PRIMARY KEY, branch int REFERENCES branches(id), balance numeric(12,2) DEFAULT 0, note text);
CREATE INDEX accounts_branch ON accounts(branch);
CREATE VIEW rich AS SELECT id, balance FROM accounts WHERE balance > 1000;
\dt
\d
\di
\dv
\dn
\l
\du
\d accounts
\d+ branches
\d rich
\d accounts_branch
\x
SELECT 1 AS one, 'two' AS two;
\x
SELECT table_name, table_type FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1;
SELECT column_name, data_type, is_nullable, character_maximum_length, numeric_precision, numeric_scale, udt_name, column_default FROM information_schema.columns WHERE table_name = 'branches' ORDER BY ordinal_position;
SELECT c.relname, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid WHERE c.relname = 'accounts' ORDER BY a.attnum;
