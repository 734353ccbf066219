//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"mailgate/e2e/mailsys"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mailgate/oauthtest"
)

// suite is the state TestMain sets up once for every scenario: the work
// directory, the mail servers' addresses and the mailgate binary. It is
// written only by TestMain, before m.Run.
var suite *suiteEnv

// suiteEnv is one run of the end-to-end suite.
type suiteEnv struct {
	// scriptsDir is the absolute path of e2e/ (setup.sh, start.sh, stop.sh).
	scriptsDir string
	// workDir holds everything the run writes; see README.md.
	workDir string
	// vars are the KEY=VALUE lines start.sh wrote to workDir/env.
	vars map[string]string
	// auth is the OAuth2 authorization server whose tokens Dovecot (and
	// Postfix through it) accepts, by introspection.
	auth *oauthtest.Server
	// binary is the mailgate built for this run; buildErr says why there
	// is none.
	binary   string
	buildErr error

	mu    sync.Mutex
	procs map[*mailgate]bool // running daemons, killed on abort

	// scriptMu serializes the scripts, so that cleanup's stop.sh never
	// races a start.sh of a test; closed refuses scripts after cleanup.
	scriptMu sync.Mutex
	closed   bool

	cleanupOnce sync.Once
}

// Environment variables that change the suite's behaviour.
const (
	// envKeep keeps the work directory even when every test passed.
	envKeep = "E2E_KEEP"
	// envWorkDir names the work directory instead of a fresh temp dir.
	envWorkDir = "E2E_WORKDIR"
	// envBinary names a mailgate binary to test instead of building
	// ../cmd/mailgate (for example a release build, or a build of another
	// checkout).
	envBinary = "E2E_BINARY"
)

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	flag.Parse()
	defer postgres.Stop()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "e2e: SKIP: the suite starts Dovecot and Postfix and must run as root")
		return 0
	}
	here, err := os.Getwd()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	s := &suiteEnv{scriptsDir: here, procs: map[*mailgate]bool{}}
	if s.workDir = os.Getenv(envWorkDir); s.workDir != "" {
		err = os.MkdirAll(s.workDir, 0o755)
	} else {
		s.workDir, err = os.MkdirTemp("", "mailgate-e2e-")
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: work directory: %v\n", err)
		return 1
	}
	if s.workDir, err = filepath.Abs(s.workDir); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: work directory: %v\n", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "e2e: work directory %s\n", s.workDir)
	suite = s

	// Stop the servers however the run ends: normally, on a failure below,
	// on SIGINT/SIGTERM, or shortly before go test's -timeout would kill
	// the process without running any deferred function.
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		sig := <-sigc
		fmt.Fprintf(os.Stderr, "e2e: %v: stopping mailgate, Dovecot and Postfix\n", sig)
		s.cleanup(true)
		os.Exit(2)
	}()
	if d := testTimeout(); d > time.Minute {
		t := time.AfterFunc(d-30*time.Second, func() {
			fmt.Fprintf(os.Stderr, "e2e: the suite is about to reach -timeout %v: stopping everything\n", d)
			s.cleanup(true)
			os.Exit(3)
		})
		defer t.Stop()
	}

	code := s.prepare()
	if code == 0 {
		code = m.Run()
	}
	s.cleanup(code != 0)
	return code
}

// prepare installs the packages, starts the mail servers and builds
// mailgate. It returns a non-zero exit code when the servers cannot run;
// a failed build makes every scenario fail (see requireDaemon).
func (s *suiteEnv) prepare() int {
	if err := os.MkdirAll(filepath.Join(s.workDir, "logs"), 0o755); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	start := time.Now()
	if out, err := s.script("setup.sh"); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: setup.sh failed: %v\n%s", err, out)
		return 1
	}
	// Free ports chosen here, so that a second run (or a leftover one)
	// never collides with this one.
	ports := map[string]string{}
	for _, name := range []string{"E2E_IMAP_PORT", "E2E_LMTP_PORT", "E2E_SMTP_PORT", "E2E_SUBMISSION_PORT"} {
		if v := os.Getenv(name); v != "" {
			ports[name] = v
			continue
		}
		p, err := mailsys.FreePort()
		if err != nil {
			fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
			return 1
		}
		ports[name] = p
	}
	for k, v := range ports {
		os.Setenv(k, v)
	}
	// Access tokens live 20 s, so a scenario crosses several expiries
	// within a minute.
	auth, err := oauthtest.Start(oauthtest.Options{AccessTokenLifetime: 20 * time.Second})
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: authorization server: %v\n", err)
		return 1
	}
	s.auth = auth
	os.Setenv("E2E_OAUTH_INTROSPECT_URL", auth.IntrospectURL())
	if out, err := s.script("start.sh", s.workDir); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: start.sh failed: %v\n%s", err, out)
		return 1
	}
	vars, err := mailsys.ReadEnv(filepath.Join(s.workDir, "env"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	s.vars = vars
	fmt.Fprintf(os.Stderr, "e2e: Dovecot on %s (LMTP %s), Postfix on %s, up in %v\n",
		vars["IMAP_ADDR"], vars["LMTP_ADDR"], vars["SMTP_ADDR"], time.Since(start).Round(100*time.Millisecond))

	if bin := os.Getenv(envBinary); bin != "" {
		if s.binary, err = filepath.Abs(bin); err == nil {
			_, err = os.Stat(s.binary)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "e2e: %s: %v\n", envBinary, err)
			return 1
		}
		fmt.Fprintf(os.Stderr, "e2e: testing %s (%s)\n", s.binary, envBinary)
		return 0
	}
	start = time.Now()
	s.binary = filepath.Join(s.workDir, "mailgate")
	cmd := exec.Command("go", "build", "-o", s.binary, "../cmd/mailgate")
	cmd.Dir = s.scriptsDir
	if out, err := cmd.CombinedOutput(); err != nil {
		s.buildErr = fmt.Errorf("go build ../cmd/mailgate: %v\n%s", err, out)
		fmt.Fprintf(os.Stderr, "e2e: %v\n", s.buildErr)
	} else {
		fmt.Fprintf(os.Stderr, "e2e: built mailgate in %v\n", time.Since(start).Round(100*time.Millisecond))
	}
	return 0
}

// cleanup kills the daemons still running and stops the mail servers;
// the work directory is removed unless keep or E2E_KEEP is set. It runs
// once, whichever path gets there first.
func (s *suiteEnv) cleanup(keep bool) {
	s.cleanupOnce.Do(func() {
		s.scriptMu.Lock()
		defer s.scriptMu.Unlock()
		s.closed = true
		s.mu.Lock()
		procs := make([]*mailgate, 0, len(s.procs))
		for g := range s.procs {
			procs = append(procs, g)
		}
		s.mu.Unlock()
		for _, g := range procs {
			g.killProcess()
		}
		if out, err := s.runScript("stop.sh", s.workDir); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: stop.sh failed: %v\n%s", err, out)
			keep = true
		}
		if keep || os.Getenv(envKeep) != "" || os.Getenv(envWorkDir) != "" {
			fmt.Fprintf(os.Stderr, "e2e: logs and state kept in %s (logs in %s)\n", s.workDir, filepath.Join(s.workDir, "logs"))
			return
		}
		if err := os.RemoveAll(s.workDir); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: removing %s: %v\n", s.workDir, err)
		}
	})
}

// script runs one of the e2e shell scripts and returns its combined
// output. After cleanup it runs nothing.
func (s *suiteEnv) script(name string, args ...string) ([]byte, error) {
	s.scriptMu.Lock()
	defer s.scriptMu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("%s: the suite is shutting down", name)
	}
	return s.runScript(name, args...)
}

// runScript runs a script without the lock; only cleanup calls it directly.
func (s *suiteEnv) runScript(name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(s.scriptsDir, name), args...)
	cmd.Dir = s.scriptsDir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// A daemon the script started could inherit the output pipe; do not
	// wait for it to close.
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	return out.Bytes(), err
}

// track records a running daemon, so that an aborted run can kill it.
func (s *suiteEnv) track(g *mailgate, running bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if running {
		s.procs[g] = true
	} else {
		delete(s.procs, g)
	}
}

// testTimeout is the value of go test's -timeout flag (0: none).
func testTimeout() time.Duration {
	f := flag.Lookup("test.timeout")
	if f == nil {
		return 0
	}
	if g, ok := f.Value.(flag.Getter); ok {
		if d, ok := g.Get().(time.Duration); ok {
			return d
		}
	}
	return 0
}

// requireDaemon fails the test when mailgate cannot run (it does not
// build, or does not start).
func requireDaemon(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("mailgate cannot run: %v", err)
	}
}

// testDir returns a fresh directory for one scenario's store, media,
// configuration and logs.
func testDir(t *testing.T) string {
	t.Helper()
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	dir := filepath.Join(suite.workDir, name)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
