"""A psycopg 3 client writing through failovers; see README.md (line protocol).

usage: python3 psycopg_writer.py CONNINFO FIRST_ID [PAUSE_MS]
"""

import sys
import threading
import time

import psycopg

stop = threading.Event()


def line(s):
    sys.stdout.write(s + "\n")
    sys.stdout.flush()


def now():
    return "%.3f" % (time.time() * 1000.0)


def one_line(e):
    state = getattr(getattr(e, "diag", None), "sqlstate", None)
    text = "%s%s: %s" % (state + " " if state else "", type(e).__name__, e)
    return text.replace("\n", " ").replace("\r", " ")


def watch_stdin():
    while sys.stdin.buffer.read(4096):
        pass
    stop.set()


def main():
    if len(sys.argv) not in (3, 4):
        sys.stderr.write("usage: psycopg_writer.py CONNINFO FIRST_ID [PAUSE_MS]\n")
        sys.exit(2)
    conninfo, next_id = sys.argv[1], int(sys.argv[2])
    pause = int(sys.argv[3]) / 1000.0 if len(sys.argv) == 4 else 0.0
    threading.Thread(target=watch_stdin, daemon=True).start()
    while not stop.is_set():
        try:
            conn = psycopg.connect(conninfo, autocommit=True)
        except psycopg.Error as e:
            line("err %s connect: %s" % (now(), one_line(e)))
            time.sleep(0.02)
            continue
        line("connected %s" % now())
        try:
            with conn:
                while not stop.is_set():
                    mine = next_id
                    next_id += 1
                    conn.execute("INSERT INTO acked(id) VALUES (%s)", (mine,))
                    line("ack %d %s" % (mine, now()))
                    if pause > 0:
                        time.sleep(pause)
        except psycopg.Error as e:
            line("err %s %s" % (now(), one_line(e)))
            time.sleep(0.02)


if __name__ == "__main__":
    main()
