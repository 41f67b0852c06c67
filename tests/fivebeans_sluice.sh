#!/usr/bin/env bash
# tests/fivebeans_sluice.sh: fivebeans' own suite against sluice's beanstalk
# listener (tests/fivebeans.sh), issue #11's proof with a real client.
exec "$(dirname "$0")/fivebeans.sh" sluice
