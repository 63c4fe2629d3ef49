#!/bin/sh
# The goal: every feature below has its function and its test, and they pass.
missing=0
for f in reverse upper lower words trim palindrome; do
  if [ ! -f "tests/test_$f.c" ]; then echo "goal: no test for '$f' yet"; missing=1; fi
done
[ "$missing" = 0 ] && echo "goal: all features present and tested"
exit "$missing"
