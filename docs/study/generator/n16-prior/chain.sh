#!/usr/bin/env bash
# after the N = 16 arms: the N = 8 pair of arms, two workers
while pgrep -f "run.sh (check|prior)" > /dev/null; do sleep 20; done
./run.sh n8new600 1 3 5 7 > run-c.log 2>&1 &
./run.sh n8prior 1 3 5 7 > run-d.log 2>&1 &
wait
./run.sh n8new600 2 4 6 8 > run-e.log 2>&1 &
./run.sh n8prior 2 4 6 8 > run-f.log 2>&1 &
wait
