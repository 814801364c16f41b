#!/bin/sh
# Test wrapper for /usr/bin/ctr (capture.sh scenarios 10 and 12): for `ctr run`, the container's `sh -c` script
# sleeps 30 s after its check, so the smoke script can be interrupted while a live container is running.
case " $* " in
*" run "*)
    prev=''
    for a; do
        shift
        if [ "$prev" = -c ]; then a="$a
sleep 30"; fi
        set -- "$@" "$a"
        prev=$a
    done
    ;;
esac
exec /usr/local/bin/ctr "$@"
