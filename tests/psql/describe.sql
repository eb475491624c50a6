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
