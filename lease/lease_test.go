package lease

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"mailgate/internal/pgtest"
)

// One PostgreSQL server for the whole test binary; each test gets its own
// database.
// postgres is the test binary's PostgreSQL server; TestMain stops it.
var postgres pgtest.Once

func TestMain(m *testing.M) {
	code := m.Run()
	postgres.Stop()
	os.Exit(code)
}

// newDatabase returns the DSN of a fresh database and the server.
func newDatabase(t *testing.T) (string, *pgtest.Server) {
	t.Helper()
	srv := postgres.Server(t)
	return srv.NewDatabase(t), srv
}

// eventLog records the events of several instances in one order.
type eventLog struct {
	mu     sync.Mutex
	lines  []string
	change chan struct{}
}

func newEventLog() *eventLog { return &eventLog{change: make(chan struct{})} }

func (l *eventLog) add(format string, args ...any) {
	l.mu.Lock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
	close(l.change)
	l.change = make(chan struct{})
	l.mu.Unlock()
}

func (l *eventLog) events(e Event) { l.add("%s %s %d", e.Instance, e.Kind, e.Token) }

// index is the position of the first line equal to s, or -1.
func (l *eventLog) index(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, x := range l.lines {
		if x == s {
			return i
		}
	}
	return -1
}

// wait blocks until a line equal to one of want is logged and returns it.
func (l *eventLog) wait(t *testing.T, timeout time.Duration, want ...string) string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		l.mu.Lock()
		for _, x := range l.lines {
			for _, w := range want {
				if x == w {
					l.mu.Unlock()
					return x
				}
			}
		}
		ch := l.change
		l.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("no %q within %s; events: %q", want, timeout, l.snapshot())
		}
	}
}

func (l *eventLog) snapshot() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

// exclusive fails the test when two works run at once.
type exclusive struct {
	t      *testing.T
	mu     sync.Mutex
	active string
}

// work is a lease work for instance: it logs its start and end and checks
// that no other work runs meanwhile.
func (x *exclusive) work(log *eventLog, instance string) func(ctx context.Context, token int64) {
	return func(ctx context.Context, token int64) {
		x.mu.Lock()
		if x.active != "" {
			x.t.Errorf("%s starts work while %s works", instance, x.active)
		}
		x.active = instance
		x.mu.Unlock()
		log.add("%s work %d", instance, token)
		<-ctx.Done()
		x.mu.Lock()
		x.active = ""
		x.mu.Unlock()
		log.add("%s done %d", instance, token)
	}
}

func openTable(t *testing.T, dsn, instance string, ttl time.Duration, log *eventLog) *Table {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tab, err := Open(ctx, Options{DSN: dsn, Instance: instance, TTL: ttl, Events: log.events})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tab.Close)
	return tab
}

// hold runs tab.Hold in the background; the returned function stops it and
// waits.
func hold(t *testing.T, tab *Table, channel string, work func(context.Context, int64)) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tab.Hold(ctx, channel, work)
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

func TestOptions(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{DSN: "host=/nonexistent", TTL: time.Second}, "instance name is empty"},
		{Options{DSN: "host=/nonexistent", Instance: "a", TTL: time.Second, Margin: time.Second}, "margin"},
		{Options{DSN: "host=/x password=hunter2 port=notaport", Instance: "a"}, "malformed"},
	} {
		_, err := Open(ctx, tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%+v) = %v, want an error with %q", tc.opts, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error shows the password: %v", err)
		}
	}
}

// Two instances contend for one lease: exactly one works at a time; a
// clean stop hands the lease over at the other's next attempt, with the
// next token.
func TestContendOneHolder(t *testing.T) {
	dsn, _ := newDatabase(t)
	log := newEventLog()
	x := &exclusive{t: t}
	const ttl = time.Second
	a := openTable(t, dsn, "a", ttl, log)
	b := openTable(t, dsn, "b", ttl, log)
	stopA := hold(t, a, "support", x.work(log, "a"))
	stopB := hold(t, b, "support", x.work(log, "b"))

	first := log.wait(t, 10*time.Second, "a work 1", "b work 1")
	holder, other, stopHolder := a, b, stopA
	if first == "b work 1" {
		holder, other, stopHolder = b, a, stopB
	}
	if _, ok := holder.Held("support"); !ok {
		t.Fatalf("%s works but does not hold", holder.Instance())
	}
	if _, ok := other.Held("support"); ok {
		t.Fatalf("both hold the lease")
	}
	// Several renewals go by (the table's expiry moves) while the other
	// keeps trying; it must not get in.
	ctx := context.Background()
	var firstExpiry time.Time
	for i := 0; i < 4; i++ {
		hs, err := holder.Holders(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(hs) != 1 || hs[0].Instance != holder.Instance() || hs[0].Token != 1 || !hs[0].Live {
			t.Fatalf("holders = %+v, want %s live with token 1", hs, holder.Instance())
		}
		if i == 0 {
			firstExpiry = hs[0].Expires
		}
		waitRenewed(t, holder, hs[0].Expires)
	}
	hs, _ := holder.Holders(ctx)
	if !hs[0].Expires.After(firstExpiry) {
		t.Fatalf("expiry did not move: %v, then %v", firstExpiry, hs[0].Expires)
	}

	start := time.Now()
	stopHolder()
	log.wait(t, 10*time.Second, holder.Instance()+" released 1")
	log.wait(t, 10*time.Second, other.Instance()+" work 2")
	t.Logf("handover after a clean stop: %s (ttl %s)", time.Since(start).Round(time.Millisecond), ttl)
	if i, j := log.index(holder.Instance()+" done 1"), log.index(other.Instance()+" work 2"); i > j {
		t.Fatalf("the new holder started before the old one stopped: %q", log.snapshot())
	}
}

// waitRenewed waits until holder's lease expires later than after.
func waitRenewed(t *testing.T, holder *Table, after time.Time) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		// A pooled connection whose backend was terminated fails once.
		var hs []Holder
		hs, err = holder.Holders(context.Background())
		if err == nil && len(hs) == 1 && hs[0].Expires.After(after) {
			return
		}
		time.Sleep(holder.TTL() / 20) // polling the table for a change
	}
	t.Fatalf("lease not renewed past %v (last error: %v)", after, err)
}

// A holder that dies without releasing (its connections cut, then
// stopped) is replaced within ttl plus the others' retry interval, with
// the next token.
func TestTakeoverAfterDeath(t *testing.T) {
	dsn, srv := newDatabase(t)
	p := newProxy(t, srv)
	log := newEventLog()
	x := &exclusive{t: t}
	const ttl = 1500 * time.Millisecond
	a := openTable(t, p.dsn(dsn), "a", ttl, log)
	stopA := hold(t, a, "support", x.work(log, "a"))
	log.wait(t, 10*time.Second, "a work 1")
	b := openTable(t, dsn, "b", ttl, log)
	hold(t, b, "support", x.work(log, "b"))

	// Death: nothing more reaches the server from a, not even a release.
	died := time.Now()
	p.cut()
	stopA()
	log.wait(t, ttl+5*time.Second, "b work 2")
	took := time.Since(died)
	t.Logf("takeover %s after the holder died (ttl %s)", took.Round(time.Millisecond), ttl)
	if log.index("a released 1") >= 0 {
		t.Fatalf("the dead holder released its lease: %q", log.snapshot())
	}
	if token, _ := b.Held("support"); token != 2 {
		t.Fatalf("new token %d, want 2", token)
	}
}

// A holder whose renewals hang (the database unreachable to it, but not to
// the others) stops its work before the other instance acquires.
func TestFencedBeforeOthersAcquire(t *testing.T) {
	dsn, srv := newDatabase(t)
	p := newProxy(t, srv)
	log := newEventLog()
	x := &exclusive{t: t}
	const ttl = 1500 * time.Millisecond
	a := openTable(t, p.dsn(dsn), "a", ttl, log)
	hold(t, a, "support", x.work(log, "a"))
	log.wait(t, 10*time.Second, "a work 1")
	b := openTable(t, dsn, "b", ttl, log)
	hold(t, b, "support", x.work(log, "b"))

	p.freeze()
	log.wait(t, ttl+5*time.Second, "b work 2")
	fenced, done, acquired := log.index("a fenced 1"), log.index("a done 1"), log.index("b acquired 2")
	if fenced < 0 || done < 0 || fenced > acquired || done > acquired {
		t.Fatalf("a was not fenced out before b acquired: %q", log.snapshot())
	}
	if _, ok := a.Held("support"); ok {
		t.Fatal("a still believes it holds the lease")
	}
	p.cut()
}

// A holder whose backend the server terminates reconnects and keeps the
// lease: one lost connection is not a lost lease.
func TestRenewSurvivesTerminatedBackend(t *testing.T) {
	dsn, _ := newDatabase(t)
	log := newEventLog()
	x := &exclusive{t: t}
	const ttl = 1500 * time.Millisecond
	a := openTable(t, dsn, "a", ttl, log)
	hold(t, a, "support", x.work(log, "a"))
	log.wait(t, 10*time.Second, "a work 1")

	ctx := context.Background()
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	hs, _ := a.Holders(ctx)
	if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()`); err != nil {
		t.Fatal(err)
	}
	waitRenewed(t, a, hs[0].Expires)
	if log.index("a fenced 1") >= 0 {
		t.Fatalf("a lost its lease to a terminated backend: %q", log.snapshot())
	}
}

// A renewal that finds the lease taken (here: deleted by an operator and
// taken by another instance) fences at once.
func TestRenewFindsLeaseTaken(t *testing.T) {
	dsn, _ := newDatabase(t)
	log := newEventLog()
	x := &exclusive{t: t}
	const ttl = 1500 * time.Millisecond
	a := openTable(t, dsn, "a", ttl, log)
	hold(t, a, "support", x.work(log, "a"))
	log.wait(t, 10*time.Second, "a work 1")
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `UPDATE mailgate_leases SET holder = 'intruder', token = token + 1`); err != nil {
		t.Fatal(err)
	}
	log.wait(t, 10*time.Second, "a fenced 1")
	log.wait(t, 10*time.Second, "a done 1")
}

// proxy forwards Unix socket connections to the PostgreSQL server, and can
// stop forwarding (freeze) or drop everything (cut).
type proxy struct {
	t      *testing.T
	dir    string
	target string
	ln     net.Listener

	mu     sync.Mutex
	conns  []net.Conn
	frozen chan struct{} // closed while not frozen
	closed bool
}

func newProxy(t *testing.T, srv *pgtest.Server) *proxy {
	dir, err := os.MkdirTemp("", "pgproxy")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ln, err := net.Listen("unix", filepath.Join(dir, ".s.PGSQL.5432"))
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, dir: dir, target: filepath.Join(srv.SocketDir, ".s.PGSQL.5432"), ln: ln, frozen: make(chan struct{})}
	close(p.frozen)
	t.Cleanup(p.cut)
	go p.serve()
	return p
}

// dsn rewrites a DSN of the server to go through the proxy.
func (p *proxy) dsn(dsn string) string {
	return strings.Replace(dsn, "host="+filepath.Dir(p.target), "host="+p.dir, 1)
}

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("unix", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			up.Close()
			return
		}
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

// pipe copies, holding each chunk while the proxy is frozen.
func (p *proxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			gate := p.frozen
			p.mu.Unlock()
			<-gate
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				dst.Close()
			}
			return
		}
	}
}

// freeze stops forwarding: requests are read but never reach the server.
func (p *proxy) freeze() {
	p.mu.Lock()
	p.frozen = make(chan struct{})
	p.mu.Unlock()
}

// cut closes the listener and every connection, and thaws the pipes so
// that they end.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	p.ln.Close()
	for _, c := range p.conns {
		c.Close()
	}
	select {
	case <-p.frozen:
	default:
		close(p.frozen)
	}
}

// A work that returns by itself gives the lease up; Hold acquires it again
// (with the next token) and runs the work again.
func TestWorkReturnsByItself(t *testing.T) {
	dsn, _ := newDatabase(t)
	log := newEventLog()
	a := openTable(t, dsn, "a", time.Second, log)
	var mu sync.Mutex
	runs := 0
	hold(t, a, "support", func(ctx context.Context, token int64) {
		mu.Lock()
		runs++
		first := runs == 1
		mu.Unlock()
		log.add("a work %d", token)
		if !first {
			<-ctx.Done()
		}
	})
	log.wait(t, 10*time.Second, "a work 2")
	for _, want := range []string{"a acquired 1", "a work 1", "a stopped 1", "a released 1", "a acquired 2", "a work 2"} {
		if log.index(want) < 0 {
			t.Fatalf("no %q: %q", want, log.snapshot())
		}
	}
	if log.index("a released 1") > log.index("a acquired 2") {
		t.Fatalf("acquired again before releasing: %q", log.snapshot())
	}
}
