//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// burstMarker finds "burst-SENDER-SEQ" in a posted text.
var burstMarker = regexp.MustCompile(`burst-(\d+)-(\d+)\b`)

// TestBurstKill9 delivers 1000 emails from 50 senders while mailgate is
// killed with SIGKILL at random moments (at least 10 times, some of them
// during startup and some after the last delivery) and restarted. In the
// end every email must have been posted at least once, under its sender,
// and each sender's emails must first reach Userlike in the mailbox's (UID)
// order.
// Duplicates (an email posted again because mailgate died between the POST
// and recording it) are allowed, counted and reported.
func TestBurstKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: 1000 emails and 10+ SIGKILLs (a few minutes)")
	}
	const (
		senders   = 50
		perSender = 20
		total     = senders * perSender
		maxBatch  = 40
		minKills  = 10
	)
	ul, g := startScenario(t, mailgateOptions{RateLimit: 100000})
	// A slower Userlike widens the window between a POST and its record,
	// where a kill makes a duplicate, and builds a backlog.
	ul.SetLatency(50 * time.Millisecond)

	// Mail i comes from sender i%50+1 with sequence number i/50: the
	// senders interleave, and each sender's mails arrive (and get UIDs) in
	// sequence order, over one LMTP session per batch.
	msgs := make([]lmtpMessage, total)
	delivered := make([]string, total) // markers in delivery order
	for i := range msgs {
		s, seq := i%senders+1, i/senders
		from := senderOf(s)
		e := email{
			FromName: fmt.Sprintf("Customer %d", s),
			From:     from,
			Subject:  fmt.Sprintf("Burst from customer %d", s),
			Body:     fmt.Sprintf("Burst message burst-%02d-%02d from customer %d.", s, seq, s),
		}
		msgs[i] = lmtpMessage{From: from, To: supportUser, Raw: e.raw()}
		delivered[i] = fmt.Sprintf("burst-%02d-%02d", s, seq)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	deliveryErr := make(chan error, 1)
	startedAt := time.Now()
	go func() {
		// Batches of 1 to 40 emails, 0 to 0.5s apart: on average faster
		// than mailgate posts, so kills hit both the delivery and a backlog.
		for i := 0; i < total; {
			n := min(1+rand.N(maxBatch), total-i)
			if err := deliverLMTP(ctx, msgs[i:i+n]); err != nil {
				deliveryErr <- fmt.Errorf("delivering mails %d-%d: %w", i, i+n-1, err)
				return
			}
			i += n
			select {
			case <-ctx.Done():
				deliveryErr <- ctx.Err()
				return
			case <-time.After(rand.N(500 * time.Millisecond)):
			}
		}
		deliveryErr <- nil
	}()

	deliveryTime, kills, killsAfter := killLoop(t, g, deliveryErr, killPlan{
		minKills: minKills, killsAfter: 2, minWait: 300 * time.Millisecond, maxWait: 3 * time.Second})
	restarted := time.Now()
	t.Logf("delivered %d emails in %v; %d SIGKILLs (%d after the delivery); final restart %v after the start, with %d distinct emails posted so far",
		total, deliveryTime.Round(time.Millisecond), kills, killsAfter, restarted.Sub(startedAt).Round(time.Millisecond), distinct(ul.Accepted()))

	type key struct{ sender, seq int }
	parse := func(p inboundPost) (key, bool) {
		m := burstMarker.FindStringSubmatch(p.Text)
		if m == nil || p.URL != "" {
			return key{}, false
		}
		s, _ := strconv.Atoi(m[1])
		q, _ := strconv.Atoi(m[2])
		return key{s, q}, true
	}
	allPosted := func(posts []inboundPost) bool { return distinct(posts) == total }
	posts, ok := ul.WaitAccepted(5*time.Minute, allPosted)
	drain := time.Since(restarted)
	// Settled, a duplicate would be among the posts.
	if st, ok := g.waitSettled(t, time.Minute, total); !ok {
		t.Errorf("not settled within a minute of the last first post: %s\nlog:\n%s", st, g.LogTail(40))
	}
	posts = ul.Accepted()

	// First posts must follow the mailbox's order (UID order), which is
	// almost always the order of delivery.
	uids := uidsByMarker(t, supportUser, "INBOX", burstMarker)
	sender := func(marker string) string { return burstMarker.FindStringSubmatch(marker)[1] }
	if n := reordered(delivered, uids, sender); n > 0 {
		t.Logf("Dovecot numbered %d pairs of one sender's emails in the opposite order of their delivery", n)
	}
	uidOf := func(k key) imap.UID { return uids[fmt.Sprintf("burst-%02d-%02d", k.sender, k.seq)] }
	counts := map[key]int{}
	lastFirst := map[int]key{} // sender -> the email with the highest UID first posted so far
	var orderErrs, lateDups, foreign, wrongSender []string
	for _, p := range posts {
		k, ok := parse(p)
		if !ok {
			foreign = append(foreign, string(p.Body))
			continue
		}
		if p.Email != senderOf(k.sender) {
			wrongSender = append(wrongSender, fmt.Sprintf("burst-%02d-%02d posted as %q", k.sender, k.seq, p.Email))
		}
		counts[k]++
		prev, seen := lastFirst[k.sender]
		switch {
		case uidOf(k) == 0:
			if counts[k] == 1 {
				t.Errorf("burst-%02d-%02d was posted but is not in the support INBOX", k.sender, k.seq)
			}
		case counts[k] == 1 && seen && uidOf(k) < uidOf(prev):
			orderErrs = append(orderErrs, fmt.Sprintf("sender %d: #%d (UID %d) first posted after #%d (UID %d)", k.sender, k.seq, uidOf(k), prev.seq, uidOf(prev)))
		case counts[k] == 1:
			lastFirst[k.sender] = k
		case seen && uidOf(k) < uidOf(prev):
			lateDups = append(lateDups, fmt.Sprintf("sender %d: #%d again after #%d", k.sender, k.seq, prev.seq))
		}
	}
	var missing []string
	dups, dupEmails := 0, 0
	for s := 1; s <= senders; s++ {
		for q := 0; q < perSender; q++ {
			n := counts[key{s, q}]
			if n == 0 {
				missing = append(missing, fmt.Sprintf("burst-%02d-%02d", s, q))
			}
			if n > 1 {
				dups += n - 1
				dupEmails++
			}
		}
	}
	t.Logf("result: %d POSTs accepted for %d emails; %d duplicate POSTs over %d emails; %d late duplicates; drained in %v after the final restart; %d POSTs answered in all (%d rejected for the token)",
		len(posts), total-len(missing), dups, dupEmails, len(lateDups), drain.Round(time.Millisecond), len(ul.All()), ul.BadTokens())
	if len(lateDups) > 0 {
		t.Logf("late duplicates (a repeat of an older email after a newer one): %s", strings.Join(head(lateDups, 10), "; "))
	}
	if !ok || len(missing) > 0 {
		t.Errorf("%d of %d emails never posted (waited %v after the final restart): %s\nmailgate log tail:\n%s",
			len(missing), total, drain.Round(time.Millisecond), strings.Join(head(missing, 30), " "), g.LogTail(40))
	}
	if len(orderErrs) > 0 {
		t.Errorf("per-sender order broken %d times: %s", len(orderErrs), strings.Join(head(orderErrs, 20), "; "))
	}
	if len(wrongSender) > 0 {
		t.Errorf("%d posts under the wrong address: %s", len(wrongSender), strings.Join(head(wrongSender, 10), "; "))
	}
	if len(foreign) > 0 {
		t.Errorf("%d posts that are not burst emails: %s", len(foreign), strings.Join(head(foreign, 5), "; "))
	}
	if n := ul.BadTokens(); n != 0 {
		t.Errorf("%d POSTs had a wrong API-SECURITY-TOKEN", n)
	}
	if n := g.CountLog("panic:"); n > 0 {
		t.Errorf("the mailgate log mentions \"panic:\" %d times", n)
	}

	// Each email's IMAP action (\Seen) must survive the kills too.
	deadline := time.Now().Add(time.Minute)
	for {
		unseen := countMessages(t, supportUser, "INBOX", "unseen")
		if unseen == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("%d of %d emails still unseen in INBOX a minute after the last post", unseen, total)
			break
		}
		time.Sleep(time.Second)
	}
	if dups > 0 {
		var worst []string
		for k, n := range counts {
			if n > 1 {
				worst = append(worst, fmt.Sprintf("burst-%02d-%02d x%d", k.sender, k.seq, n))
			}
		}
		sort.Strings(worst)
		t.Logf("duplicated emails: %s", strings.Join(head(worst, 30), " "))
	}
}

// distinct counts the different burst emails among posts.
func distinct(posts []inboundPost) int {
	seen := map[string]bool{}
	for _, p := range posts {
		if m := burstMarker.FindString(p.Text); m != "" && p.URL == "" {
			seen[m] = true
		}
	}
	return len(seen)
}

// head returns at most the first n elements of s.
func head(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// killPlan says how killLoop kills.
type killPlan struct {
	minKills   int           // kills in all, at least
	killsAfter int           // kills after the load ended, at least
	minWait    time.Duration // between two kills, at least
	maxWait    time.Duration // between two kills, at most
}

// killLoop SIGKILLs g at random moments and restarts it at once (so some
// kills hit the startup) until load has delivered its result (an error
// fails the test) and the plan's kills are done, then waits until the
// last start is healthy. It returns how long the load took from the call,
// and the kills in all and after the load.
func killLoop(t *testing.T, g *mailgate, load <-chan error, plan killPlan) (loadTime time.Duration, kills, killsAfter int) {
	t.Helper()
	start := time.Now()
	loadDone := false
	for !loadDone || kills < plan.minKills || killsAfter < plan.killsAfter {
		select {
		case err := <-load:
			if err != nil {
				t.Fatal(err)
			}
			loadDone, loadTime = true, time.Since(start)
			load = nil
			continue
		case <-time.After(plan.minWait + rand.N(plan.maxWait-plan.minWait)):
		}
		g.Kill9()
		kills++
		if loadDone {
			killsAfter++
		}
		if err := g.spawn(); err != nil {
			t.Fatalf("restart %d: %v", kills, err)
		}
	}
	if err := g.waitHealthy(30 * time.Second); err != nil {
		t.Fatalf("after %d kills: %v", kills, err)
	}
	return loadTime, kills, killsAfter
}
