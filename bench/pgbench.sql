\set aid random(1, 100000)
\set delta random(-5000, 5000)
BEGIN;
UPDATE accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM accounts WHERE aid = :aid;
INSERT INTO history(aid, delta, mtime) VALUES (:aid, :delta, CURRENT_TIMESTAMP);
END;
