// Package pgtest starts a throwaway PostgreSQL server for tests, the e2e
// suite and the benchmarks: a private cluster in a temporary directory that
// listens only on a Unix socket inside it, so parallel runs never collide
// and no TCP port is picked.
//
// The server binaries come from Debian's postgresql package
// (/usr/lib/postgresql/N/bin); e2e/setup.sh and .ci/run install it. When
// they are missing, New skips the test, unless MAILGATE_REQUIRE_POSTGRES is
// set (as .ci/run does), in which case it fails.
package pgtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Options tune Start.
type Options struct {
	// BinDir holds initdb and postgres. Empty means the newest
	// /usr/lib/postgresql/*/bin, or $MAILGATE_PG_BINDIR when set.
	BinDir string
	// Durable keeps fsync on. Tests leave it off: a killed mailgate
	// never takes the PostgreSQL server down with it, so the server's own
	// fsyncs only cost time.
	Durable bool
	// Log receives the server's log lines; nil discards them.
	Log io.Writer
}

// Server is a running private PostgreSQL cluster.
type Server struct {
	// Dir is the temporary directory holding the cluster and its socket.
	Dir string
	// SocketDir is the directory of the server's Unix socket.
	SocketDir string
	// User is the cluster's superuser.
	User string

	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	dbSeq   atomic.Int64
}

// FindBinDir returns the directory holding initdb and postgres, or an
// error naming where it looked.
func FindBinDir() (string, error) {
	if d := os.Getenv("MAILGATE_PG_BINDIR"); d != "" {
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgVersion(dirs[i]) > pgVersion(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("pgtest: no PostgreSQL server in /usr/lib/postgresql/*/bin (apt-get install postgresql, or set MAILGATE_PG_BINDIR)")
}

func pgVersion(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// Start initialises a cluster in a new temporary directory and starts its
// server. When the process runs as root, the server runs as the
// "postgres" system user, since PostgreSQL refuses to run as root.
func Start(ctx context.Context, opts Options) (*Server, error) {
	bin := opts.BinDir
	if bin == "" {
		var err error
		if bin, err = FindBinDir(); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	s := &Server{Dir: dir, SocketDir: filepath.Join(dir, "sock"), done: make(chan struct{})}
	fail := func(err error) (*Server, error) {
		os.RemoveAll(dir)
		return nil, err
	}
	var cred *syscall.Credential
	s.User = currentUser()
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return fail(fmt.Errorf("pgtest: running as root needs the postgres system user: %w", err))
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		s.User = "postgres"
		if err := os.Chmod(dir, 0o755); err != nil {
			return fail(fmt.Errorf("pgtest: %w", err))
		}
	}
	data := filepath.Join(dir, "data")
	for _, d := range []string{data, s.SocketDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return fail(fmt.Errorf("pgtest: %w", err))
		}
		if cred != nil {
			if err := os.Chown(d, int(cred.Uid), int(cred.Gid)); err != nil {
				return fail(fmt.Errorf("pgtest: %w", err))
			}
		}
	}
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"),
		"-D", data, "-U", s.User, "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("pgtest: initdb: %w: %s", err, out))
	}
	args := []string{"-D", data, "-k", s.SocketDir,
		"-c", "listen_addresses=", "-c", "max_connections=200",
		"-c", "shared_buffers=32MB", "-c", "log_min_messages=warning"}
	if !opts.Durable {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	cmd := exec.Command(filepath.Join(bin, "postgres"), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return fail(fmt.Errorf("pgtest: %w", err))
	}
	if err := cmd.Start(); err != nil {
		return fail(fmt.Errorf("pgtest: start postgres: %w", err))
	}
	s.cmd = cmd
	// The server says when it is ready; wait for that line instead of
	// polling the socket.
	ready := make(chan struct{})
	var tail strings.Builder
	go func() {
		sc := bufio.NewScanner(stderr)
		signalled := false
		for sc.Scan() {
			line := sc.Text()
			if opts.Log != nil {
				fmt.Fprintln(opts.Log, line)
			}
			if !signalled {
				if tail.Len() < 8192 {
					tail.WriteString(line + "\n")
				}
				if strings.Contains(line, "ready to accept connections") {
					signalled = true
					close(ready)
				}
			}
		}
		s.waitErr = cmd.Wait()
		close(s.done)
	}()
	select {
	case <-ready:
	case <-s.done:
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pgtest: postgres exited before it was ready (%v): %s", s.waitErr, tail.String())
	case <-ctx.Done():
		s.Stop()
		return nil, fmt.Errorf("pgtest: waiting for postgres: %w", ctx.Err())
	}
	return s, nil
}

func currentUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "postgres"
}

// DSN returns a connection string for database name on the server.
func (s *Server) DSN(name string) string {
	return fmt.Sprintf("host=%s user=%s dbname=%s sslmode=disable", s.SocketDir, s.User, name)
}

// CreateDatabase creates a new empty database and returns its DSN. Each
// call gets a database of its own, so tests sharing one server stay apart.
func (s *Server) CreateDatabase(ctx context.Context) (string, error) {
	name := fmt.Sprintf("t%d_%d", os.Getpid(), s.dbSeq.Add(1))
	conn, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		return "", fmt.Errorf("pgtest: connect: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("pgtest: create database %s: %w", name, err)
	}
	return s.DSN(name), nil
}

// Stop shuts the server down (fast shutdown) and removes its directory.
func (s *Server) Stop() error {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			s.cmd.Process.Kill()
			<-s.done
		}
	}
	return os.RemoveAll(s.Dir)
}

// requireInstalled skips t when no PostgreSQL is installed, or fails it
// when MAILGATE_REQUIRE_POSTGRES is set.
func requireInstalled(t testing.TB) {
	t.Helper()
	if _, err := FindBinDir(); err != nil {
		if os.Getenv("MAILGATE_REQUIRE_POSTGRES") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
}

// New starts a server for the test and stops it when the test ends. It
// skips the test when no PostgreSQL is installed, unless
// MAILGATE_REQUIRE_POSTGRES is set.
func New(t testing.TB) *Server {
	t.Helper()
	requireInstalled(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := Start(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	return s
}

// NewDatabase is CreateDatabase for a test: it fails the test on error.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dsn, err := s.CreateDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return dsn
}

// Once is one server shared by a whole test binary: a package's tests
// declare one as a package variable, take the server from it (started by
// the first test that asks) and give each test a database of its own;
// TestMain calls Stop after the tests ran.
type Once struct {
	once sync.Once
	srv  *Server
	err  error
}

// Server returns the shared server, starting it on first use. It skips t
// as New does when no PostgreSQL is installed. A server first asked for by
// a benchmark is durable (fsync on, as in production), so that its figures
// compare with SQLite's; for tests it is not, for speed.
func (o *Once) Server(t testing.TB) *Server {
	t.Helper()
	requireInstalled(t)
	o.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		_, durable := t.(*testing.B)
		o.srv, o.err = Start(ctx, Options{Durable: durable})
	})
	if o.err != nil {
		t.Fatal(o.err)
	}
	return o.srv
}

// Stop stops the shared server if it was started.
func (o *Once) Stop() {
	if o.srv != nil {
		o.srv.Stop()
	}
}
