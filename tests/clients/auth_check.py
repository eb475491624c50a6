# Log in with psycopg 3 and run one query: prints "ok 42" or "error SQLSTATE message".
# Used by tests/auth.rs.
import sys

import psycopg

try:
    with psycopg.connect(sys.argv[1]) as c:
        print("ok", c.execute("SELECT 41 + 1").fetchone()[0])
except psycopg.Error as e:
    print("error", e.sqlstate, str(e).replace("\n", " "))
