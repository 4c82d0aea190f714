#!/usr/bin/env bash
# check-synopsis.sh PROGRAM: the usage block of `PROGRAM --help` (up to the
# first blank line, "usage:" dropped) must equal the SYNOPSIS of its man
# page, word for word.
set -u
prog=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
help_words=$("$root/bin/$prog" --help | awk 'NF == 0 {exit} {print}' | tr -s ' \t' '\n\n' | grep -v '^usage:$' | grep -v '^$')
man_words=$(mandoc -Tascii "$root/man/$prog.1" | col -b |
    awk '/^[A-Z][A-Z ]*$/ {s = ($0 == "SYNOPSIS"); next} s {print}' | tr -s ' \t' '\n\n' | grep -v '^$')
if [ "$help_words" != "$man_words" ]; then
    echo "$prog --help and the SYNOPSIS of $prog.1 differ:"
    diff <(echo "$help_words") <(echo "$man_words")
    exit 1
fi
echo "$prog: --help matches SYNOPSIS"
