// Package mailsys drives the private Dovecot and Postfix that e2e/start.sh
// runs for the end-to-end suite and the benchmarks: the env file it
// writes, free loopback ports for it, and doveadm against it. Both the e2e
// tests and bench import it, so neither keeps a copy.
package mailsys

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strings"
)

// EnvKeys are the keys start.sh always writes to WORKDIR/env.
var EnvKeys = []string{"IMAP_ADDR", "LMTP_ADDR", "SMTP_ADDR", "DOVECOT_CONF", "POSTFIX_CONFIG_DIR", "MAIL_DIR", "MAIL_PASSWORD"}

// ReadEnv parses the KEY=VALUE lines start.sh writes and checks that every
// one of EnvKeys is there.
func ReadEnv(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	vars := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && k != "" {
			vars[k] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	for _, k := range EnvKeys {
		if vars[k] == "" {
			return nil, fmt.Errorf("%s: no %s", path, k)
		}
	}
	return vars, nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago, for
// a server in another process (Dovecot, Postfix, a mailgate child) that
// binds it itself; in-process servers bind port 0 instead. It is taken
// below Linux's ephemeral range (32768 and up by default), so that no
// outgoing connection can take it while its server restarts.
func FreePort() (string, error) {
	var err error
	for range 100 {
		var ln net.Listener
		ln, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", 20000+rand.N(12000)))
		if err == nil {
			defer ln.Close()
			_, port, _ := net.SplitHostPort(ln.Addr().String())
			return port, nil
		}
	}
	return "", fmt.Errorf("find a free port: %w", err)
}

// Doveadm runs doveadm against the Dovecot of configuration file conf with
// stdin (may be nil) and returns its output. The error carries the output.
func Doveadm(ctx context.Context, conf string, stdin []byte, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "doveadm", append([]string{"-c", conf}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("doveadm %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}
