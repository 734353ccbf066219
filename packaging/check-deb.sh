#!/usr/bin/env bash
# Installs the mailgate .deb of this machine's architecture with dpkg -i,
# checks what it installed, then removes it (state kept) and purges it
# (state gone). Needs root on Debian or Ubuntu; works without systemd as
# PID 1 (a container, CI). Leaves the machine without mailgate, but with
# the mailgate system user (Debian keeps system users on purge).
#
# Usage: packaging/check-deb.sh [FILE.deb]   (default: dist/mailgate_*_ARCH.deb)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

fail() { echo "check-deb: FAIL: $*" >&2; exit 1; }
ok() { echo "check-deb: ok: $*"; }

[ "$(id -u)" -eq 0 ] || fail "run as root (dpkg -i)"
arch=$(dpkg --print-architecture)
deb=${1:-}
if [ -z "$deb" ]; then
	set -- dist/mailgate_*_"$arch".deb
	[ $# -eq 1 ] && [ -f "$1" ] || fail "want exactly one dist/mailgate_*_$arch.deb (make deb), found: $*"
	deb=$1
fi
if dpkg-query -W -f='${Status}' mailgate 2>/dev/null | grep -q 'installed'; then
	fail "mailgate is already installed on this machine; not touching it"
fi
if ! command -v systemd-analyze >/dev/null; then
	apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends systemd
fi

# Whatever happens, leave no package and no state behind.
trap 'dpkg -P mailgate >/dev/null 2>&1 || true' EXIT

echo "check-deb: installing $deb"
dpkg -i "$deb"

# Files.
for f in /usr/bin/mailgate /usr/lib/systemd/system/mailgate.service \
	/usr/lib/sysusers.d/mailgate.conf /usr/lib/tmpfiles.d/mailgate.conf \
	/usr/share/doc/mailgate/copyright /usr/share/doc/mailgate/README.md \
	/usr/share/doc/mailgate/config.example.toml; do
	[ -f "$f" ] || fail "$f not installed"
done
[ -x /usr/bin/mailgate ] || fail "/usr/bin/mailgate not executable"
mailgate version | grep -q '^mailgate ' || fail "mailgate version"
mailgate version
got=$(stat -c '%a %U %G' /etc/mailgate/config.toml)
[ "$got" = "640 root mailgate" ] || fail "/etc/mailgate/config.toml is $got, want 640 root mailgate"
dpkg-query -W -f='${Conffiles}\n' mailgate | grep -q '^ /etc/mailgate/config.toml ' ||
	fail "/etc/mailgate/config.toml is not a conffile"
cmp -s /etc/mailgate/config.toml config.example.toml || fail "config.toml differs from config.example.toml"
ok "files, config.toml 0640 root:mailgate conffile"

# The user: a system user with no login.
IFS=: read -r _ _ uid gid _ home shell < <(getent passwd mailgate) || fail "no mailgate user"
[ "$uid" -lt 1000 ] || fail "mailgate uid $uid is not a system uid"
[ "$(getent group mailgate | cut -d: -f3)" = "$gid" ] || fail "mailgate's primary group is not mailgate"
case "$shell" in */nologin | */false) ;; *) fail "mailgate has a login shell: $shell" ;; esac
ok "user mailgate uid $uid home $home shell $shell"

# State directories (tmpfiles.d), in the layout of DynamicUser=yes.
got=$(stat -c '%a %U %G' /var/lib/private/mailgate)
[ "$got" = "700 mailgate mailgate" ] || fail "/var/lib/private/mailgate is $got"
[ "$(readlink /var/lib/mailgate)" = "private/mailgate" ] || fail "/var/lib/mailgate is not a symlink to private/mailgate"
[ -d /var/lib/mailgate/media ] || fail "no /var/lib/mailgate/media"
ok "state directories"

# Installed, not enabled, not started.
[ ! -e /etc/systemd/system/multi-user.target.wants/mailgate.service ] || fail "the install enabled mailgate"
if [ -d /run/systemd/system ] && systemctl is-active --quiet mailgate; then
	fail "the install started mailgate"
fi
ok "not enabled, not started"

# The unit: systemd accepts every directive and rates the sandbox no worse
# than contrib/systemd/unit_test.go allows.
unit=/usr/lib/systemd/system/mailgate.service
grep -q '^ExecStart=/usr/bin/mailgate run -c /etc/mailgate/config.toml$' "$unit" || fail "ExecStart= does not run /usr/bin/mailgate"
verify=$(systemd-analyze verify --no-pager "$unit" 2>&1) || fail "systemd-analyze verify: $verify"
[ -z "$verify" ] || fail "systemd-analyze verify warns: $verify"
max=$(sed -n 's/^const maxExposure = \([0-9.]*\)$/\1/p' contrib/systemd/unit_test.go)
[ -n "$max" ] || fail "no maxExposure in contrib/systemd/unit_test.go"
security=$(systemd-analyze security --offline=yes --no-pager "$unit" 2>&1) || fail "systemd-analyze security: $security"
exposure=$(sed -n 's/.*Overall exposure level for mailgate.service: \([0-9.]*\).*/\1/p' <<<"$security")
[ -n "$exposure" ] || fail "systemd-analyze security gave no exposure level: $security"
awk -v e="$exposure" -v m="$max" 'BEGIN { exit !(e <= m) }' || fail "exposure $exposure > $max"
ok "systemd-analyze verify clean, security exposure $exposure <= $max"

# The installed config is the example: check-config, as the service's user,
# must refuse it and name what to edit.
set +e
out=$(setpriv --reuid=mailgate --regid=mailgate --clear-groups mailgate check-config -c /etc/mailgate/config.toml 2>&1)
rc=$?
set -e
[ "$rc" -eq 2 ] || fail "check-config on the installed config: exit $rc, want 2: $out"
for key in server.public_url userlike.inbound_url userlike.inbound_token imap.address imap.password smtp.from; do
	grep -q "^/etc/mailgate/config.toml:[0-9]*: .*$key: still the example value: set " <<<"$out" ||
		fail "check-config does not name $key: $out"
done
ok "check-config refuses the placeholders, naming them:"
sed 's/^/    /' <<<"$out"

# Remove: binary gone; state, config and user kept.
# (/var/lib/private is root's alone: the service reaches it through the
# mount namespace systemd sets up, not through the symlink.)
install -o mailgate -g mailgate -m 0600 /dev/null /var/lib/mailgate/mailgate.db
echo state > /var/lib/mailgate/mailgate.db
dpkg -r mailgate
[ ! -e /usr/bin/mailgate ] || fail "remove left /usr/bin/mailgate"
[ ! -e "$unit" ] || fail "remove left the unit"
[ "$(cat /var/lib/mailgate/mailgate.db)" = state ] || fail "remove deleted the state"
[ -f /etc/mailgate/config.toml ] || fail "remove deleted config.toml"
getent passwd mailgate >/dev/null || fail "remove deleted the user"
ok "remove kept the state and config.toml"

# Purge: state and config gone.
dpkg -P mailgate
[ ! -e /var/lib/private/mailgate ] && [ ! -L /var/lib/mailgate ] || fail "purge left the state"
[ ! -e /etc/mailgate/config.toml ] || fail "purge left config.toml"
dpkg-query -W mailgate >/dev/null 2>&1 && fail "purge left the package known to dpkg"
ok "purge deleted the state and config.toml"
trap - EXIT
echo "check-deb: PASS $deb"
