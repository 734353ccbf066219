//go:build e2e

package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
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

// postgres is the suite's PostgreSQL server, started by the first
// scenario that needs it; runSuite stops it.
var postgres pgtest.Once

// scaleOutDSN returns a new database on the suite's PostgreSQL server.
func scaleOutDSN(t *testing.T) string {
	t.Helper()
	if _, err := pgtest.FindBinDir(); err != nil {
		t.Fatal(err) // setup.sh installs postgresql
	}
	return postgres.Server(t).NewDatabase(t)
}

// TestScaleOutKill9 runs two mailgate instances against one PostgreSQL
// (store and leases) and one Dovecot. 300 emails from 30 senders arrive
// while the instance holding the channel is SIGKILLed three times (and
// restarted). Every email must be posted, at most the posts in flight
// (4) duplicated per kill, each sender's first posts in the mailbox's
// order, and each takeover within lease_ttl + 5 s of the kill.
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
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dsn := scaleOutDSN(t)

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
	// Userlike's Inbound API has no idempotency key, so a POST in flight
	// when its instance dies is posted again by the next holder: at most
	// the posts in flight per kill, which the poster bounds at 4 per
	// channel (inbound.Options.Workers; doc/scale-out.md).
	const inflight = 4
	if dups > kills*inflight {
		t.Errorf("%d duplicates, more than the %d posts that can be in flight at %d kills", dups, kills*inflight, kills)
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

// TestScaleOutSharedWork runs two mailgate instances on one PostgreSQL
// store and checks what every instance does, whichever holds the channel:
//
//   - an attachment's media URL issued by the holder downloads from the
//     other instance too (the contents and the signing key are in the
//     shared store, not in either instance's media.dir);
//   - operator replies posted round-robin to both instances' webhooks are
//     each mailed exactly once, coalesced per customer as on one instance.
func TestScaleOutSharedWork(t *testing.T) {
	customers := []string{"cust41@example.test", "cust42@example.test", "cust43@example.test"}
	resetMailbox(t, supportUser)
	resetMailboxes(t, customers...)
	dsn := scaleOutDSN(t)
	ul := newFakeUserlike(t, inboundToken)
	dir := testDir(t)
	byName := map[string]*mailgate{}
	for _, name := range []string{"a", "b"} {
		d := filepath.Join(dir, "shared-"+name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		byName[name] = newMailgate(t, d, mailgateOptions{
			InboundURL: ul.InboundURL(),
			Store:      fmt.Sprintf("driver = \"postgres\"\ndsn = %s\ninstance = %q\nlease_ttl = \"5s\"\n", strconv.Quote(dsn), name),
			// Both instances' outbox workers see every reply; the
			// window lets the four of a customer meet in one email.
			SMTP: `coalesce = "3s"`,
		})
		requireDaemon(t, byName[name].Start())
	}
	holder := byName[waitLeaseHolder(t, dsn, 0, time.Minute).Instance]
	other := byName["a"]
	if holder == other {
		other = byName["b"]
	}

	// 1. A media URL issued by the holder downloads from the other.
	pdf := testPDF(60 << 10)
	deliver(t, supportUser, email{
		FromName: "Customer 46", From: "cust46@example.test", Subject: "Invoice",
		Body:       "The invoice is attached (shared-media).",
		Attachment: &attachment{Filename: "invoice.pdf", ContentType: "application/pdf", Data: pdf},
	}.raw())
	posts, ok := ul.WaitAccepted(time.Minute, func(ps []inboundPost) bool {
		return slices.ContainsFunc(ps, func(p inboundPost) bool { return p.URL != "" })
	})
	if !ok {
		t.Fatalf("no media post within a minute:\n%s", describePosts(ul.All()))
	}
	var mediaURL string
	for _, p := range posts {
		if p.URL != "" {
			mediaURL = p.URL
		}
	}
	if !strings.Contains(mediaURL, holder.listen) {
		t.Fatalf("media URL %s is not on the holder's listener %s", mediaURL, holder.listen)
	}
	want := sha256.Sum256(pdf)
	for _, g := range []*mailgate{holder, other} {
		u := strings.Replace(mediaURL, holder.listen, g.listen, 1)
		got, _, err := fetchMedia(u)
		if err != nil {
			t.Errorf("media URL through instance %s: %v", filepath.Base(g.dir), err)
		} else if got != hex.EncodeToString(want[:]) {
			t.Errorf("media URL through instance %s: SHA-256 %s, want %x", filepath.Base(g.dir), got, want)
		}
	}

	// 2. Replies posted round-robin: one email per customer, holding all
	// four of its operator messages.
	gs := []*mailgate{byName["a"], byName["b"]}
	for i := range 4 {
		for c, cust := range customers {
			gs[(i*len(customers)+c)%2].sendReply(t, operatorReply{
				ID: fmt.Sprintf("shared-op-%d-%d", c, i), Contact: cust, Operator: "Olga",
				Text: fmt.Sprintf("Answer shared-op-%d-%d.", c, i),
			})
		}
	}
	if st, ok := holder.waitStatus(t, time.Minute, func(s channelStatus) bool {
		return s.OutboxPending() == 0 && s.Outbox[outboxSent] == 4*len(customers)
	}); !ok {
		t.Fatalf("the replies were not all sent within a minute: %s", st)
	}
	for _, cust := range customers {
		if n, ok := waitCount(t, cust, "INBOX", 1, time.Minute); !ok {
			t.Errorf("%s: %d emails, want 1", cust, n)
			continue
		}
	}
	flushPostfix(t)
	if !waitFor(time.Minute, func() bool { return postfixQueueEmpty(t) }) {
		t.Errorf("Postfix's queue is not empty a minute after the replies:\n%s", postfixQueue())
	}
	for c, cust := range customers {
		inbox := fetchFolder(t, cust, "INBOX")
		if len(inbox) != 1 {
			t.Errorf("%s received %d emails, want 1 (its four answers coalesced)", cust, len(inbox))
			continue
		}
		text, err := plainText(inbox[0].Raw)
		if err != nil {
			t.Errorf("%s: %v", cust, err)
			continue
		}
		for i := range 4 {
			if id := fmt.Sprintf("shared-op-%d-%d", c, i); !strings.Contains(text, id) {
				t.Errorf("%s: the email lacks %s:\n%s", cust, id, text)
			}
		}
	}
}
