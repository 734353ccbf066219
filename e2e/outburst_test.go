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
	"sync"
	"testing"
	"time"
)

// replyMarker finds "ob-CC-SS" (customer, sequence number) in a reply.
var replyMarker = regexp.MustCompile(`\bob-(\d{2})-(\d{2})\b`)

// TestOutboundBurstKill9 sends 500 operator replies to 50 customers
// (cust1..cust50, 10 each) through the webhook while mailgate is killed
// with SIGKILL at random moments (at least 6 times, at least once after
// the last webhook call, while the outbox drains) and restarted at once.
// The poster behaves like Userlike: it repeats a webhook delivery until it
// gets a 200. Every reply that got its 200 must reach its customer's
// INBOX: the replies are coalesced (smtp.coalesce = "1s"), so the test
// counts the operator texts inside the delivered emails, not the emails.
// Replies delivered twice (mailgate died between the relay's acceptance
// and recording it: delivery is at-least-once) are counted and reported.
func TestOutboundBurstKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: 500 replies and 6+ SIGKILLs (about a minute)")
	}
	const (
		customers   = 50
		perCustomer = 10
		total       = customers * perCustomer
		posters     = 4
		minKills    = 6
	)
	var users []string
	for c := 1; c <= customers; c++ {
		users = append(users, senderOf(c))
	}
	resetMailboxes(t, users...)
	_, g := startScenario(t, mailgateOptions{SMTP: `coalesce = "1s"`})

	// Reply i goes to customer i%50+1 with sequence number i/50, so the
	// customers interleave.
	replies := make([]operatorReply, total)
	for i := range replies {
		c, seq := i%customers+1, i/customers
		replies[i] = operatorReply{
			ID:       fmt.Sprintf("ob-%03d", i),
			Contact:  senderOf(c),
			Operator: []string{"Olivia", "Oscar", "Ona"}[i%3],
			Text:     fmt.Sprintf("Reply ob-%02d-%02d: your ticket is being handled.", c, seq),
		}
	}

	// The posters: 4 concurrent webhook clients working through the
	// replies in order, in bursts of 1 to 25 with pauses of up to 0.6s.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	type result struct {
		attempts int
		state    string
		err      error
	}
	results := make([]result, total)
	work := make(chan int)
	var wg sync.WaitGroup
	for range posters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				n, a, err := g.deliverReply(ctx, replies[i])
				results[i] = result{n, a.State, err}
			}
		}()
	}
	posted := make(chan error, 1)
	go func() {
		defer func() { posted <- nil }()
		for i := 0; i < total; {
			n := min(1+rand.N(25), total-i)
			for j := i; j < i+n; j++ {
				work <- j
			}
			i += n
			time.Sleep(rand.N(600 * time.Millisecond))
		}
		close(work)
		wg.Wait()
	}()

	postTime, kills, killsAfter := killLoop(t, g, posted, killPlan{
		minKills: minKills, killsAfter: 1, minWait: 500 * time.Millisecond, maxWait: 3 * time.Second})
	restarted := time.Now()

	attempts, failedPosts, dupAnswers := 0, 0, 0
	for i, r := range results {
		attempts += r.attempts
		if r.err != nil {
			failedPosts++
			t.Errorf("reply %s: %v", replies[i].ID, r.err)
		}
		if r.state == "duplicate" {
			dupAnswers++
		}
	}
	t.Logf("posted %d replies in %v with %d webhook calls (%d repeats after no answer or a non-200; %d answered \"duplicate\": committed before the kill cut the answer); %d SIGKILLs (%d after the last call)",
		total, postTime.Round(time.Millisecond), attempts, attempts-total, dupAnswers, kills, killsAfter)

	// Drain: nothing queued or sending in the outbox, Postfix's queue empty.
	st, ok := g.waitStatus(t, 3*time.Minute, func(s channelStatus) bool {
		return s.OutboxPending() == 0 && postfixQueueEmpty(t)
	})
	drain := time.Since(restarted)
	if !ok {
		t.Errorf("the outbox did not drain within 3 minutes of the last restart: %s\npostfix queue:\n%s\nlog:\n%s",
			st, postfixQueue(), g.LogTail(40))
	}
	t.Logf("outbox drained %v after the last restart: %s", drain.Round(time.Millisecond), st)

	// Count the operator texts in every customer's INBOX.
	type key struct{ c, seq int }
	seen := map[key]int{}
	emails, foreign := 0, 0
	msgIDs := map[string]int{}
	for c := 1; c <= customers; c++ {
		for _, m := range fetchFolder(t, senderOf(c), "INBOX") {
			emails++
			msgIDs[m.Header().Get("Message-Id")]++
			text, err := plainText(m.Raw)
			if err != nil {
				t.Errorf("%s uid %d: %v", senderOf(c), m.UID, err)
			}
			found := replyMarker.FindAllStringSubmatch(text, -1)
			if len(found) == 0 {
				foreign++
			}
			for _, f := range found {
				cc, _ := strconv.Atoi(f[1])
				seq, _ := strconv.Atoi(f[2])
				if cc != c {
					t.Errorf("reply ob-%02d-%02d delivered to %s", cc, seq, senderOf(c))
				}
				seen[key{cc, seq}]++
			}
		}
	}
	var missing, dups []string
	dupTexts := 0
	for i := range replies {
		k := key{i%customers + 1, i / customers}
		switch n := seen[k]; {
		case n == 0:
			missing = append(missing, fmt.Sprintf("ob-%02d-%02d", k.c, k.seq))
		case n > 1:
			dups = append(dups, fmt.Sprintf("ob-%02d-%02d x%d", k.c, k.seq, n))
			dupTexts += n - 1
		}
	}
	dupEmails := 0
	for _, n := range msgIDs {
		dupEmails += n - 1
	}
	sort.Strings(dups)
	sent := fetchFolder(t, supportUser, "Sent")
	st = g.Status(t)
	t.Logf("result: %d emails in 50 INBOXes carry %d of %d replies; %d replies delivered more than once (%d extra copies; %d emails share a Message-ID with another); %d copies in support's Sent; status %s",
		emails, total-len(missing), total, len(dups), dupTexts, dupEmails, len(sent), st)
	if len(dups) > 0 {
		t.Logf("duplicated replies: %s", strings.Join(head(dups, 30), " "))
	}
	if len(missing) > 0 {
		t.Errorf("%d of %d replies answered 200 by the webhook never reached the customer: %s\nlog:\n%s",
			len(missing), total, strings.Join(head(missing, 40), " "), g.LogTail(40))
	}
	if foreign > 0 {
		t.Errorf("%d emails in the customers' INBOXes carry no operator reply", foreign)
	}
	if n := st.Outbox[outboxFailed] + st.Outbox[outboxCancelled]; n > 0 {
		t.Errorf("%d replies failed or were cancelled: %s", n, counts(st.Outbox))
	}
	if n := sum(st.Outbox); n != total {
		t.Errorf("the outbox holds %d items, want %d (one per reply)", n, total)
	}
	if n := g.CountLog("panic:"); n > 0 {
		t.Errorf("the mailgate log mentions \"panic:\" %d times", n)
	}
}
