// Package e2e is mailgate's end-to-end suite: the mailgate binary against
// real Dovecot and Postfix instances (started by start.sh on loopback-only,
// non-standard ports) and a fake Userlike HTTP server.
//
// The tests build only with the e2e build tag and must run as root on
// Debian; run.sh installs what they need and runs them. README.md tells how
// to run one scenario and where the logs go. Without the tag this package
// is empty.
package e2e
