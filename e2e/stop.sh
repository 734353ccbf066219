#!/usr/bin/env bash
# stop.sh WORKDIR [all|dovecot|postfix]
#
# Stops the private Dovecot and Postfix that start.sh started in WORKDIR.
# Works whatever state they are in (never started, half started, already
# stopped, crashed): it asks politely, waits, then kills the masters by the
# pids they recorded in WORKDIR, never by name. Exits 0 unless a master
# survives SIGKILL.
set -uo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
	echo "usage: stop.sh WORKDIR [all|dovecot|postfix]" >&2
	exit 2
fi
what=${2:-all}
if [[ ! -d $1 ]]; then
	exit 0
fi
W=$(cd "$1" && pwd -P)

# pid_of PIDFILE NAME: prints the pid in PIDFILE if that process runs and
# is called NAME.
pid_of() {
	local pid
	[[ -s $1 ]] || return 1
	pid=$(head -n1 "$1" | tr -d ' ')
	[[ -n $pid && -r /proc/$pid/comm ]] || return 1
	[[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$2" ]] || return 1
	echo "$pid"
}

# wait_gone PID SECONDS: wait for PID to exit.
wait_gone() {
	local i
	for i in $(seq 1 $(($2 * 10))); do
		[[ -e /proc/$1 ]] || return 0
		sleep 0.1
	done
	return 1
}

# session_pids SID: the processes of session SID. Both masters start a
# session of their own (setsid), so it holds exactly their processes.
session_pids() {
	ps -e -o pid=,sid= | awk -v sid="$1" '$2 == sid { print $1 }'
}

# stop_master NAME PIDFILE COMM POLITE...: run POLITE, then TERM, then KILL
# the master; then end what is left of its session. Dovecot's imap
# processes outlive a stopped master and keep their clients connected,
# which is not what "the server went down" means to the suite.
stop_master() {
	local name=$1 pidfile=$2 comm=$3 pid left
	shift 3
	pid=$(pid_of "$pidfile" "$comm") || return 0
	"$@" </dev/null >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null
	if ! wait_gone "$pid" 10; then
		kill -TERM "$pid" 2>/dev/null
		if ! wait_gone "$pid" 5; then
			echo "stop.sh: $name (pid $pid) did not stop; killing it" >&2
			kill -KILL "$pid" 2>/dev/null
			wait_gone "$pid" 5 || {
				echo "stop.sh: $name (pid $pid) survives SIGKILL" >&2
				return 1
			}
		fi
	fi
	left=$(session_pids "$pid")
	[[ -z $left ]] && return 0
	# shellcheck disable=SC2086 # a list of pids
	kill -TERM $left 2>/dev/null
	for _ in $(seq 1 30); do
		left=$(session_pids "$pid")
		[[ -z $left ]] && return 0
		sleep 0.1
	done
	# shellcheck disable=SC2086
	kill -KILL $left 2>/dev/null
	return 0
}

rc=0
if [[ $what == all || $what == dovecot ]]; then
	stop_master Dovecot "$W/dovecot/run/master.pid" dovecot \
		doveadm -c "$W/dovecot/dovecot.conf" stop || rc=1
fi
if [[ $what == all || $what == postfix ]]; then
	stop_master Postfix "$W/postfix-queue/pid/master.pid" master \
		postfix -c "$W/postfix" stop || rc=1
fi
exit $rc
