"""COPY a million rows into hadr and back out with psycopg 3's cursor.copy()
(tests/copy.rs). Prints "in N out N sum S" for the test to check."""
import sys

import psycopg

conninfo, n = sys.argv[1], int(sys.argv[2])
with psycopg.connect(conninfo, autocommit=True) as conn:
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE m(id bigint, label text, at timestamptz)")
        with cur.copy("COPY m (id, label, at) FROM STDIN") as copy:
            for i in range(n):
                copy.write_row((i, f"row {i}", None))
        cur.execute("SELECT count(*), sum(id) FROM m")
        count_in, total = cur.fetchone()
        count_out = 0
        with cur.copy("COPY m (id, label) TO STDOUT") as copy:
            for row in copy.rows():
                count_out += 1
        print(f"in {count_in} out {count_out} sum {total}")
