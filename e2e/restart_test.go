//go:build e2e

package e2e

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"
)

// markedEmail is a test email whose body carries a unique marker, by
// which its posts are found at the fake Userlike.
func markedEmail(from, marker, note string) email {
	return email{
		From:    from,
		Subject: "Question " + marker,
		Body:    fmt.Sprintf("Question %s: %s", marker, note),
	}
}

// countMarker counts the text posts whose text contains marker.
func countMarker(posts []inboundPost, marker string) int {
	n := 0
	for _, p := range posts {
		if p.URL == "" && strings.Contains(p.Text, marker) {
			n++
		}
	}
	return n
}

// TestIMAPRestarts stops and starts Dovecot five times under a running
// mailgate. In each round one email is delivered while Dovecot is up (it
// must reach Userlike through the IDLE connection, re-established after
// the previous outage) and two are sent through Postfix while Dovecot is
// down (Postfix queues them and delivers them once Dovecot is back). In
// the end every email must have reached Userlike exactly once.
func TestIMAPRestarts(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: restarts Dovecot five times (about a minute)")
	}
	ul, g := startScenario(t, mailgateOptions{RateLimit: 1000})
	// Whatever happens here, leave Dovecot running for the next scenario.
	t.Cleanup(func() { startDovecot(t) })

	const rounds = 5
	var markers []string
	start := time.Now()
	for round := 1; round <= rounds; round++ {
		up := fmt.Sprintf("rst%02d-up", round)
		markers = append(markers, up)
		t0 := time.Now()
		deliver(t, supportUser, markedEmail(senderOf(round), up, "delivered while Dovecot is up.").raw())
		if _, ok := ul.WaitAccepted(90*time.Second, func(p []inboundPost) bool { return countMarker(p, up) > 0 }); !ok {
			t.Fatalf("round %d: the email delivered while Dovecot was up did not reach Userlike within 90s\nposts:\n%smailgate log:\n%s",
				round, describePosts(ul.All()), g.LogTail(40))
		}
		t.Logf("round %d: email delivered while up posted after %v", round, time.Since(t0).Round(time.Millisecond))

		stopDovecot(t)
		if c, err := net.DialTimeout("tcp", suite.vars["IMAP_ADDR"], time.Second); err == nil {
			c.Close()
			t.Fatalf("round %d: IMAP still accepts connections after stop.sh", round)
		}
		for i, k := range []string{"a", "b"} {
			m := fmt.Sprintf("rst%02d-down-%s", round, k)
			markers = append(markers, m)
			from := senderOf(10*(i+1) + round) // a sender of its own
			sendSMTP(t, from, []string{supportUser}, markedEmail(from, m, "sent while Dovecot is down.").raw())
		}
		time.Sleep(time.Second + rand.N(2*time.Second))
		startDovecot(t)
		flushPostfix(t)
		if !g.Running() {
			t.Fatalf("round %d: mailgate exited while Dovecot restarted; log:\n%s", round, g.LogTail(40))
		}
	}

	all := func(p []inboundPost) bool {
		for _, m := range markers {
			if countMarker(p, m) == 0 {
				return false
			}
		}
		return true
	}
	posts, ok := ul.WaitAccepted(2*time.Minute, all)
	if !ok {
		var missing []string
		for _, m := range markers {
			if countMarker(posts, m) == 0 {
				missing = append(missing, m)
			}
		}
		t.Fatalf("%d of %d emails never reached Userlike: %v\npostfix queue empty: %v\nposts:\n%smailgate log:\n%s",
			len(missing), len(markers), missing, postfixQueueEmpty(t), describePosts(posts), g.LogTail(60))
	}
	t.Logf("all %d emails posted %v after the first delivery", len(markers), time.Since(start).Round(time.Millisecond))
	// Settled, a duplicate would be among the posts.
	if st, ok := g.waitSettled(t, time.Minute, len(markers)); !ok {
		t.Fatalf("not settled within a minute of the last post: %s\nlog:\n%s", st, g.LogTail(40))
	}
	posts = ul.Accepted()
	for _, m := range markers {
		if n := countMarker(posts, m); n != 1 {
			t.Errorf("email %s posted %d times, want exactly once", m, n)
		}
	}
	if n := ul.BadTokens(); n != 0 {
		t.Errorf("%d POSTs had a wrong API-SECURITY-TOKEN", n)
	}
	if !g.Running() {
		t.Errorf("mailgate exited; log:\n%s", g.LogTail(40))
	}
	t.Logf("mailgate logged %q %d times", "imap: connected again", g.CountLog("imap: connected again"))
}
