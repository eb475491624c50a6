#!/usr/bin/env bash
# libpq through one long psql session, writing through failovers; see
# README.md (line protocol). usage: psql_writer.sh CONNINFO FIRST_ID [PAUSE_MS]
#
# psql runs with ON_ERROR_STOP, fed one INSERT and one \echo at a time
# through a FIFO: the echo's line comes back only if the INSERT succeeded.
# On any error (or a lost connection, after which a non-interactive psql
# exits) psql ends, and a new one connects with the same connection string.
# psql prints its `connected` line with its first ack.
set -u
conn=$1
id=$2
pause_ms=${3:-0}
ms() { local t=$EPOCHREALTIME; local f=${t#*.}; printf '%s%s.%s' "${t%.*}" "${f:0:3}" "${f:3:3}"; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# A write to a psql that died fails (EPIPE) instead of killing this script.
trap '' PIPE
mkfifo "$dir/in" "$dir/out" "$dir/sleep"
# A pause without forking sleep(1) each time: a read that times out on a
# FIFO nobody writes to (opened read-write, so the open does not block).
exec {nap}<>"$dir/sleep"
pause=$(printf '0.%03d' "$pause_ms")
[ "$pause_ms" -ge 1000 ] && pause=$((pause_ms / 1000))
touch "$dir/run"
# Our own stdin closing means stop. (A background job reads /dev/null
# unless told otherwise.)
( cat >/dev/null; rm -f "$dir/run" ) <&0 &
while [ -e "$dir/run" ]; do
  psql "$conn" -X -q -A -t -v ON_ERROR_STOP=1 <"$dir/in" >"$dir/out" 2>&1 &
  pid=$!
  exec {in}>"$dir/in" {out}<"$dir/out"
  first=1
  while [ -e "$dir/run" ]; do
    mine=$id
    id=$((id + 1))
    printf 'INSERT INTO acked(id) VALUES (%d);\n\\echo ack %d\n' "$mine" "$mine" >&"$in" 2>/dev/null || break
    got=
    while IFS= read -r l <&"$out"; do
      if [ "$l" = "ack $mine" ]; then got=1; break; fi
      echo "err $(ms) ${l//$'\r'/ }"
    done
    [ -n "$got" ] || break
    if [ -n "$first" ]; then echo "connected $(ms)"; first=; fi
    echo "ack $mine $(ms)"
    if [ "$pause_ms" -gt 0 ]; then read -r -t "$pause" -u "$nap" _ || true; fi
  done
  exec {in}>&- {out}<&-
  wait "$pid" 2>/dev/null
  if [ -e "$dir/run" ]; then sleep 0.02; fi
done
exit 0
