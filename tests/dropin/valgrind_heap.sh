#!/bin/sh
# valgrind_heap.sh PROGRAM — memcheck must report valgrind_heap.c's use after free and its leak.
set -u
out=$(valgrind --leak-check=full --error-exitcode=0 "$1" 2>&1)
status=$?
fail=0
echo "$out" | grep -q "Invalid read of size 1" || { echo "no 'Invalid read' for the use after free"; fail=1; }
echo "$out" | grep -q "inside a block of size 100 free'd" || { echo "the read is not tied to the freed 100-byte block"; fail=1; }
echo "$out" | grep -q "300 bytes in 1 blocks are definitely lost" || { echo "no leak of 300 bytes reported"; fail=1; }
echo "$out" | grep -q "^done" || { echo "the program did not finish"; fail=1; }
[ $status -eq 0 ] || { echo "valgrind exited $status"; fail=1; }
if [ $fail -ne 0 ]; then echo "$out"; exit 1; fi
echo "memcheck reported the use after free and the leak"
