package main

import (
	"bytes"
	"context"
	"fmt"
	"mailgate/e2e/mailsys"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// mailServers are the private Dovecot and Postfix that e2e/start.sh runs
// for the benchmarks, on free loopback ports, with every file in dir.
type mailServers struct {
	scripts string            // absolute path of e2e/
	dir     string            // WORKDIR of start.sh
	vars    map[string]string // WORKDIR/env
}

// startMailServers installs what is missing (e2e/setup.sh) and starts
// Dovecot and Postfix with e2e/start.sh on free ports.
func startMailServers(ctx context.Context, repo, dir string) (*mailServers, error) {
	m := &mailServers{scripts: filepath.Join(repo, "e2e"), dir: dir}
	if out, err := m.script(ctx, nil, "setup.sh"); err != nil {
		return nil, fmt.Errorf("e2e/setup.sh: %v\n%s", err, out)
	}
	var env []string
	for _, name := range []string{"E2E_IMAP_PORT", "E2E_LMTP_PORT", "E2E_SMTP_PORT"} {
		p, err := mailsys.FreePort()
		if err != nil {
			return nil, err
		}
		env = append(env, name+"="+p)
	}
	if out, err := m.script(ctx, env, "start.sh", dir); err != nil {
		m.stop()
		return nil, fmt.Errorf("e2e/start.sh %s: %v\n%s", dir, err, out)
	}
	vars, err := mailsys.ReadEnv(filepath.Join(dir, "env"))
	if err != nil {
		m.stop()
		return nil, err
	}
	m.vars = vars
	return m, nil
}

// stop stops both servers with e2e/stop.sh.
func (m *mailServers) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := m.script(ctx, nil, "stop.sh", m.dir); err != nil {
		fmt.Fprintf(os.Stderr, "bench: e2e/stop.sh: %v\n%s", err, out)
	}
}

// script runs one of the e2e scripts and returns its combined output.
func (m *mailServers) script(ctx context.Context, env []string, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(m.scripts, name), args...)
	cmd.Dir = m.scripts
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// A daemon the script starts may inherit the pipe; do not wait for it.
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	return out.Bytes(), err
}

// imapAddr, smtpAddr and password are the servers' addresses and the
// password of every mailbox.
func (m *mailServers) imapAddr() string { return m.vars["IMAP_ADDR"] }
func (m *mailServers) smtpAddr() string { return m.vars["SMTP_ADDR"] }
func (m *mailServers) password() string { return m.vars["MAIL_PASSWORD"] }

// maildir is the Maildir directory of user's INBOX.
func (m *mailServers) maildir(user string) string { return filepath.Join(m.vars["MAIL_DIR"], user) }

// doveadm runs doveadm against the private Dovecot with stdin (may be nil).
func (m *mailServers) doveadm(ctx context.Context, stdin []byte, args ...string) (string, error) {
	return mailsys.Doveadm(ctx, m.vars["DOVECOT_CONF"], stdin, args...)
}

// save delivers raw into user's INBOX with doveadm save.
func (m *mailServers) save(ctx context.Context, user string, raw []byte) error {
	_, err := m.doveadm(ctx, raw, "save", "-u", user)
	return err
}

// expungeAll empties every folder of user.
func (m *mailServers) expungeAll(ctx context.Context, user string) error {
	_, err := m.doveadm(ctx, nil, "expunge", "-u", user, "mailbox", "*", "all")
	return err
}

// count returns the number of messages in user's folder.
func (m *mailServers) count(ctx context.Context, user, folder string) (int, error) {
	out, err := m.doveadm(ctx, nil, "-f", "flow", "mailbox", "status", "-u", user, "messages", folder)
	if err != nil {
		return 0, err
	}
	for _, f := range strings.Fields(out) {
		if v, ok := strings.CutPrefix(f, "messages="); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, fmt.Errorf("doveadm mailbox status: no messages= in %q", out)
}
