#!/usr/bin/env bash
# start.sh WORKDIR [all|dovecot|postfix]
#
# Starts private Dovecot and Postfix instances for the end-to-end suite,
# with every file inside WORKDIR and every listener on 127.0.0.1 at
# non-standard ports, so they run beside (and never touch) a system mail
# server. Run setup.sh first; run stop.sh WORKDIR to stop them.
#
#   IMAP  127.0.0.1:$E2E_IMAP_PORT (default 10143), plain auth allowed
#   LMTP  127.0.0.1:$E2E_LMTP_PORT (default 10024), Postfix delivers here
#   SMTP  127.0.0.1:$E2E_SMTP_PORT (default 10025), Postfix relay
#
# With E2E_OAUTH_INTROSPECT_URL (an OAuth2 token introspection endpoint,
# RFC 7662, such as mailgate/oauthtest's), Dovecot also logs users in
# with OAuth2 bearer tokens (XOAUTH2, OAUTHBEARER) that the endpoint calls
# active, and Postfix listens for submission at 127.0.0.1:$E2E_SUBMISSION_PORT
# (default 10587), which takes mail only after SMTP AUTH through Dovecot's
# SASL (PLAIN, LOGIN, XOAUTH2, OAUTHBEARER).
#
# Mailboxes (all with password "secret"): support@, jane@, bob@,
# cust1@ .. cust50@ example.test. Postfix answers 550 for
# reject@example.test and 450 for tempfail@example.test.
#
# The configuration is (re)written on every call; mail already in WORKDIR
# is kept, so "start.sh WORKDIR dovecot" after "stop.sh WORKDIR dovecot"
# restarts Dovecot on the same mailboxes. WORKDIR/env lists the addresses
# and paths for test drivers.
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
	echo "usage: start.sh WORKDIR [all|dovecot|postfix]" >&2
	exit 2
fi
what=${2:-all}
case $what in all | dovecot | postfix) ;; *)
	echo "start.sh: unknown component $what (want all, dovecot or postfix)" >&2
	exit 2
	;;
esac
if [[ $(id -u) -ne 0 ]]; then
	echo "start.sh: must run as root (Dovecot and Postfix masters need it)" >&2
	exit 1
fi

mkdir -p "$1"
W=$(cd "$1" && pwd -P)

# Ports: E2E_*_PORT from the environment, else those a previous start.sh
# recorded in WORKDIR/env (so restarting one component keeps its port),
# else the defaults.
prev() {
	if [[ -r $W/env ]]; then
		sed -n "s/^$1=127\.0\.0\.1://p" "$W/env" | head -n1
	fi
}
IMAP_PORT=${E2E_IMAP_PORT:-$(prev IMAP_ADDR)}
LMTP_PORT=${E2E_LMTP_PORT:-$(prev LMTP_ADDR)}
SMTP_PORT=${E2E_SMTP_PORT:-$(prev SMTP_ADDR)}
SUBMISSION_PORT=${E2E_SUBMISSION_PORT:-$(prev SUBMISSION_ADDR)}
OAUTH_URL=${E2E_OAUTH_INTROSPECT_URL:-}
if [[ -z $OAUTH_URL && -r $W/env ]]; then
	OAUTH_URL=$(sed -n 's/^OAUTH_INTROSPECT_URL=//p' "$W/env" | head -n1)
fi
IMAP_PORT=${IMAP_PORT:-10143}
LMTP_PORT=${LMTP_PORT:-10024}
SMTP_PORT=${SMTP_PORT:-10025}
SUBMISSION_PORT=${SUBMISSION_PORT:-10587}
PASSWORD=secret
DOMAIN=example.test

# Dovecot's login processes (user dovenull) and Postfix's daemons (user
# postfix) must reach files below WORKDIR: every parent needs o+x. This
# only adds search permission, it never takes any away.
d=$W
while [[ $d != / ]]; do
	chmod o+x "$d"
	d=$(dirname "$d")
done

getent passwd vmail >/dev/null || {
	echo "start.sh: user vmail missing: run setup.sh first" >&2
	exit 1
}
VMAIL_UID=$(id -u vmail)
VMAIL_GID=$(id -g vmail)

mkdir -p "$W/logs" "$W/dovecot" "$W/postfix" "$W/mail"
chmod 0755 "$W/logs" "$W/dovecot" "$W/postfix"
chown vmail:vmail "$W/mail"
chmod 0750 "$W/mail"

# ---------------------------------------------------------------- Dovecot

users="support jane bob"
for i in $(seq 1 50); do users="$users cust$i"; done
: >"$W/dovecot/users.new"
for u in $users; do
	echo "$u@$DOMAIN:{PLAIN}$PASSWORD::::::" >>"$W/dovecot/users.new"
done
# prefixed@ sees its folders as Cyrus shows them in Debian's default layout:
# below "INBOX." with "." as the separator, so CREATE "Archive" is refused
# (the passdb's userdb_ fields override the namespace for IMAP logins).
echo "prefixed@$DOMAIN:{PLAIN}$PASSWORD::::::userdb_namespace/inbox/prefix=INBOX. userdb_namespace/inbox/separator=." >>"$W/dovecot/users.new"
mv "$W/dovecot/users.new" "$W/dovecot/users"
chown root:dovecot "$W/dovecot/users"
chmod 0640 "$W/dovecot/users"

# oauth_passdb prints the OAuth2 passdb (and Postfix's auth socket) when
# E2E_OAUTH_INTROSPECT_URL is set: Dovecot asks the introspection endpoint
# about each token, as with a real OAuth2 server.
oauth_passdb() {
	[[ -n $OAUTH_URL ]] || return 0
	cat >"$W/dovecot/oauth2.conf.ext" <<EOT
introspection_mode = post
introspection_url = $OAUTH_URL
username_attribute = email
active_attribute = active
active_value = true
EOT
	cat <<EOT
passdb {
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = $W/dovecot/oauth2.conf.ext
}
service auth {
  unix_listener $W/dovecot/auth-postfix {
    mode = 0666
  }
}
EOT
}

cat >"$W/dovecot/dovecot.conf" <<EOF
# Written by e2e/start.sh: a private Dovecot for the end-to-end suite.
protocols = imap lmtp
listen = 127.0.0.1
base_dir = $W/dovecot/run
state_dir = $W/dovecot/state
instance_name = mailgate-e2e
hostname = mx.$DOMAIN
log_path = $W/logs/dovecot.log
info_log_path = $W/logs/dovecot.log
debug_log_path = $W/logs/dovecot.log
ssl = no
shutdown_clients = yes
# Plain passwords over loopback without TLS (Dovecot 2.3 name).
disable_plaintext_auth = no
auth_mechanisms = plain login${OAUTH_URL:+ xoauth2 oauthbearer}
auth_verbose = yes
first_valid_uid = $VMAIL_UID
last_valid_uid = $VMAIL_UID
first_valid_gid = $VMAIL_GID
mail_uid = vmail
mail_gid = vmail
mail_location = maildir:$W/mail/%u
postmaster_address = postmaster@$DOMAIN

$(oauth_passdb)
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $W/dovecot/users
}
# Users not in the passwd-file do not exist (LMTP answers 550 for them).
userdb {
  driver = static
  args = uid=vmail gid=vmail home=$W/mail/%u
}

namespace inbox {
  inbox = yes
  separator = /
  mailbox Sent {
    special_use = \\Sent
    auto = subscribe
  }
  mailbox Drafts {
    special_use = \\Drafts
    auto = subscribe
  }
  mailbox Trash {
    special_use = \\Trash
    auto = subscribe
  }
  mailbox Archive {
    special_use = \\Archive
    auto = subscribe
  }
  mailbox Junk {
    special_use = \\Junk
    auto = create
  }
}

service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $IMAP_PORT
  }
  inet_listener imaps {
    port = 0
  }
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $LMTP_PORT
  }
}
# Nothing of ours uses the doveadm TCP server or the stats listener.
service doveadm {
  inet_listener {
    port = 0
  }
}

protocol imap {
  # The suite opens many sessions from 127.0.0.1.
  mail_max_userip_connections = 200
}
protocol lmtp {
  mail_plugins =
}
EOF

# ---------------------------------------------------------------- Postfix

# A master.cf of our own rather than a copy of the system one: no chroot
# (the queue lives in WORKDIR, and a chroot there would lack what the
# daemons need), and smtpd on our loopback port instead of 25.
cat >"$W/postfix/master.cf" <<EOF
# Written by e2e/start.sh: a private Postfix for the end-to-end suite.
# service type  private unpriv  chroot  wakeup  maxproc command
127.0.0.1:$SMTP_PORT inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
if [[ -n $OAUTH_URL ]]; then
	# Submission: mail only after SMTP AUTH, checked by Dovecot's SASL (so
	# an OAuth2 token by Dovecot's oauth2 passdb), offering only XOAUTH2 so
	# that the suite runs that mechanism too (IMAP logins use OAUTHBEARER). Only this listener asks
	# Dovecot: the relay on $SMTP_PORT must keep taking mail while Dovecot
	# is down.
	cat >>"$W/postfix/master.cf" <<EOF
127.0.0.1:$SUBMISSION_PORT inet n - n - - smtpd
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_sasl_type=dovecot
  -o smtpd_sasl_path=$W/dovecot/auth-postfix
  -o smtpd_sasl_mechanism_filter=xoauth2
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
  -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject
EOF
fi

cat >"$W/postfix/recipient_access" <<EOF
reject@$DOMAIN 550 5.1.1 user unknown (e2e)
tempfail@$DOMAIN 450 4.2.0 mailbox busy, try again later (e2e)
EOF

mkdir -p "$W/postfix-queue" "$W/postfix-data"
chown root:root "$W/postfix-queue"
chmod 0755 "$W/postfix-queue"
chown postfix:postfix "$W/postfix-data"
chmod 0700 "$W/postfix-data"

cat >"$W/postfix/main.cf" <<EOF
# Written by e2e/start.sh: a private Postfix for the end-to-end suite.
compatibility_level = 3.6
queue_directory = $W/postfix-queue
data_directory = $W/postfix-data
maillog_file = $W/logs/postfix.log
maillog_file_prefixes = $W/logs
myhostname = mx.$DOMAIN
mydomain = $DOMAIN
myorigin = \$mydomain
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
mydestination =
local_recipient_maps =
local_transport = error:5.1.1 no local delivery in the e2e instance
alias_maps =
alias_database =
# Every address at $DOMAIN goes to Dovecot over LMTP; Dovecot rejects
# addresses it does not know.
virtual_mailbox_domains = $DOMAIN
virtual_mailbox_maps =
virtual_transport = lmtp:inet:127.0.0.1:$LMTP_PORT
# Nothing leaves this machine.
relayhost =
default_transport = error:5.7.1 no delivery outside $DOMAIN in the e2e instance
smtp_dns_support_level = disabled
disable_dns_lookups = yes
smtpd_tls_security_level = none
smtp_tls_security_level = none
smtpd_banner = \$myhostname ESMTP e2e
biff = no
append_dot_mydomain = no
smtpd_helo_required = no
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = check_recipient_access texthash:$W/postfix/recipient_access, permit_mynetworks, reject
message_size_limit = 104857600
# Quick retries, so mail queued while Dovecot is down arrives soon after
# it is back.
queue_run_delay = 5s
minimal_backoff_time = 5s
maximal_backoff_time = 15s
lmtp_connect_timeout = 5s
EOF


# ---------------------------------------------------------------- helpers

# port_open PORT: something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# wait_port NAME PORT LOG: wait up to 20s for PORT, else show LOG and fail.
wait_port() {
	local i
	for i in $(seq 1 200); do
		if port_open "$2"; then return 0; fi
		sleep 0.1
	done
	echo "start.sh: $1 is not listening on 127.0.0.1:$2 after 20s; end of $3:" >&2
	tail -n 30 "$3" >&2 2>/dev/null || true
	return 1
}

# alive PIDFILE NAME: the process in PIDFILE runs and is called NAME.
alive() {
	local pid
	[[ -s $1 ]] || return 1
	pid=$(head -n1 "$1" | tr -d ' ')
	[[ -n $pid && -r /proc/$pid/comm ]] || return 1
	[[ $(cat "/proc/$pid/comm") == "$2" ]]
}

start_dovecot() {
	if alive "$W/dovecot/run/master.pid" dovecot; then
		doveadm -c "$W/dovecot/dovecot.conf" reload </dev/null >>"$W/logs/dovecot-start.log" 2>&1
	else
		for p in "$IMAP_PORT" "$LMTP_PORT"; do
			if port_open "$p"; then
				echo "start.sh: 127.0.0.1:$p is taken by another program (set E2E_IMAP_PORT/E2E_LMTP_PORT)" >&2
				return 1
			fi
		done
		# Its output goes to a file: a daemon holding our stdout open would
		# keep a caller that reads it (a test driver) waiting forever.
		dovecot -c "$W/dovecot/dovecot.conf" </dev/null >>"$W/logs/dovecot-start.log" 2>&1 || {
			echo "start.sh: dovecot failed to start:" >&2
			tail -n 30 "$W/logs/dovecot-start.log" "$W/logs/dovecot.log" >&2 2>/dev/null || true
			return 1
		}
	fi
	wait_port "Dovecot IMAP" "$IMAP_PORT" "$W/logs/dovecot.log"
	wait_port "Dovecot LMTP" "$LMTP_PORT" "$W/logs/dovecot.log"
}

start_postfix() {
	local pf=(postfix -c "$W/postfix")
	if alive "$W/postfix-queue/pid/master.pid" master; then
		"${pf[@]}" reload </dev/null >>"$W/logs/postfix-setup.log" 2>&1
	else
		if port_open "$SMTP_PORT"; then
			echo "start.sh: 127.0.0.1:$SMTP_PORT is taken by another program (set E2E_SMTP_PORT)" >&2
			return 1
		fi
		# Creates the queue directories with the owners Postfix wants.
		"${pf[@]}" post-install create-missing </dev/null >>"$W/logs/postfix-setup.log" 2>&1 || {
			echo "start.sh: postfix post-install create-missing failed:" >&2
			tail -n 30 "$W/logs/postfix-setup.log" "$W/logs/postfix.log" >&2 2>/dev/null || true
			return 1
		}
		"${pf[@]}" start </dev/null >>"$W/logs/postfix-setup.log" 2>&1 || {
			echo "start.sh: postfix start failed:" >&2
			tail -n 30 "$W/logs/postfix-setup.log" "$W/logs/postfix.log" >&2 2>/dev/null || true
			return 1
		}
	fi
	wait_port "Postfix smtpd" "$SMTP_PORT" "$W/logs/postfix.log"
	if [[ -n $OAUTH_URL ]]; then
		wait_port "Postfix submission" "$SUBMISSION_PORT" "$W/logs/postfix.log"
	fi
}

cat >"$W/env" <<EOF
IMAP_ADDR=127.0.0.1:$IMAP_PORT
LMTP_ADDR=127.0.0.1:$LMTP_PORT
SMTP_ADDR=127.0.0.1:$SMTP_PORT
SUBMISSION_ADDR=127.0.0.1:$SUBMISSION_PORT
MAIL_DOMAIN=$DOMAIN
MAIL_PASSWORD=$PASSWORD
MAIL_DIR=$W/mail
DOVECOT_CONF=$W/dovecot/dovecot.conf
POSTFIX_CONFIG_DIR=$W/postfix
LOG_DIR=$W/logs
OAUTH_INTROSPECT_URL=$OAUTH_URL
EOF

case $what in
all)
	start_dovecot
	start_postfix
	;;
dovecot) start_dovecot ;;
postfix) start_postfix ;;
esac
echo "start.sh: $what up in $W"
