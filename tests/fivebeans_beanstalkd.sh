#!/usr/bin/env bash
# tests/fivebeans_beanstalkd.sh: fivebeans' own suite against a real
# beanstalkd (tests/fivebeans.sh), the proof that the harness is sound.
exec "$(dirname "$0")/fivebeans.sh" beanstalkd
