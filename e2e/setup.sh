#!/usr/bin/env bash
# setup.sh installs what the end-to-end suite needs on a Debian machine:
# Dovecot (IMAP and LMTP), Postfix and PostgreSQL, plus the unprivileged
# "vmail" user that owns the test mail. It never leaves the system's own
# Dovecot, Postfix or PostgreSQL running: the suite starts private instances
# (see start.sh and internal/pgtest).
# With --bench it also installs fetchmail, the benchmarks' IMAP floor.
# Safe to run again: it does only what is missing. Must run as root.
set -euo pipefail

if [[ $(id -u) -ne 0 ]]; then
	echo "setup.sh: must run as root (it installs Debian packages)" >&2
	exit 1
fi

packages=(dovecot-imapd dovecot-lmtpd postfix postgresql)
if [[ ${1:-} == --bench ]]; then
	packages+=(fetchmail)
fi

missing() {
	local p
	for p in "${packages[@]}"; do
		if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
			return 0
		fi
	done
	return 1
}

if missing; then
	echo "setup.sh: installing ${packages[*]}"
	# Answer Postfix's questions up front: no system-wide mail configuration.
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
	echo "postfix postfix/mailname string e2e.example.test" | debconf-set-selections

	# Keep the packages' maintainer scripts from starting the system
	# services: a policy-rc.d that answers 101 ("action forbidden") for the
	# duration of the install, unless the machine already has one.
	own_policy=0
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 0755 /usr/sbin/policy-rc.d
		own_policy=1
	fi
	cleanup_policy() {
		if [[ $own_policy -eq 1 ]]; then rm -f /usr/sbin/policy-rc.d; fi
	}
	trap cleanup_policy EXIT

	install() {
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${packages[@]}"
	}
	# Update the package lists only when the install cannot go ahead with
	# the ones the machine has (none yet, or stale versions).
	if ! install; then
		apt-get update
		install
	fi
	cleanup_policy
	trap - EXIT
fi

# Whatever the packages started (on machines without policy-rc.d or with
# systemd), stop and disable the system instances: they would hold ports
# 25/143 and the defaults, and the suite does not use them.
for svc in dovecot postfix postgresql; do
	if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
		systemctl disable --now "$svc" >/dev/null 2>&1 || true
	elif command -v service >/dev/null 2>&1; then
		service "$svc" stop >/dev/null 2>&1 || true
	fi
done
# Without an init system the packages may still have spawned masters with
# the default configuration: stop those by their pid files only.
if [[ -s /run/dovecot/master.pid ]]; then
	doveadm stop >/dev/null 2>&1 || kill "$(cat /run/dovecot/master.pid)" 2>/dev/null || true
fi
if [[ -s /var/spool/postfix/pid/master.pid ]] && [[ -e /etc/postfix/main.cf ]]; then
	postfix stop >/dev/null 2>&1 || true
fi

# The owner of the test mail: a system user without login or home.
if ! getent passwd vmail >/dev/null; then
	useradd --system --user-group --no-create-home --home-dir /nonexistent \
		--shell /usr/sbin/nologin vmail
fi

for cmd in dovecot doveadm postfix postconf; do
	command -v "$cmd" >/dev/null || { echo "setup.sh: $cmd not found after install" >&2; exit 1; }
done
if ! compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null; then
	echo "setup.sh: no /usr/lib/postgresql/*/bin/postgres after install" >&2
	exit 1
fi
echo "setup.sh: ready ($(dovecot --version | cut -d' ' -f1) dovecot, postfix $(postconf -d -h mail_version))"
