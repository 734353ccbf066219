//go:build e2e

package e2e

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// smtpDownMarker finds "sd-CC-S" in a delivered reply.
var smtpDownMarker = regexp.MustCompile(`\bsd-\d{2}-\d\b`)

// stopPostfix and startPostfix stop and start the suite's Postfix with
// stop.sh and start.sh; its queue survives.
func stopPostfix(t testing.TB) {
	t.Helper()
	if out, err := suite.script("stop.sh", suite.workDir, "postfix"); err != nil {
		t.Fatalf("stop Postfix: %v\n%s", err, out)
	}
}

func startPostfix(t testing.TB) {
	t.Helper()
	if out, err := suite.script("start.sh", suite.workDir, "postfix"); err != nil {
		t.Fatalf("start Postfix: %v\n%s", err, out)
	}
}

// TestSMTPDown stops Postfix while operators answer 5 customers (all
// answers get their 200 from the webhook): every send fails with a network
// error and is scheduled for the outbox's first retry, one minute later.
// cust41..cust43 get one reply each; cust44 and cust45 get a second reply
// after the first one failed, which (by design) makes mailgate try the
// contact's queue again at once, and fail again. Postfix comes back a few
// seconds later and mailgate is restarted (SIGTERM, start): the queue
// survives the restart. A restart does not make retried replies due
// earlier (only replies that were being sent when the process stopped are
// sent at startup), so the test waits for the first retry: every reply
// must be delivered exactly once within 100 s of its last failed attempt
// (the 1m first retry plus slack). Meanwhile a reply to reject@ (Postfix:
// 550) must fail at once with a failure notice posted into the Userlike
// conversation, and one to tempfail@ (450) must stay queued for retry
// without a notice.
func TestSMTPDown(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: waits for the outbox's one-minute retry")
	}
	const customers = 5
	var users []string
	for c := 1; c <= customers; c++ {
		users = append(users, senderOf(40+c))
	}
	resetMailboxes(t, users...)
	ul, g := startScenario(t, mailgateOptions{SMTP: `coalesce = "0s"`})
	t.Cleanup(func() { startPostfix(t) })

	stopPostfix(t)
	var markers []string
	reply := func(c, n int) {
		m := fmt.Sprintf("sd-%02d-%d", 40+c, n)
		markers = append(markers, m)
		a := g.sendReply(t, operatorReply{ID: "op-" + m, Contact: senderOf(40 + c), Operator: "Olivia",
			Text: fmt.Sprintf("Answer %s, written while the relay is down.", m)})
		if a.State != "queued" {
			t.Errorf("reply %s: webhook answered %s, want queued", m, a.Body)
		}
	}
	// tried waits until the outbox holds want items, all tried and
	// requeued, after at least retries failed attempts.
	tried := func(want, retries int) channelStatus {
		t.Helper()
		st, ok := g.waitStatus(t, 30*time.Second, func(s channelStatus) bool {
			return s.Outbox[outboxQueued] == want && s.LastError != "" &&
				g.CountLog("outbound: delivery failed, will retry") >= retries && s.Outbox[outboxSending] == 0
		})
		if !ok {
			t.Fatalf("replies not tried and requeued within 30s: %s\nlog:\n%s", st, g.LogTail(30))
		}
		return st
	}
	for c := 1; c <= customers; c++ {
		reply(c, 0)
	}
	tried(customers, customers)
	for c := 4; c <= customers; c++ {
		reply(c, 1)
	}
	st := tried(len(markers), customers+2)
	failedAt := time.Now()
	t.Logf("with Postfix down: %s; last error %q; %d \"will retry\" lines",
		st, st.LastError, g.CountLog("outbound: delivery failed, will retry"))

	time.Sleep(5 * time.Second)
	startPostfix(t)
	if err := g.Stop(); err != nil {
		t.Errorf("SIGTERM: %v", err)
	}
	if err := g.Restart(); err != nil {
		t.Fatalf("restart: %v", err)
	}
	if st := g.Status(t); st.Outbox[outboxQueued] != len(markers) {
		t.Errorf("after the restart the outbox holds %s, want %d queued", counts(st.Outbox), len(markers))
	}
	postfixBack := time.Now()

	// A permanent and a temporary refusal, while the others wait.
	g.sendReply(t, operatorReply{ID: "op-sd-reject", Contact: "reject@example.test", Operator: "Olivia",
		Text: "This answer goes to an address the relay refuses (sd-reject)."})
	g.sendReply(t, operatorReply{ID: "op-sd-tempfail", Contact: "tempfail@example.test", Operator: "Olivia",
		Text: "This answer goes to an address the relay defers (sd-tempfail)."})
	const notice = "[mailgate] Your reply could not be delivered to reject@example.test"
	isNotice := func(p inboundPost) bool { return strings.HasPrefix(p.Text, notice) }
	if _, ok := ul.WaitAccepted(30*time.Second, func(ps []inboundPost) bool { return countIf(ps, isNotice) > 0 }); !ok {
		t.Errorf("no failure notice for reject@ at Userlike within 30s:\n%s\nlog:\n%s", describePosts(ul.All()), g.LogTail(30))
	}

	// The first retry: one minute after the failure.
	found := map[string]int{}
	scan := func() {
		clear(found)
		for _, u := range users {
			for _, m := range fetchFolder(t, u, "INBOX") {
				text, _ := plainText(m.Raw)
				for _, k := range smtpDownMarker.FindAllString(text, -1) {
					found[k]++
				}
			}
		}
	}
	deadline := failedAt.Add(100 * time.Second)
	for {
		scan()
		if len(found) == len(markers) || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Second)
	}
	delivered := time.Now()
	// Every reply recorded sent, none being sent, Postfix's queue empty:
	// a duplicate would now be in a mailbox.
	st, ok := g.waitStatus(t, 30*time.Second, func(s channelStatus) bool {
		return s.Outbox[outboxSent] >= len(markers) && s.Outbox[outboxSending] == 0
	})
	if !ok {
		t.Errorf("not every reply recorded sent within 30s: %s", st)
	}
	if !waitPostfixEmpty(t, 30*time.Second) {
		t.Errorf("Postfix's queue not empty within 30s:\n%s", postfixQueue())
	}
	scan()
	var missing, dups []string
	for _, m := range markers {
		switch found[m] {
		case 0:
			missing = append(missing, m)
		case 1:
		default:
			dups = append(dups, fmt.Sprintf("%s x%d", m, found[m]))
		}
	}
	st = g.Status(t)
	t.Logf("result: %d of %d replies delivered, the last seen %v after the last failed attempt (%v after Postfix came back); %d duplicates; status %s",
		len(markers)-len(missing), len(markers), delivered.Sub(failedAt).Round(time.Millisecond),
		delivered.Sub(postfixBack).Round(time.Millisecond), len(dups), st)
	if len(missing) > 0 {
		var retries []string
		for _, l := range strings.Split(g.FullLog(), "\n") {
			if strings.Contains(l, "will retry") {
				retries = append(retries, l)
			}
		}
		t.Errorf("not delivered within 100s of the last failed attempt (%v after Postfix came back): %s\n"+
			"the outbox's retry decisions:\n%s\npostfix queue:\n%s",
			time.Since(postfixBack).Round(time.Second), strings.Join(missing, " "), strings.Join(retries, "\n"), postfixQueue())
	}
	if len(dups) > 0 {
		t.Errorf("delivered more than once: %s", strings.Join(dups, " "))
	}

	// The outbox: 10 sent, reject@ failed, tempfail@ still queued.
	if st.Outbox[outboxSent] != len(markers) || st.Outbox[outboxFailed] != 1 ||
		st.Outbox[outboxQueued]+st.Outbox[outboxSending] != 1 {
		t.Errorf("outbox %s, want sent=%d failed=1 and the tempfail@ reply queued", counts(st.Outbox), len(markers))
	}
	var notices []inboundPost
	for _, p := range ul.Accepted() {
		if strings.HasPrefix(p.Text, "[mailgate]") {
			notices = append(notices, p)
		}
	}
	t.Logf("failure notices at Userlike:\n%s", describePosts(notices))
	if len(notices) != 1 {
		t.Errorf("want exactly 1 failure notice (reject@), got %d", len(notices))
	} else {
		n := notices[0]
		if n.Email != "reject@example.test" || !isNotice(n) || !strings.Contains(n.Text, "550") {
			t.Errorf("failure notice %s: want email reject@example.test and a text naming the 550", n.Body)
		}
	}
	if g.CountLog("tempfail@example.test") == 0 || !strings.Contains(g.FullLog(), "450") {
		t.Errorf("the log does not show the 450 for tempfail@example.test")
	}
	if n := len(ul.Accepted()); n != len(notices) {
		t.Errorf("Userlike received %d posts, want only the %d notices", n, len(notices))
	}
	if !g.Running() {
		t.Errorf("mailgate exited; log:\n%s", g.LogTail(40))
	}
}

// countIf counts the posts for which f holds.
func countIf(posts []inboundPost, f func(inboundPost) bool) int {
	n := 0
	for _, p := range posts {
		if f(p) {
			n++
		}
	}
	return n
}
