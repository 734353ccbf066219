//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// downMarker finds "ud-SENDER-SEQ" in a posted text.
var downMarker = regexp.MustCompile(`\bud-(\d{2})-(\d{2})\b`)

// Outage phases of TestUserlikeDown. The product requirement speaks of a
// two-minute outage; the suite shortens it to 55 s. The 503 phase is
// short enough that mailgate's per-contact backoff stays under 10 s, so
// its first POST of the hang phase starts early enough to hit the
// Userlike client's 30 s timeout before the phase ends.
const (
	outage503  = 10 * time.Second
	outageHang = 45 * time.Second
)

// TestUserlikeDown takes the fake Userlike down while customers keep
// writing: first it answers 503 for 10 s, then it accepts connections and
// never answers for 45 s (longer than mailgate's 30 s HTTP timeout). Mail
// arrives before and during both phases. After recovery every email must
// be posted exactly once, and each sender's emails in the mailbox's (UID)
// order.
func TestUserlikeDown(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: a 55 s Userlike outage")
	}
	const senders = 6
	ul, g := startScenario(t, mailgateOptions{RateLimit: 1000})

	seq := make([]int, senders+1) // next sequence number per sender
	var order []string            // every marker, in delivery order
	wave := func(perSender int, note string) {
		t.Helper()
		var msgs []lmtpMessage
		for n := 0; n < perSender; n++ {
			for s := 1; s <= senders; s++ {
				m := fmt.Sprintf("ud-%02d-%02d", s, seq[s])
				seq[s]++
				order = append(order, m)
				from := senderOf(30 + s)
				e := email{From: from, Subject: "Outage question from customer " + fmt.Sprint(s),
					Body: fmt.Sprintf("Message %s, %s.", m, note)}
				msgs = append(msgs, lmtpMessage{From: from, To: supportUser, Raw: e.raw()})
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := deliverLMTP(ctx, msgs); err != nil {
			t.Fatal(err)
		}
	}

	// Before: Userlike is up.
	wave(1, "written while Userlike is up")
	if _, ok := ul.WaitAccepted(60*time.Second, func(p []inboundPost) bool { return countDistinct(p, downMarker) == senders }); !ok {
		t.Fatalf("the first %d emails were not posted within 60s:\n%s", senders, describePosts(ul.All()))
	}

	// Phase 1: 503.
	outageStart := time.Now()
	ul.SetMode(modeUnavailable)
	wave(2, "written while Userlike answers 503")
	time.Sleep(outage503 / 2)
	wave(1, "written while Userlike answers 503")
	time.Sleep(outage503 - time.Since(outageStart))
	n503 := countStatus(ul.All(), http.StatusServiceUnavailable)

	// Phase 2: connections accepted, never answered.
	ul.SetMode(modeHang)
	hangStart := time.Now()
	wave(1, "written while Userlike hangs")
	time.Sleep(outageHang)
	hung := 0
	for _, p := range ul.All() {
		if p.At.After(hangStart) && p.Status == 0 {
			hung++
		}
	}
	ul.SetMode(modeOK)
	recovered := time.Now()
	t.Logf("outage %v: %d POSTs answered 503, %d POSTs hung (of which those still waiting are now answered 200)",
		recovered.Sub(outageStart).Round(time.Millisecond), n503, hung)
	if n503 == 0 {
		t.Errorf("no POST reached the fake Userlike during the 503 phase")
	}
	timeouts := g.CountLog("Client.Timeout exceeded")
	t.Logf("mailgate logged %d failed POSTs (will retry), %d of them timeouts",
		g.CountLog("inbound: post failed, will retry"), timeouts)
	if timeouts == 0 {
		t.Errorf("no POST timed out during the %v hang phase: the scenario did not exercise a hanging Userlike", outageHang)
	}

	total := len(order)
	posts, ok := ul.WaitAccepted(3*time.Minute, func(p []inboundPost) bool { return countDistinct(p, downMarker) == total })
	drain := time.Since(recovered)
	// Settled, a duplicate would be among the posts.
	if st, ok := g.waitSettled(t, time.Minute, total); !ok {
		t.Errorf("not settled within a minute of the last first post: %s\nlog:\n%s", st, g.LogTail(40))
	}
	posts = ul.Accepted()
	if !ok {
		t.Errorf("%d of %d emails posted 3 minutes after recovery\nstatus: %s\nlog:\n%s",
			countDistinct(posts, downMarker), total, g.Status(t), g.LogTail(40))
	}

	// Each sender's emails must be posted in the mailbox's order (UID
	// order), which is almost always the order of delivery.
	uids := uidsByMarker(t, supportUser, "INBOX", downMarker)
	sender := func(marker string) string { return downMarker.FindStringSubmatch(marker)[1] }
	if n := reordered(order, uids, sender); n > 0 {
		t.Logf("Dovecot numbered %d pairs of one sender's emails in the opposite order of their delivery", n)
	}
	perMarker := map[string]int{}
	var orderErrs []string
	last := map[string]string{} // sender -> the marker with the highest UID posted so far
	for _, p := range posts {
		m := downMarker.FindStringSubmatch(p.Text)
		if m == nil || p.URL != "" {
			t.Errorf("unexpected post: %s", p.Body)
			continue
		}
		perMarker[m[0]]++
		var s int
		fmt.Sscan(m[1], &s)
		uid, ok := uids[m[0]]
		if !ok {
			t.Errorf("%s was posted but is not in the support INBOX", m[0])
		}
		if prev, ok := last[m[1]]; ok && uid < uids[prev] {
			orderErrs = append(orderErrs, fmt.Sprintf("%s (UID %d) after %s (UID %d)", m[0], uid, prev, uids[prev]))
		} else {
			last[m[1]] = m[0]
		}
		if p.Email != senderOf(30+s) {
			t.Errorf("%s posted as %q, want %q", m[0], p.Email, senderOf(30+s))
		}
	}
	var dups, missing []string
	for _, m := range order {
		switch perMarker[m] {
		case 0:
			missing = append(missing, m)
		case 1:
		default:
			dups = append(dups, fmt.Sprintf("%s x%d", m, perMarker[m]))
		}
	}
	t.Logf("result: %d emails from %d senders; all posted %v after recovery; %d accepted POSTs, %d POSTs in all; %d duplicates; %d order violations; status %s",
		total, senders, drain.Round(time.Millisecond), len(posts), len(ul.All()), len(dups), len(orderErrs), g.Status(t))
	if len(missing) > 0 {
		t.Errorf("never posted: %s", strings.Join(missing, " "))
	}
	if len(dups) > 0 {
		t.Errorf("posted more than once: %s", strings.Join(dups, " "))
	}
	if len(orderErrs) > 0 {
		t.Errorf("per-sender order broken: %s", strings.Join(orderErrs, "; "))
	}
	if !g.Running() {
		t.Errorf("mailgate exited; log:\n%s", g.LogTail(40))
	}
}

// countDistinct counts the different markers matched by re among the text
// posts.
func countDistinct(posts []inboundPost, re *regexp.Regexp) int {
	seen := map[string]bool{}
	for _, p := range posts {
		if m := re.FindString(p.Text); m != "" && p.URL == "" {
			seen[m] = true
		}
	}
	return len(seen)
}

// countStatus counts the POSTs answered status.
func countStatus(posts []inboundPost, status int) int {
	n := 0
	for _, p := range posts {
		if p.Status == status {
			n++
		}
	}
	return n
}
