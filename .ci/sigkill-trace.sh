#!/usr/bin/env bash
# Diagnostics for a test task ended by SIGKILL (turbo says "exited (137)"). Turbo runs each
# task in a process group of its own, so one `kill(0, SIGKILL)` (or `process.kill(0, ...)`,
# e.g. a pid read as 0 from a half-written pid file) inside it ends the whole task at once and
# nothing prints why; that is how CI runs died in @beamclaw/gateway-ws#test. Where the
# kernel's tracing is writable (root), every SIGKILL sent while the tests run is logged with
# its sender and target (tracefs event signal:signal_generate), together with the programs
# started (sched:sched_process_exec), and printed when the tests fail.
#
#   .ci/sigkill-trace.sh start <log>    starts logging (does nothing where tracing is not available)
#   .ci/sigkill-trace.sh stop           stops logging, leaves the tracing as it found it
#   .ci/sigkill-trace.sh report <log>   prints the SIGKILLs logged (and what started before them)
set -uo pipefail

T=/sys/kernel/tracing
EVENTS=(signal/signal_generate sched/sched_process_exec)

case "${1:-}" in
  start)
    log="$2"
    [ -d "$T/events" ] || mount -t tracefs nodev "$T" 2>/dev/null || exit 0
    [ -w "$T/events/signal/signal_generate/filter" ] || exit 0
    echo 0 >"$T/tracing_on"
    echo >"$T/trace"
    echo 8192 >"$T/buffer_size_kb" 2>/dev/null
    echo 'sig == 9' >"$T/events/signal/signal_generate/filter"
    for event in "${EVENTS[@]}"; do echo 1 >"$T/events/$event/enable"; done
    echo 1 >"$T/tracing_on"
    nohup cat "$T/trace_pipe" >"$log" 2>/dev/null &
    echo $! >"$log.pid"
    echo "SIGKILLs are logged to $log while the tests run"
    ;;
  stop)
    [ -w "$T/tracing_on" ] || exit 0
    for event in "${EVENTS[@]}"; do echo 0 >"$T/events/$event/enable" 2>/dev/null; done
    echo 0 >"$T/events/signal/signal_generate/filter" 2>/dev/null
    echo 1 >"$T/tracing_on" 2>/dev/null
    for pidfile in /tmp/beamclaw-ci-sigkill*.log.pid; do
      [ -f "$pidfile" ] || continue
      kill "$(cat "$pidfile")" 2>/dev/null
      rm -f "$pidfile"
    done
    ;;
  report)
    log="$2"
    [ -s "$log" ] || exit 0
    echo
    echo "=== SIGKILLs sent while the tests ran (sender-pid ... comm=target pid=target) ==="
    # Turbo's own clean-up of a finished task's group (tokio-rt-worker) is left out.
    grep 'signal_generate' "$log" | grep -v 'tokio-rt-worker' | tail -n 40
    echo "=== programs started just before the last of them ==="
    last=$(grep 'signal_generate' "$log" | grep -v 'tokio-rt-worker' | tail -n 1 | grep -o '[0-9]*\.[0-9]*: signal_generate' | cut -d: -f1)
    if [ -n "$last" ]; then
      awk -v t="$last" '/sched_process_exec/ { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+\.[0-9]+:$/) { s = $i; sub(":", "", s); if (s + 0 <= t + 0) print } }' "$log" | tail -n 15
    fi
    ;;
  *)
    echo "usage: $0 start <log> | stop | report <log>" >&2
    exit 2
    ;;
esac
exit 0
