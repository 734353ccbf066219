package main

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"mailgate/internal/pgtest"
	"mailgate/lease"
	"mailgate/userlike/userliketest"
)

// postgres is the test binary's PostgreSQL server; TestMain stops it.
var postgres pgtest.Once

// leaseDSN returns the DSN of a fresh PostgreSQL database.
func leaseDSN(t *testing.T) string {
	t.Helper()
	return postgres.Server(t).NewDatabase(t)
}

// useLeases puts e's store in PostgreSQL (dsn) with the lease keys.
func (e *testEnv) useLeases(dsn, instance, ttl string) {
	e.t.Helper()
	cfg := readFile(e.t, e.cfgPath)
	keys := "[store]\ndriver = \"postgres\"\ndsn = " + quote(dsn) + "\ninstance = " + quote(instance) + "\nlease_ttl = " + quote(ttl) + "\n"
	if !strings.Contains(cfg, "[store]\n") {
		e.t.Fatal("no [store] in the test configuration")
	}
	writeFile(e.t, e.cfgPath, strings.Replace(cfg, "[store]\n", keys, 1))
}

// waitHolder waits until instance holds channel's lease with token, as
// the lease table says.
func waitHolder(t *testing.T, dsn, channel, instance string, token int64) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	deadline := time.Now().Add(waitLimit)
	var hs []lease.Holder
	for time.Now().Before(deadline) {
		if hs, err = lease.Holders(ctx, conn); err != nil {
			t.Fatal(err)
		}
		for _, h := range hs {
			if h.Channel == channel && h.Instance == instance && h.Token == token && h.Live {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s does not hold %s with token %d: %+v", instance, channel, token, hs)
}

func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }

// twin is a second instance of e's daemon: the same mail system, Userlike
// and configuration, but its own ports, store and instance name; it reads
// only mail that arrives after its first sync (imap.start = "now").
func (e *testEnv) twin(instance string) *testEnv {
	e.t.Helper()
	b := &testEnv{t: e.t, mail: e.mail, ul: e.ul, dir: e.t.TempDir(), bound: map[string]net.Listener{}}
	b.httpAddr, b.metricsAddr = b.bind(), b.bind()
	b.cfgPath = filepath.Join(b.dir, "config.toml")
	cfg := readFile(e.t, e.cfgPath)
	for _, r := range [][2]string{
		{e.httpAddr, b.httpAddr},
		{e.metricsAddr, b.metricsAddr},
		{filepath.Join(e.dir, "state"), filepath.Join(b.dir, "state")},
		{`start = "all"`, `start = "now"`},
	} {
		if !strings.Contains(cfg, r[0]) {
			e.t.Fatalf("twin: %q not in the configuration", r[0])
		}
		cfg = strings.ReplaceAll(cfg, r[0], r[1])
	}
	cfg = strings.Replace(cfg, "instance = ", "instance = "+quote(instance)+"\n# was: instance = ", 1)
	writeFile(e.t, b.cfgPath, cfg)
	return b
}

// Two daemons configured for the same channel with one lease table: only
// the holder watches the mailbox; when it is killed, the other takes over
// and posts the new mail.
func TestDaemonsShareChannelByLease(t *testing.T) {
	dsn := leaseDSN(t)
	const ttl = 2 * time.Second
	a := newTestEnv(t, "")
	a.useLeases(dsn, "a", ttl.String())
	b := a.twin("b")

	child := a.startChild("a.log")
	waitHolder(t, dsn, "support", "a", 1)
	a.deliver(customerMail("jane@example.test", "Jane", "l1@example.test", "Lease", "first"))
	a.ul.waitPosts(1)

	b.stop = b.start()
	bReady := "http://" + b.metricsAddr + "/readyz"
	waitScrape(t, bReady, 200, `"instance":"b","leases":[{"channel":"support","holder":"a","token":1,"here":false}]`)
	waitScrape(t, "http://"+b.metricsAddr+"/metrics", 200, `mailgate_channel_lease_held{channel="support"} 0`)
	b.d.mu.Lock()
	run := b.d.channels["support"]
	b.d.mu.Unlock()
	if run.watcher.State().Attempted {
		t.Fatal("the instance without the lease connected to the mailbox")
	}
	if _, running := run.mailboxRunning(); running {
		t.Fatal("the instance without the lease runs the mailbox side")
	}

	if code, out, _ := runCLI(t, "", "status", "-c", b.cfgPath); code != 0 || !strings.Contains(out, "lease:   held by a (token 1, expires in") {
		t.Fatalf("status while a holds (exit %d):\n%s", code, out)
	}

	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	deadline := killed.Add(waitLimit)
	child.Wait()
	waitScrape(t, "http://"+b.metricsAddr+"/metrics", 200, `mailgate_channel_lease_held{channel="support"} 1`)
	took := time.Since(killed)
	t.Logf("takeover %s after SIGKILL of the holder (lease_ttl %s)", took.Round(time.Millisecond), ttl)
	if took > ttl+5*time.Second {
		t.Errorf("takeover took %s, more than lease_ttl + 5 s", took)
	}
	waitScrape(t, "http://"+b.metricsAddr+"/metrics", 200, `mailgate_lease_takeovers_total{channel="support"} 1`)
	waitScrape(t, bReady, 200, `{"channel":"support","holder":"b","token":2,"here":true}`)

	// New mail after b's first sync is b's to post.
	deadline = time.Now().Add(waitLimit)
	for run.watcher.State().LastSync.IsZero() {
		if time.Now().After(deadline) {
			t.Fatal("b never synced the mailbox")
		}
		time.Sleep(20 * time.Millisecond)
	}
	a.deliver(customerMail("jane@example.test", "Jane", "l2@example.test", "Lease", "second"))
	posts := a.ul.waitPosts(2)
	if len(posts) != 2 || !strings.Contains(posts[1].Text, "second") {
		t.Fatalf("posts after the takeover: %+v", posts)
	}
	if code, out, _ := runCLI(t, "", "status", "-c", b.cfgPath, "-json"); code != 0 || !strings.Contains(out, `"instance": "b",`) || !strings.Contains(out, `"token": 2,`) {
		t.Fatalf("status -json while b holds (exit %d):\n%s", code, out)
	}

	// b loses the lease (taken over by an instance that died at once:
	// the row names it, expired) and gets it back: the same watcher and
	// poster run again and post new mail.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `UPDATE mailgate_leases SET holder = 'gone', token = token + 1, expires_at = now() WHERE channel = 'support'`); err != nil {
		t.Fatal(err)
	}
	waitHolder(t, dsn, "support", "b", 4)
	for _, line := range []string{`mailgate_lease_takeovers_total{channel="support"} 2`, `mailgate_channel_lease_held{channel="support"} 1`} {
		waitScrape(t, "http://"+b.metricsAddr+"/metrics", 200, line)
	}
	for !run.watcher.State().Connected {
		if time.Now().After(deadline) {
			t.Fatal("b did not reconnect after getting the lease back")
		}
		time.Sleep(20 * time.Millisecond)
	}
	a.deliver(customerMail("jane@example.test", "Jane", "l3@example.test", "Lease", "third"))
	posts = a.ul.waitPosts(3)
	if len(posts) != 3 || !strings.Contains(posts[2].Text, "third") {
		t.Fatalf("posts after the lease came back: %+v", posts)
	}

	// A clean stop releases the lease at once.
	b.stop()
	if code, out, _ := runCLI(t, "", "status", "-c", b.cfgPath); code != 0 || !strings.Contains(out, "lease:   free (last held by b, token 4, expired") {
		t.Fatalf("status after b stopped (exit %d):\n%s", code, out)
	}
}

// An instance that loses a channel's lease while a POST hangs stops the
// channel's poster (and with it its ledger writes) within the lease's
// safety margin, instead of draining for the usual 30 s: before another
// instance could take the lease over.
func TestLeaseLostCutsTheDrain(t *testing.T) {
	dsn := leaseDSN(t)
	const ttl = 10 * time.Second
	e := newTestEnv(t, "")
	e.useLeases(dsn, "a", ttl.String())
	events := make(chan lease.Event, 16)
	e.leaseEvents = func(ev lease.Event) { events <- ev }
	e.start()
	waitEvent := func(kind lease.EventKind) time.Time {
		t.Helper()
		timeout := time.After(waitLimit)
		for {
			select {
			case ev := <-events:
				if ev.Kind == kind {
					return time.Now()
				}
			case <-timeout:
				t.Fatalf("no lease event %s", kind)
			}
		}
	}
	waitEvent(lease.Acquired)
	e.d.mu.Lock()
	run := e.d.channels["support"]
	e.d.mu.Unlock()
	deadline := time.Now().Add(waitLimit)
	for run.watcher.State().LastSync.IsZero() {
		if time.Now().After(deadline) {
			t.Fatal("never synced")
		}
		time.Sleep(20 * time.Millisecond)
	}

	e.ul.SetMode(userliketest.ModeHold)
	e.deliver(customerMail("jane@example.test", "Jane", "drain@example.test", "Drain", "held"))
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	for len(e.ul.Posts()) == 0 { // held: not accepted, so Wait does not see it
		if time.Now().After(deadline) {
			t.Fatal("the POST never reached Userlike")
		}
		time.Sleep(10 * time.Millisecond)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `UPDATE mailgate_leases SET holder = 'other', token = token + 1, expires_at = now() + interval '1 hour'`); err != nil {
		t.Fatal(err)
	}
	fenced := waitEvent(lease.Fenced)
	stopped := waitEvent(lease.Stopped)
	took := stopped.Sub(fenced)
	margin := ttl / 5
	t.Logf("mailbox side stopped %s after the fence, with a POST hanging (margin %s)", took.Round(time.Millisecond), margin)
	if took >= margin {
		t.Errorf("stopping took %s, not within the lease's margin of %s", took, margin)
	}
	if _, running := run.mailboxRunning(); running {
		t.Error("the mailbox side still runs after the Stopped event")
	}
	if n := len(e.ul.Accepted()); n != 0 {
		t.Errorf("%d posts accepted while held", n)
	}
	e.ul.SetMode(userliketest.ModeOK)
	if s := ledgerSummary(t, e.cfgPath); strings.Contains(s, "posted=") {
		t.Errorf("the fenced instance recorded a post: %s", s)
	}
}
