//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/jackc/pgx/v5"

	"mailgate/internal/pgtest"
	"mailgate/lease"
)

// TestScaleOutKill9 runs two mailgate instances against one PostgreSQL
// (store and leases) and one Dovecot. 300 emails from 30 senders arrive
// while the instance holding the channel is SIGKILLed three times (and
// restarted). Every email must be posted, at most one duplicate per kill,
// each sender's first posts in the mailbox's order, and each takeover
// within lease_ttl + 5 s of the kill.
//
// It needs the PostgreSQL store ([store] driver = "postgres", issue #18,
// built on another branch): while mailgate's configuration does not know
// store.driver, the scenario skips, saying so. With separate SQLite
// stores the second instance would post the whole mailbox again; set
// E2E_SCALEOUT_LEASES_ONLY=1 to run it so anyway, checking only the
// takeovers and that every email is posted.
func TestScaleOutKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: 300 emails and 3 SIGKILLs of the lease holder")
	}
	const (
		senders   = 30
		perSender = 10
		total     = senders * perSender
		kills     = 3
		ttl       = 5 * time.Second
	)
	if _, err := pgtest.FindBinDir(); err != nil {
		t.Fatal(err) // setup.sh installs postgresql
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	pg, err := pgtest.Start(ctx, pgtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Stop() })
	dsn, err := pg.CreateDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}

	resetMailbox(t, supportUser)
	ul := newFakeUserlike(t, inboundToken)
	ul.SetLatency(20 * time.Millisecond) // a window for a kill between POST and record
	dir := testDir(t)
	var gs [2]*mailgate
	newInstances := func(driver string) {
		for i, name := range []string{"a", "b"} {
			d := filepath.Join(dir, "scaleout-"+name)
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
			gs[i] = newMailgate(t, d, mailgateOptions{
				InboundURL: ul.InboundURL(),
				RateLimit:  100000,
				Store: fmt.Sprintf("%sdsn = %s\ninstance = %q\nlease_ttl = %q\n",
					driver, strconv.Quote(dsn), name, ttl.String()),
			})
		}
	}
	newInstances("driver = \"postgres\"\n")
	// The guard: a mailgate with leases but without the PostgreSQL store.
	sharedStore := true
	if out, err := exec.Command(suite.binary, "check-config", "-c", gs[0].cfgPath).CombinedOutput(); err != nil {
		if !strings.Contains(string(out), "store.driver") {
			t.Fatalf("check-config: %v\n%s", err, out)
		}
		if os.Getenv("E2E_SCALEOUT_LEASES_ONLY") == "" {
			t.Skipf("needs the PostgreSQL store ([store] driver = \"postgres\"); runs once it is merged (or with E2E_SCALEOUT_LEASES_ONLY=1). check-config said: %s", strings.TrimSpace(string(out)))
		}
		t.Log("E2E_SCALEOUT_LEASES_ONLY: leases in PostgreSQL, a SQLite store per instance: a takeover posts the mailbox again; only takeovers and completeness are checked")
		sharedStore = false
		newInstances("")
	}
	for _, g := range gs {
		requireDaemon(t, g.Start())
	}
	byName := map[string]*mailgate{"a": gs[0], "b": gs[1]}

	msgs := make([]lmtpMessage, total)
	delivered := make([]string, total)
	for i := range msgs {
		s, seq := i%senders+1, i/senders
		from := senderOf(s)
		e := email{
			FromName: fmt.Sprintf("Customer %d", s),
			From:     from,
			Subject:  fmt.Sprintf("Scale-out from customer %d", s),
			Body:     fmt.Sprintf("Scale-out message burst-%02d-%02d from customer %d.", s, seq, s),
		}
		msgs[i] = lmtpMessage{From: from, To: supportUser, Raw: e.raw()}
		delivered[i] = fmt.Sprintf("burst-%02d-%02d", s, seq)
	}
	deliveryErr := make(chan error, 1)
	go func() {
		for i := 0; i < total; {
			n := min(1+rand.N(20), total-i)
			if err := deliverLMTP(ctx, msgs[i:i+n]); err != nil {
				deliveryErr <- fmt.Errorf("delivering mails %d-%d: %w", i, i+n-1, err)
				return
			}
			i += n
			select {
			case <-ctx.Done():
				deliveryErr <- ctx.Err()
				return
			case <-time.After(rand.N(400 * time.Millisecond)):
			}
		}
		deliveryErr <- nil
	}()

	holder := waitLeaseHolder(t, dsn, 0, 60*time.Second)
	for k := 0; k < kills; k++ {
		// Kill while the holder works through the mail: after a
		// share of the posts, not at a fixed time.
		want := (k + 1) * total / (kills + 2)
		if _, ok := ul.WaitAccepted(3*time.Minute, func(p []inboundPost) bool { return distinct(p) >= want }); !ok {
			t.Fatalf("only %d of %d emails posted before kill %d", distinct(ul.Accepted()), want, k+1)
		}
		g := byName[holder.Instance]
		g.Kill9()
		killed := time.Now()
		next := waitLeaseHolder(t, dsn, holder.Token, ttl+time.Minute)
		took := time.Since(killed)
		t.Logf("kill %d: %s (token %d) killed; %s took over with token %d after %s", k+1, holder.Instance, holder.Token, next.Instance, next.Token, took.Round(time.Millisecond))
		if took > ttl+5*time.Second {
			t.Errorf("takeover %d took %s, more than lease_ttl + 5 s", k+1, took)
		}
		requireDaemon(t, g.Start())
		holder = next
	}
	if err := <-deliveryErr; err != nil {
		t.Fatal(err)
	}
	if _, ok := ul.WaitAccepted(5*time.Minute, func(p []inboundPost) bool { return distinct(p) == total }); !ok {
		t.Fatalf("%d of %d emails posted", distinct(ul.Accepted()), total)
	}
	// Nothing left in the shared inbound queue: no post is still coming.
	waitMetric(t, byName[holder.Instance], `mailgate_queue_depth{channel="support",queue="inbound"} 0`, time.Minute)
	posts := ul.Accepted()
	if !sharedStore {
		t.Logf("%d emails, %d posts (every takeover re-posts the mailbox without a shared store)", total, len(posts))
		return
	}

	uids := uidsByMarker(t, supportUser, "INBOX", burstMarker)
	counts := map[string]int{}
	lastFirst := map[string]imap.UID{} // sender -> highest UID first posted so far
	var orderErrs []string
	for _, p := range posts {
		m := burstMarker.FindStringSubmatch(p.Text)
		if m == nil || p.URL != "" {
			continue
		}
		marker := m[0]
		counts[marker]++
		if counts[marker] > 1 {
			continue
		}
		if uids[marker] < lastFirst[m[1]] {
			orderErrs = append(orderErrs, fmt.Sprintf("%s (UID %d) first posted after UID %d", marker, uids[marker], lastFirst[m[1]]))
		} else {
			lastFirst[m[1]] = uids[marker]
		}
	}
	dups := 0
	for _, n := range counts {
		dups += n - 1
	}
	t.Logf("%d emails, %d posts, %d duplicates, %d kills", total, len(posts), dups, kills)
	if dups > kills {
		t.Errorf("%d duplicates, more than the %d kills", dups, kills)
	}
	if n := reordered(delivered, uids, func(marker string) string { return burstMarker.FindStringSubmatch(marker)[1] }); n > 0 {
		t.Logf("Dovecot numbered %d pairs of one sender's emails in the opposite order of their delivery", n)
	}
	if len(orderErrs) > 0 {
		t.Errorf("%d first posts out of the mailbox's order: %s", len(orderErrs), strings.Join(head(orderErrs, 10), "; "))
	}
}

// waitLeaseHolder waits until the support channel's lease is live with a
// token above after, and returns it.
func waitLeaseHolder(t *testing.T, dsn string, after int64, timeout time.Duration) lease.Holder {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	deadline := time.Now().Add(timeout)
	var hs []lease.Holder
	for time.Now().Before(deadline) {
		if hs, err = lease.Holders(ctx, conn); err != nil {
			t.Fatal(err)
		}
		for _, h := range hs {
			if h.Channel == "support" && h.Live && h.Token > after {
				return h
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no live lease of support with a token above %d within %s: %+v", after, timeout, hs)
	return lease.Holder{}
}

// waitMetric waits until g's /metrics has a line equal to line.
func waitMetric(t *testing.T, g *mailgate, line string, timeout time.Duration) {
	t.Helper()
	ok := waitFor(timeout, func() bool {
		_, body := g.scrape("/metrics")
		return slices.Contains(strings.Split(body, "\n"), line)
	})
	if !ok {
		t.Fatalf("%s: no %q within %s", g.metrics, line, timeout)
	}
}
